"""OUT is audiosum's: it never writes next to its inputs, never replaces a file it did not make, and stops cleanly
when the disk is full.

Every run here is a real CLI process against `audiosum serve --engine tone` over loopback.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from peers import RunningServer, api_env, running_server
from runs import run_cli

ARTICLE = ("The harbour bridge reopens on Monday after two years of repairs. It carries four lanes of traffic and a "
           "new cycle path. The council says the work came in under budget.\n")


def _folder(root: Path, names: list[str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        (root / name).write_text(f"{name}. {ARTICLE}")
    return root


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_out_that_is_the_input_folder_is_refused_before_anything_is_written(tone_server: RunningServer,
                                                                             tmp_path: Path) -> None:
    notes = _folder(tmp_path / "notes", ["harbour-bridge-reopens.txt", "council.md"])
    before = _snapshot(notes)
    result = run_cli("run", str(notes), "-o", str(notes), env=api_env(tone_server))
    assert result.exit_code == 2, result.stderr
    assert "output folder" in result.stderr and str(notes) in result.stderr and "Traceback" not in result.stderr
    assert _snapshot(notes) == before and not (notes / ".audiosum").exists()


@pytest.mark.parametrize("name", ["call.wav", "article.txt", "feed.xml"])
def test_out_that_holds_an_input_file_is_refused(tone_server: RunningServer, tmp_path: Path, name: str) -> None:
    folder = tmp_path / "rec"
    folder.mkdir()
    (folder / name).write_bytes(b"RIFF....WAVE" if name.endswith(".wav") else ARTICLE.encode())
    before = _snapshot(folder)
    result = run_cli("run", str(folder / name), "-o", str(folder), env=api_env(tone_server))
    assert result.exit_code == 2, result.stderr
    assert str(folder / name) in result.stderr
    assert _snapshot(folder) == before


def test_out_that_holds_a_manifest_items_file_is_refused(tone_server: RunningServer, tmp_path: Path) -> None:
    _folder(tmp_path / "docs", ["a.txt"])
    manifest = tmp_path / "items.jsonl"
    manifest.write_text(json.dumps({"id": "first", "text": "Inline text is fine."}) + "\n"
                        + json.dumps({"id": "second", "path": "docs/a.txt"}) + "\n")
    result = run_cli("run", str(manifest), "-o", str(tmp_path / "docs"), env=api_env(tone_server))
    assert result.exit_code == 2 and "items.jsonl line 2" in result.stderr, result.stderr


def test_out_nested_in_the_input_folder_is_allowed_but_not_when_it_holds_every_document(
        tone_server: RunningServer, tmp_path: Path) -> None:
    notes = _folder(tmp_path / "notes", ["a.txt", "b.txt"])
    first = run_cli("run", str(notes), "-o", str(notes / "out"), env=api_env(tone_server))
    assert first.exit_code == 0, first.stderr
    assert json.loads((notes / "out" / "report.json").read_text())["totals"]["done"] == 2
    # Every document moved into OUT: a run would list nothing and exit 0 having done nothing; it says why instead.
    only_inside = tmp_path / "only"
    _folder(only_inside / "out", ["c.txt"])
    result = run_cli("run", str(only_inside), "-o", str(only_inside / "out"), env=api_env(tone_server))
    assert result.exit_code == 2 and "inside the output folder" in result.stderr, result.stderr


def test_a_file_audiosum_did_not_make_is_never_replaced_and_fails_only_its_document(
        tone_server: RunningServer, tmp_path: Path) -> None:
    notes = _folder(tmp_path / "notes", ["a.txt", "b.txt", "c.txt"])
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.wav").write_bytes(b"my own recording")  # where a's audio would go
    (out / "b.txt").write_bytes(b"my own notes")  # where b's podcast transcript would go
    for attempt in ("first", "--force"):
        extra = ("--force",) if attempt == "--force" else ()
        result = run_cli("run", str(notes), "-o", str(out), *extra, env=api_env(tone_server))
        assert result.exit_code == 1, result.stderr
        assert (out / "a.wav").read_bytes() == b"my own recording"
        assert (out / "b.txt").read_bytes() == b"my own notes"
        rows = {row["doc_id"]: row for row in json.loads((out / "report.json").read_text())["documents"]}
        assert rows["c"]["status"] == "done"
        for doc_id, name in (("a", "a.wav"), ("b", "b.txt")):
            assert rows[doc_id]["status"] == "failed"
            assert f"{name} already exists and was not made by audiosum" in rows[doc_id]["reason"]
        assert not (out / "a.json").exists() and not (out / "b.json").exists()
    # Moved away, the name is free, and the document is made on the next run.
    (out / "a.wav").unlink()
    assert run_cli("run", str(notes), "-o", str(out), env=api_env(tone_server)).exit_code == 1  # b still blocked
    assert json.loads((out / "a.json").read_text())["audio_sha256"] == _sha(out / "a.wav")


def test_a_report_page_audiosum_did_not_make_stops_the_run_before_anything_is_sent(
        tone_server: RunningServer, tmp_path: Path) -> None:
    notes = _folder(tmp_path / "notes", ["a.txt"])
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.html").write_text("<p>my page</p>")
    result = run_cli("run", str(notes), "-o", str(out), env=api_env(tone_server))
    assert result.exit_code == 2 and "report.html already exists" in result.stderr, result.stderr
    assert (out / "report.html").read_text() == "<p>my page</p>" and not (out / "a.wav").exists()


def test_a_folder_made_before_ownership_was_recorded_keeps_its_outputs(tone_server: RunningServer,
                                                                        tmp_path: Path) -> None:
    notes = _folder(tmp_path / "notes", ["a.txt", "b.txt"])
    out = tmp_path / "out"
    assert run_cli("run", str(notes), "-o", str(out), env=api_env(tone_server)).exit_code == 0
    # Back to the schema of the release before: no table of owned outputs (and the wav_* column names).
    with sqlite3.connect(out / ".audiosum" / "state.sqlite") as db:
        _undo_main_output_names(db)
        db.execute("DROP TABLE owned_outputs")
        db.execute("DROP TABLE unverified_outputs")
        db.execute("DROP INDEX documents_by_folded_id")
        db.execute("DELETE FROM migrations WHERE name = 'm009_owned_outputs'")
    (out / "b.txt").write_text("the user replaced b's transcript with their own notes")
    result = run_cli("run", str(notes), "-o", str(out), "--force", env=api_env(tone_server))
    # a's transcript pair was audiosum's (its .txt is a's transcript): adopted and remade; b.txt is the user's now.
    assert result.exit_code == 1, result.stderr
    rows = {row["doc_id"]: row for row in json.loads((out / "report.json").read_text())["documents"]}
    assert rows["a"]["status"] == "done" and rows["b"]["status"] == "failed"
    assert (out / "b.txt").read_text() == "the user replaced b's transcript with their own notes"


def _undo_main_output_names(db: sqlite3.Connection) -> None:
    """The schema before m010: the main output's columns named wav_*."""
    db.execute("ALTER TABLE run_documents RENAME COLUMN main_name TO wav_name")
    for part in ("name", "sha256", "size", "mtime_ns"):
        db.execute(f"ALTER TABLE documents RENAME COLUMN main_{part} TO wav_{part}")
    db.execute("DELETE FROM migrations WHERE name = 'm010_main_output_names'")


def test_a_folder_whose_state_names_the_main_output_wav_still_opens_and_skips(tone_server: RunningServer,
                                                                             tmp_path: Path) -> None:
    notes = _folder(tmp_path / "notes", ["a.txt"])
    out = tmp_path / "out"
    assert run_cli("run", str(notes), "-o", str(out), "--format", "mp3", env=api_env(tone_server)).exit_code == 0
    with sqlite3.connect(out / ".audiosum" / "state.sqlite") as db:
        _undo_main_output_names(db)
    result = run_cli("run", str(notes), "-o", str(out), "--format", "mp3", env=api_env(tone_server))
    assert result.exit_code == 0 and "1 skipped" in result.stdout, result.stderr + result.stdout
    (row,) = json.loads((out / "report.json").read_text())["documents"]
    assert row["status"] == "skipped" and row["main_name"] == "a.mp3" and "wav_name" not in row
    with sqlite3.connect(out / ".audiosum" / "state.sqlite") as db:
        assert db.execute("SELECT main_name, main_size FROM documents").fetchone() == ("a.mp3",
                                                                                       (out / "a.mp3").stat().st_size)


def test_ids_that_differ_only_in_case_get_distinct_file_names(tone_server: RunningServer, tmp_path: Path) -> None:
    manifest = tmp_path / "items.jsonl"
    manifest.write_text("".join(json.dumps({"id": doc_id, "text": f"{doc_id}. {ARTICLE}"}) + "\n"
                                for doc_id in ("Notes", "notes", "NOTES")))
    out = tmp_path / "out"
    for _ in range(2):  # the second run finds each under the same name again and skips it
        result = run_cli("run", str(manifest), "-o", str(out), env=api_env(tone_server))
        assert result.exit_code == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["totals"]["skipped"] == 3
    sidecars = [p.name for p in out.glob("*.json") if p.name != "report.json"]
    assert len(sidecars) == 3 and len({name.casefold() for name in sidecars}) == 3


# --- a full disk -------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _tiny_filesystem(where: Path, size: str) -> Iterator[Path]:
    where.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tiny tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", f"audiosum-{uuid.uuid4().hex[:6]}",
                              str(where)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.mark.parametrize("size", ["40k", "300k", pytest.param("500k", marks=pytest.mark.slow), "900k"])
def test_a_full_disk_stops_the_run_cleanly_and_a_rerun_finishes(tmp_path: Path, size: str) -> None:
    """Each size fills up at another step: the state database, a document's files, the report."""
    notes = _folder(tmp_path / "notes", [f"doc{i:02d}.txt" for i in range(12)])
    with _tiny_filesystem(tmp_path / "small", size) as small, running_server("--engine", "tone") as server:
        out = small / "out"
        result = run_cli("run", str(notes), "-o", str(out), "--concurrency", "1", env=api_env(server))
        assert result.exit_code == 1, result.stderr
        stops = [line for line in result.stderr.splitlines() if line.startswith("audiosum: stopped:")]
        assert len(stops) == 1 and "no space left" in stops[0] and "Traceback" not in result.stderr, result.stderr
        assert not list(out.glob(".audiosum-tmp-*"))
        done = len(list(out.glob("doc*.json")))
        assert done < 12
        # At most the one document that met the full disk was sent beyond those whose files were written.
        assert server.stats()["counts"]["requests"] <= done + 1
        if (out / "report.json").exists() and done:
            report = json.loads((out / "report.json").read_text())
            assert report["status"] == "aborted" and "no space left" in report["abort_reason"]
        subprocess.run(["mount", "-o", "remount,size=20m", str(small)], check=True)
        rerun = run_cli("run", str(notes), "-o", str(out), "--concurrency", "1", env=api_env(server))
        assert rerun.exit_code == 0, rerun.stderr
        totals = json.loads((out / "report.json").read_text())["totals"]
        assert totals["done"] + totals["skipped"] == 12
        for sidecar in out.glob("doc*.json"):
            body = json.loads(sidecar.read_text())
            assert body["audio_sha256"] == _sha(out / body["audio_file"])


def test_a_symlink_at_the_lock_path_is_refused_and_its_target_untouched(tone_server: RunningServer,
                                                                          tmp_path: Path) -> None:
    notes = _folder(tmp_path / "notes", ["a.txt"])
    victim = tmp_path / "precious.txt"
    victim.write_text("do not truncate me")
    (tmp_path / "out" / ".audiosum").mkdir(parents=True)
    (tmp_path / "out" / ".audiosum" / "lock").symlink_to(victim)
    result = run_cli("run", str(notes), "-o", str(tmp_path / "out"), env=api_env(tone_server))
    assert result.exit_code == 2 and "symbolic link" in result.stderr, result.stderr
    assert victim.read_text() == "do not truncate me"


def test_out_that_holds_a_symlink_to_an_input_is_refused(tone_server: RunningServer, tmp_path: Path) -> None:
    data = _folder(tmp_path / "data", ["a.txt"])
    rec = tmp_path / "rec"
    rec.mkdir()
    (rec / "a.txt").symlink_to(data / "a.txt")
    result = run_cli("run", str(rec / "a.txt"), "-o", str(rec), "--dry-run", env=api_env(tone_server))
    assert result.exit_code == 2 and "output folder" in result.stderr, result.stderr
    linked_out = tmp_path / "linked-out"
    linked_out.symlink_to(data)
    result = run_cli("run", str(data), "-o", str(linked_out), env=api_env(tone_server))
    assert result.exit_code == 2 and "input folder" in result.stderr, result.stderr
