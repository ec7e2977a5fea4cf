"""Cron-grade reruns: only what changed is redone, checked on the wire with the server's /stats."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from peers import RunningServer, api_env
from runs import SAMPLE_INPUTS, copy_text_samples, run_cli

from pipeline.state.lock import RunLock


def _requests(server: RunningServer) -> int:
    return server.stats()["counts"]["requests"]


def _statuses(out: Path) -> dict[str, str]:
    report = json.loads((out / "report.json").read_text())
    return {d["doc_id"]: d["status"] for d in report["documents"]}


@pytest.fixture()
def inputs(tmp_path: Path) -> Path:
    return copy_text_samples(tmp_path / "in", manifest=False)


def test_rerun_redoes_only_what_changed(tone_server: RunningServer, inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = api_env(tone_server)
    first = run_cli("run", str(inputs), "-o", str(out), env=env)
    assert first.exit_code == 0, first.stderr
    count = len(_statuses(out))

    before = _requests(tone_server)
    again = run_cli("run", str(inputs), "-o", str(out), env=env)
    assert again.exit_code == 0
    assert _requests(tone_server) == before
    assert set(_statuses(out).values()) == {"skipped"}
    assert f"0 done, {count} skipped, 0 failed" in again.stdout

    note = inputs / "notes" / "short-reminder.txt"
    note.write_text(note.read_text() + "\nAlso: the car park closes at 4 p.m.\n")
    (out / "news__river-cleanup-volunteers.wav").unlink()
    before = _requests(tone_server)
    partial = run_cli("run", str(inputs), "-o", str(out), env=env)
    assert partial.exit_code == 0
    assert _requests(tone_server) - before == 2
    redone = {doc for doc, status in _statuses(out).items() if status == "done"}
    assert redone == {"notes__short-reminder", "news__river-cleanup-volunteers"}

    # A WAV damaged in place (same size, other bytes) is found by its hash and redone.
    wav = out / "essays__why-libraries-matter.wav"
    data = bytearray(wav.read_bytes())
    data[-1] ^= 0xFF
    wav.write_bytes(bytes(data))
    os.utime(wav, ns=(time.time_ns(), time.time_ns() + 10_000_000))
    damaged = run_cli("run", str(inputs), "-o", str(out), env=env)
    assert {d for d, s in _statuses(out).items() if s == "done"} == {"essays__why-libraries-matter"}
    assert damaged.exit_code == 0

    before = _requests(tone_server)
    voice = run_cli("run", str(inputs), "-o", str(out), "--voice", "sage", env=env)
    assert voice.exit_code == 0
    assert _requests(tone_server) - before == count
    assert set(_statuses(out).values()) == {"done"}

    before = _requests(tone_server)
    forced = run_cli("run", str(inputs), "-o", str(out), "--voice", "sage", "--force", env=env)
    assert forced.exit_code == 0 and _requests(tone_server) - before == count


def test_a_failed_document_is_retried_on_the_next_run(tone_server: RunningServer, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_text("The library opens a new reading room on Monday morning.")
    (folder / "b.txt").write_bytes(b"")
    out = tmp_path / "out"
    assert run_cli("run", str(folder), "-o", str(out), env=api_env(tone_server)).exit_code == 1
    (folder / "b.txt").write_text("The bakery now sells rye bread every Thursday.")
    rerun = run_cli("run", str(folder), "-o", str(out), env=api_env(tone_server))
    assert rerun.exit_code == 0
    assert _statuses(out) == {"a": "skipped", "b": "done"}


def test_second_run_on_the_same_folder_exits_75(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with RunLock(out / ".audiosum"):
        result = run_cli("run", str(SAMPLE_INPUTS / "notes"), "-o", str(out))
    assert result.exit_code == 75
    assert f"pid {os.getpid()}" in result.stderr and "started" in result.stderr
    assert not (out / "report.json").exists()


def test_stale_temp_files_are_removed_at_start(tone_server: RunningServer, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / ".audiosum-tmp-abc123").write_bytes(b"half a wav")
    result = run_cli("run", str(SAMPLE_INPUTS / "notes"), "-o", str(out), env=api_env(tone_server))
    assert result.exit_code == 0
    assert not list(out.glob(".audiosum-tmp-*"))
