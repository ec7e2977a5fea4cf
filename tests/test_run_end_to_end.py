"""`audiosum run` end to end over loopback against a real `audiosum serve`."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import pytest
from peers import SERVER_KEY, RunningServer, api_env
from runs import SAMPLE_INPUTS, run_cli

from pipeline import runner
from pipeline.models import Document, RunSettings
from pipeline.providers.base import Provider


def _wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as reader:
        return reader.getnframes() / reader.getframerate()


def _all_text(folder: Path) -> str:
    return "\n".join(p.read_bytes().decode("latin-1") for p in folder.rglob("*") if p.is_file())


def test_sample_folder_over_the_wire(tone_server: RunningServer, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("run", str(SAMPLE_INPUTS), "-o", str(out), env=api_env(tone_server))
    assert result.exit_code == 0, result.stderr

    report = json.loads((out / "report.json").read_text())
    documents = report["documents"]
    source_files = sorted(p for p in SAMPLE_INPUTS.rglob("*") if p.suffix in (".txt", ".md", ".mp3"))
    assert len(documents) == len(source_files) >= 6
    assert report["settings"]["provider"] == "openai"
    assert "api_key" not in report["settings"]

    total_seconds = 0.0
    for row in documents:
        assert row["status"] == "done", row
        sidecar = json.loads((out / row["sidecar_name"]).read_text())
        seconds = _wav_seconds(out / row["main_name"])
        assert abs(seconds - sidecar["duration_s"]) < 0.01
        assert sidecar["transcript"].strip()
        assert sidecar["audio_id"].startswith("audio_") and sidecar["audio_expires_at"] > 0
        assert sidecar["request_id"].startswith("req_")
        assert sidecar["usage"]["completion_tokens_details"]["audio_tokens"] > 0
        assert sidecar["provider"] == "openai" and sidecar["voice"] == "alloy"
        total_seconds += seconds

    totals = report["totals"]
    assert totals["done"] == totals["documents"] == len(list(out.glob("*.wav")))
    assert totals["failed"] == totals["skipped"] == 0
    assert abs(totals["audio_seconds"] - total_seconds) < 0.05
    assert totals["requests"] == len(documents)
    assert totals["tokens_in"] > 0 and totals["tokens_out"] > 0
    assert tone_server.stats()["counts"]["ok"] >= len(documents)

    html = (out / "report.html").read_text()
    assert html.count("<audio ") == len(documents)
    # The key must never land in logs, reports or sidecars.
    assert SERVER_KEY not in _all_text(out) + result.stdout + result.stderr
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".audiosum-tmp")]
    assert leftovers == []


def test_manifest_items_use_their_voice_and_text(tone_server: RunningServer, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("run", str(SAMPLE_INPUTS / "manifest.jsonl"), "-o", str(out), env=api_env(tone_server))
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in (SAMPLE_INPUTS / "manifest.jsonl").read_text().splitlines() if line]
    for item in lines:
        sidecar = json.loads((out / f"{item['id']}.json").read_text())
        assert sidecar["voice"] == item.get("voice", "alloy")
        assert sidecar["title"] == item.get("title")
        if "instructions" in item:
            assert sidecar["instructions"] == item["instructions"]


def test_bad_documents_fail_alone(tone_server: RunningServer, tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "good.txt").write_text("The council approved a new park. It opens in spring with a playground.")
    (inputs / "empty.txt").write_bytes(b"")
    (inputs / "latin.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    (inputs / "binary.txt").write_bytes(b"\x00\x01\x02binary")
    outside = tmp_path / "secret.txt"
    outside.write_text("This file is outside the manifest folder and must not be read.")
    manifest = inputs / "list.jsonl"
    manifest.write_text("\n".join([
        json.dumps({"id": "inline", "text": "Rain is expected on Sunday. Winds will be light."}),
        "{not json",
        json.dumps({"id": "nothing"}),
        json.dumps({"id": "escape", "path": "../secret.txt"}),
        json.dumps({"id": "../../etc/evil", "text": "A traversal id is made safe, not followed."}),
    ]) + "\n")
    out = tmp_path / "out"
    result = run_cli("run", str(inputs / "good.txt"), str(inputs / "empty.txt"), str(inputs / "latin.txt"),
                     str(inputs / "binary.txt"), str(manifest), "-o", str(out), env=api_env(tone_server))
    assert result.exit_code == 1, result.stderr
    report = json.loads((out / "report.json").read_text())
    by_id = {d["doc_id"]: d for d in report["documents"]}
    assert by_id["good"]["status"] == "done"
    assert by_id["inline"]["status"] == "done"
    assert by_id["etc__evil"]["status"] == "done"
    reasons = {doc_id: by_id[doc_id]["reason"] for doc_id in by_id if by_id[doc_id]["status"] == "failed"}
    assert "empty" in reasons["empty"]
    assert "UTF-8" in reasons["latin"]
    assert "binary" in reasons["binary"]
    assert "not valid JSON" in reasons["list-line-2"]
    assert "neither 'path' nor 'text'" in reasons["nothing"]
    assert "outside" in reasons["escape"]
    assert report["totals"]["failed"] == 6 and report["totals"]["done"] == 3
    for doc_id, reason in reasons.items():
        assert f"failed {doc_id}: {reason}" in result.stderr
    # Nothing was written outside OUT/, and only whole outputs inside it.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out", "secret.txt"]
    assert sorted(p.name for p in out.glob("*.wav")) == ["etc__evil.wav", "good.wav", "inline.wav"]


def test_wrong_key_stops_the_run_early_with_one_message(tone_server: RunningServer, tmp_path: Path) -> None:
    out = tmp_path / "out"
    wrong = "sk-wrong-key-should-never-be-printed"
    before = tone_server.stats()["counts"].get("error_401", 0)
    before_models = tone_server.stats()["models"].get("error_401", 0)
    result = run_cli("run", str(SAMPLE_INPUTS), "-o", str(out), "--concurrency", "1",
                     env=api_env(tone_server, key=wrong))
    assert result.exit_code == 2
    assert result.stderr.count("stopped: the API refused the key") == 1
    counts = tone_server.stats()["counts"]  # the run's model check (GET /models/{id}) is the one refused request
    assert counts.get("error_401", 0) - before + tone_server.stats()["models"].get("error_401", 0) - before_models == 1
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "aborted" and "refused the key" in report["abort_reason"]
    assert report["documents"] == []  # refused at the model check: no document was started
    # Rebuilt from state later, the report still says why the run stopped.
    (out / "report.json").unlink()
    assert run_cli("report", str(out)).exit_code == 0
    assert "refused the key" in json.loads((out / "report.json").read_text())["abort_reason"]
    assert wrong not in _all_text(out) + result.stdout + result.stderr
    assert list(out.glob("*.wav")) == []


def test_unknown_voice_is_rejected_by_the_server(tone_server: RunningServer, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("run", str(SAMPLE_INPUTS / "notes"), "-o", str(out), "--voice", "robot",
                     env=api_env(tone_server))
    assert result.exit_code == 1
    report = json.loads((out / "report.json").read_text())
    assert report["documents"][0]["error_class"] == "PermanentApiError"
    assert "audio.voice" in report["documents"][0]["reason"] or "robot" in report["documents"][0]["reason"]


def test_usage_errors_exit_2_without_traceback(tmp_path: Path) -> None:
    missing = run_cli("run", str(tmp_path / "nope"), "-o", str(tmp_path / "out"))
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
    provider = run_cli("run", str(SAMPLE_INPUTS), "-o", str(tmp_path / "out"), "--provider", "magic")
    assert provider.exit_code == 2 and "magic" in provider.stderr
    base = run_cli("run", str(SAMPLE_INPUTS), "-o", str(tmp_path / "out"), "--api-base", "ftp//nowhere")
    assert base.exit_code == 2 and "base URL" in base.stderr
    keyless = run_cli("run", str(SAMPLE_INPUTS), "-o", str(tmp_path / "out"), "--provider", "openai")
    assert keyless.exit_code == 2 and "OPENAI_API_KEY" in keyless.stderr
    for result in (missing, provider, base, keyless):
        assert "Traceback" not in result.stderr


class _BuggyProvider(Provider):
    """A provider written against the contract alone (providers/base.py): the defaults for everything else."""

    name = "buggy"

    async def summarise(self, document: Document, settings: RunSettings):
        raise ValueError("a bug in a provider")

    async def aclose(self) -> None:
        pass


def test_a_bug_still_leaves_a_report_marked_crashed(tmp_path: Path) -> None:
    settings = RunSettings(inputs=(str(SAMPLE_INPUTS / "news"),), out_dir=tmp_path / "out", concurrency=2)
    with pytest.raises(ValueError):
        runner.run(settings, provider=_BuggyProvider())
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["status"] == "crashed" and "a bug in a provider" in report["abort_reason"]
