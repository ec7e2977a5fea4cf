"""Recordings in: input_audio on the wire, --output text, parts split at pauses, offline recognition, follow-ups.

Recordings are real speech made by the offline voice once per module; every run goes through the CLI, and the
API runs talk to `audiosum serve` over loopback, whose /stats `wire` counters say what the requests carried.
"""

from __future__ import annotations

import json
import subprocess
import sys
import wave
from pathlib import Path

import pytest
from peers import RunningServer, api_env, running_server
from runs import child_env, run_cli

from pipeline.audio import ffmpeg_exe, wav_info
from pipeline.audio.recordings import plan_cuts
from pipeline.sources import iter_manifest

SENTENCES = [
    "Hello, I am calling about my internet connection.",
    "It has been down for three days and nobody called me back.",
    "I am very unhappy with the service and I want a refund for this month.",
    "Please fix the router or cancel my contract.",
]

_MAKE_RECORDING = """
import sys, wave
from pipeline.engine import speech
speech.init_worker(2)
pieces = [speech.speak([s]) for s in sys.argv[2:]]
with wave.open(sys.argv[1], "wb") as out:
    out.setnchannels(1); out.setsampwidth(2); out.setframerate(pieces[0].sample_rate)
    for piece in pieces:
        with wave.open(__import__("io").BytesIO(piece.wav)) as w:
            out.writeframes(w.readframes(w.getnframes()))
        out.writeframes(b"\\x00\\x00" * int(pieces[0].sample_rate * 0.7))  # a clear pause between sentences
"""


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a spoken complaint call as WAV, and the same call as M4A and FLAC elsewhere."""
    folder = tmp_path_factory.mktemp("recordings")
    call = folder / "calls" / "call.wav"
    call.parent.mkdir()
    subprocess.run([sys.executable, "-c", _MAKE_RECORDING, str(call), *SENTENCES], check=True, env=child_env(),
                   capture_output=True, timeout=120)
    other = folder / "other"
    other.mkdir()
    for name, codec in (("call.m4a", "aac"), ("call-copy.flac", "flac")):
        subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(call), "-c:a", codec, str(other / name)],
                       check=True, timeout=60)
    return folder


def _wire_delta(server: RunningServer, before: dict) -> dict[str, int]:
    after = server.stats()["wire"]
    return {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}


def _sidecar(out: Path, doc_id: str) -> dict:
    return json.loads((out / f"{doc_id}.json").read_text(encoding="utf-8"))


def test_recording_to_text_over_the_wire(recordings: Path, tone_server: RunningServer, tmp_path: Path) -> None:
    before = tone_server.stats()["wire"]
    result = run_cli("run", str(recordings / "calls"), "-o", str(tmp_path / "out"), "--output", "text",
                     "--instructions", "Give the caller's sentiment and key complaints as JSON.",
                     env=api_env(tone_server))
    assert result.exit_code == 0, result.stderr + result.stdout
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "call.json", "call.txt", "report.html", "report.json"]
    sidecar = _sidecar(out, "call")
    assert sidecar["output"] == "text" and sidecar["audio_file"] is None and sidecar["text_file"] == "call.txt"
    assert sidecar["input"]["kind"] == "recording" and sidecar["input"]["parts"] == 1
    assert 15 < sidecar["input"]["seconds"] < 25
    assert sidecar["instructions"].startswith("Give the caller's sentiment")
    # The server recognised the speech offline and summarised it: the words of the call come back.
    text = (out / "call.txt").read_text(encoding="utf-8")
    assert "three days" in text.lower() and text.strip() == sidecar["transcript"]
    # One request: text out only, carrying the WAV as it was.
    assert _wire_delta(tone_server, before) == {"modalities=text": 1, "input_audio": 1, "input_audio_format=wav": 1}


@pytest.mark.slow  # hears the recording again (Whisper, seconds a run)
def test_recording_to_spoken_summary_over_the_wire(recordings: Path, tone_server: RunningServer,
                                                   tmp_path: Path) -> None:
    before = tone_server.stats()["wire"]
    out = tmp_path / "out"
    result = run_cli("run", str(recordings / "other"), "-o", str(out), env=api_env(tone_server))
    assert result.exit_code == 0, result.stderr + result.stdout
    assert _sidecar(out, "call")["input"]["format"] == "m4a"
    assert _sidecar(out, "call-copy")["input"]["format"] == "flac"
    for doc_id in ("call", "call-copy"):
        assert _sidecar(out, doc_id)["audio_file"] == f"{doc_id}.wav"
        assert wav_info((out / f"{doc_id}.wav").read_bytes()).duration_s > 1
    # FLAC and M4A are not input_audio formats: converted to MP3 locally before they were sent.
    assert _wire_delta(tone_server, before) == {"modalities=text,audio": 2, "input_audio": 2,
                                                "input_audio_format=mp3": 2}


@pytest.mark.slow  # hears the recording again (Whisper, seconds a run)
def test_m4a_is_converted_and_sent_as_mp3(recordings: Path, tone_server: RunningServer, tmp_path: Path) -> None:
    before = tone_server.stats()["wire"]
    out = tmp_path / "out"
    result = run_cli("run", str(recordings / "other" / "call.m4a"), "-o", str(out), "--output", "text",
                     env=api_env(tone_server))
    assert result.exit_code == 0, result.stderr + result.stdout
    assert _sidecar(out, "call")["input"]["format"] == "m4a"
    assert "three days" in (out / "call.txt").read_text(encoding="utf-8").lower()
    assert _wire_delta(tone_server, before) == {"modalities=text": 1, "input_audio": 1, "input_audio_format=mp3": 1}


@pytest.mark.slow  # hears the recording again (Whisper, seconds a run)
def test_a_recording_over_the_size_limit_is_split_at_pauses(recordings: Path, tone_server: RunningServer,
                                                            tmp_path: Path) -> None:
    before = tone_server.stats()["wire"]
    out = tmp_path / "out"
    # 60 KB of 64 kbit/s MP3 is about 7 s: the 20 s call needs several parts.
    result = run_cli("run", str(recordings / "calls"), "-o", str(out), "--max-audio-mb", "0.06",
                     env=api_env(tone_server))
    assert result.exit_code == 0, result.stderr + result.stdout
    sidecar = _sidecar(out, "call")
    parts = sidecar["input"]["parts"]
    assert parts >= 3
    assert _wire_delta(tone_server, before) == {"modalities=text,audio": parts, "input_audio": parts,
                                                "input_audio_format=mp3": parts}
    # Cut at pauses, so each part holds whole sentences: the joined answer has every sentence's key words. (The third
    # sentence by its first and last words: Whisper tiny.en hears its "a refund" as "to reef in" in some renderings.)
    transcript = sidecar["transcript"].lower()
    for word in ("connection", "three days", "unhappy", "this month", "contract"):
        assert word in transcript
    assert sidecar["transcript"].count("\n\n") == parts - 1
    stitched = wav_info((out / "call.wav").read_bytes())
    assert abs(stitched.duration_s - sidecar["duration_s"]) < 0.01


def test_plan_cuts_prefers_pauses_and_never_exceeds_the_limit() -> None:
    assert plan_cuts([], 10.0, 4.0) == [(0.0, 4.0), (4.0, 8.0), (8.0, 10.0)]
    assert plan_cuts([2.5, 3.9, 6.0, 7.5], 10.0, 4.0) == [(0.0, 3.9), (3.9, 7.5), (7.5, 10.0)]
    assert plan_cuts([0.5, 3.0], 3.5, 4.0) == [(0.0, 3.5)]
    for start, end in plan_cuts([1.2, 5.0, 5.1, 9.9, 14.0], 30.0, 5.0):
        assert 0 < end - start <= 5.0


@pytest.mark.slow  # hears the recording again (Whisper, seconds a run)
def test_offline_engine_recognises_and_summarises_a_recording(recordings: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("run", str(recordings / "calls"), "-o", str(out), "--provider", "local", "--workers", "1")
    assert result.exit_code == 0, result.stderr + result.stdout
    sidecar = _sidecar(out, "call")
    assert sidecar["engine"].startswith("faster-whisper")
    heard = sidecar["input"]["heard"].lower()
    # What was said (SENTENCES), as Whisper hears it on this voice.
    assert "internet connection" in heard and "three days" in heard and "contract" in heard
    assert wav_info((out / "call.wav").read_bytes()).duration_s > 3
    text_out = tmp_path / "text"
    result = run_cli("run", str(recordings / "calls"), "-o", str(text_out), "--provider", "local", "--output", "text",
                     "--workers", "1")
    assert result.exit_code == 0, result.stderr + result.stdout
    assert not list(text_out.glob("*.wav"))
    assert "three days" in (text_out / "call.txt").read_text(encoding="utf-8").lower()


def test_output_text_with_a_text_document_is_a_usage_error(recordings: Path, tmp_path: Path) -> None:
    note = tmp_path / "in" / "note.txt"
    note.parent.mkdir()
    note.write_text("A short note that would have to be spoken.", encoding="utf-8")
    result = run_cli("run", str(note.parent), "-o", str(tmp_path / "out"), "--output", "text")
    assert result.exit_code == 2
    assert "--output text is for recordings" in result.stderr and "note.txt" in result.stderr
    assert not (tmp_path / "out").exists()


def _followup_manifest(recordings: Path, tmp_path: Path) -> Path:
    manifest = tmp_path / "calls.jsonl"
    (tmp_path / "call.wav").write_bytes((recordings / "calls" / "call.wav").read_bytes())
    manifest.write_text(json.dumps({"id": "call-17", "path": "call.wav", "title": "Call 17", "followups": [
        "What does the caller want?", "How long has the connection been down?", "What should we do first?"]}) + "\n",
                        encoding="utf-8")
    return manifest


@pytest.mark.slow  # hears the recording again (Whisper, seconds a run)
def test_followups_refer_to_earlier_answers_by_audio_id(recordings: Path, tone_server: RunningServer,
                                                        tmp_path: Path) -> None:
    manifest = _followup_manifest(recordings, tmp_path)
    before = tone_server.stats()["wire"]
    out = tmp_path / "out"
    result = run_cli("run", str(manifest), "-o", str(out), env=api_env(tone_server))
    assert result.exit_code == 0, result.stderr + result.stdout
    sidecar = _sidecar(out, "call-17")
    answers = sidecar["followups"]
    assert [a["question"] for a in answers] == ["What does the caller want?", "How long has the connection been down?",
                                                "What should we do first?"]
    for number, answer in enumerate(answers, start=1):
        assert answer["file"] == f"call-17.q{number}.wav"
        assert wav_info((out / answer["file"]).read_bytes()).duration_s > 0.5
        assert answer["audio_id"].startswith("audio_") and answer["transcript"]
        # Every earlier assistant turn (the summary, then each answer) went back by its audio id.
        assert answer["history"] == [{"turn": t, "via": "audio_id", "reason": None} for t in range(number)]
    # The summary plus three follow-ups; the recording rides along in each (it is the conversation's first turn).
    assert _wire_delta(tone_server, before) == {"modalities=text,audio": 4, "input_audio": 4,
                                                "input_audio_format=wav": 4, "assistant_audio_id": 1 + 2 + 3}
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    (document,) = report["documents"]
    assert [q["file"] for q in document["followups"]] == ["call-17.q1.wav", "call-17.q2.wav", "call-17.q3.wav"]
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "How long has the connection been down?" in page

    # A rerun skips it; losing one answer file redoes the document.
    again = run_cli("run", str(manifest), "-o", str(out), env=api_env(tone_server))
    assert again.exit_code == 0 and "1 skipped" in again.stdout
    (out / "call-17.q2.wav").unlink()
    redo = run_cli("run", str(manifest), "-o", str(out), env=api_env(tone_server))
    assert redo.exit_code == 0 and "1 done" in redo.stdout and (out / "call-17.q2.wav").exists()


@pytest.mark.slow  # hears the recording again (Whisper, seconds a run)
def test_expired_audio_ids_fall_back_to_transcripts(recordings: Path, tmp_path: Path) -> None:
    manifest = _followup_manifest(recordings, tmp_path)
    out = tmp_path / "out"
    with running_server("--engine", "tone", "--audio-ttl", "0") as server:
        result = run_cli("run", str(manifest), "-o", str(out), env=api_env(server))
        wire = server.stats()["wire"]
    assert result.exit_code == 0, result.stderr + result.stdout
    for number, answer in enumerate(_sidecar(out, "call-17")["followups"], start=1):
        assert answer["history"] == [{"turn": t, "via": "transcript", "reason": "expired"} for t in range(number)]
    assert wire.get("assistant_audio_id", 0) == 0 and wire["assistant_text"] == 1 + 2 + 3


@pytest.mark.slow  # hears the recording again (Whisper, seconds a run)
def test_refused_audio_ids_are_resent_as_transcripts(recordings: Path, tmp_path: Path) -> None:
    manifest = _followup_manifest(recordings, tmp_path)
    out = tmp_path / "out"
    # A server that forgets every id at once refuses each reference with the real 400 shape.
    with running_server("--engine", "tone", "--audio-memory", "0") as server:
        result = run_cli("run", str(manifest), "-o", str(out), env=api_env(server))
        stats = server.stats()
    assert result.exit_code == 0, result.stderr + result.stdout
    answers = _sidecar(out, "call-17")["followups"]
    for number, answer in enumerate(answers, start=1):
        assert [h["via"] for h in answer["history"]] == ["transcript"] * number
    # Question 1 learns the ids are refused (one 400, then asked again); the later questions never send one.
    assert all(h["reason"].startswith("refused by the server: HTTP 400") for a in answers for h in a["history"])
    assert stats["counts"]["error_400"] == 1 and stats["counts"]["ok"] == 4
    assert stats["wire"]["assistant_audio_id"] == 1
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["documents"][0]["requests"] == 5


@pytest.mark.slow  # hears the recording again (Whisper, seconds a run)
def test_fewer_questions_or_text_output_leave_no_stale_files(recordings: Path, tone_server: RunningServer,
                                                             tmp_path: Path) -> None:
    manifest = _followup_manifest(recordings, tmp_path)
    out = tmp_path / "out"
    assert run_cli("run", str(manifest), "-o", str(out), env=api_env(tone_server)).exit_code == 0
    # call-17.mp3: the podcast feed's copy of the WAV summary (podcast apps do not play WAV).
    assert {p.name for p in out.glob("call-17*")} == {
        "call-17.wav", "call-17.mp3", "call-17.json", "call-17.txt", "call-17.vtt", "call-17.q1.wav", "call-17.q2.wav",
        "call-17.q3.wav"}
    line = json.loads(manifest.read_text(encoding="utf-8"))
    line["followups"] = line["followups"][:1]
    manifest.write_text(json.dumps(line) + "\n", encoding="utf-8")
    assert run_cli("run", str(manifest), "-o", str(out), env=api_env(tone_server)).exit_code == 0
    assert {p.name for p in out.glob("call-17*")} == {
        "call-17.wav", "call-17.mp3", "call-17.json", "call-17.txt", "call-17.vtt", "call-17.q1.wav"}
    assert run_cli("run", str(manifest), "-o", str(out), "--output", "text", env=api_env(tone_server)).exit_code == 0
    assert {p.name for p in out.glob("call-17*")} == {"call-17.json", "call-17.txt", "call-17.q1.txt"}
    # It is no longer an episode: the feed, rebuilt, does not point at the files that are gone.
    assert "call-17" not in (out / "podcast.xml").read_text(encoding="utf-8")


@pytest.mark.slow  # hears the recording again (Whisper, seconds a run)
def test_a_failed_run_in_between_still_lets_stale_answers_go(recordings: Path, tone_server: RunningServer,
                                                              tmp_path: Path) -> None:
    manifest = _followup_manifest(recordings, tmp_path)
    out = tmp_path / "out"
    assert run_cli("run", str(manifest), "-o", str(out), env=api_env(tone_server)).exit_code == 0
    line = json.loads(manifest.read_text(encoding="utf-8"))
    line["followups"] = line["followups"][:1]
    manifest.write_text(json.dumps(line) + "\n", encoding="utf-8")
    with running_server("--engine", "tone", "--faults", "500=1") as broken:
        failed = run_cli("run", str(manifest), "-o", str(out), "--max-attempts", "1", env=api_env(broken))
    assert failed.exit_code == 1
    assert (out / "call-17.q3.wav").exists()  # a failure removes nothing
    assert run_cli("run", str(manifest), "-o", str(out), env=api_env(tone_server)).exit_code == 0
    assert sorted(p.name for p in out.glob("call-17.q*")) == ["call-17.q1.wav"]


@pytest.mark.slow  # hears the recording again (Whisper, seconds a run)
def test_followups_from_a_job_and_the_offline_engine(recordings: Path, tmp_path: Path) -> None:
    (tmp_path / "jobs").mkdir()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "call.wav").write_bytes((recordings / "calls" / "call.wav").read_bytes())
    job = tmp_path / "jobs" / "calls.toml"
    job.write_text('inputs = ["in"]\nout = "out"\nprovider = "local"\nworkers = 1\noutput = "text"\n'
                   'followups = ["Does the caller want a refund?"]\n', encoding="utf-8")
    result = run_cli("run", "--job", str(job))
    assert result.exit_code == 0, result.stderr + result.stdout
    (answer,) = _sidecar(tmp_path / "out", "call")["followups"]
    # The answer is the sentence about the refund (SENTENCES[2]), known by its words either side of "a refund":
    # Whisper tiny.en hears "a refund" as "to reef in" in some of the voice's renderings (Piper's are not identical).
    said = answer["transcript"].lower()
    assert answer["file"] == "call.q1.txt" and "unhappy with the service" in said and "for this month" in said
    assert (tmp_path / "out" / "call.q1.txt").read_text(encoding="utf-8").strip() == answer["transcript"]


def test_manifest_followups_formats(tmp_path: Path) -> None:
    (tmp_path / "a.wav").write_bytes(b"RIFF")
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text("\n".join(json.dumps(item) for item in [
        {"id": "a", "path": "a.wav", "followups": ["One?", "  Two  words? "]},
        {"id": "b", "text": "Some text.", "followups": "One question\nper line?"},
        {"id": "c", "text": "Some text.", "followups": [1, 2]},
        {"id": "d", "text": "Some text.", "followups": ["q"] * 21},
    ]) + "\n", encoding="utf-8")
    items = list(iter_manifest(jsonl))
    assert items[0].followups == ("One?", "Two words?") and items[0].audio is not None
    assert items[1].followups == ("One question", "per line?")
    assert [getattr(i, "reason", None) for i in items[2:]] == [
        "field 'followups' must be a list of questions (strings)",
        "field 'followups' has 21 questions; at most 20 are allowed"]
    csv_manifest = tmp_path / "m.csv"
    csv_manifest.write_text('id,text,followups\nx,Some text.,"First?\nSecond?"\n', encoding="utf-8")
    (item,) = iter_manifest(csv_manifest)
    assert item.followups == ("First?", "Second?")


def test_broken_recordings_fail_alone(recordings: Path, tone_server: RunningServer, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    good = (recordings / "calls" / "call.wav").read_bytes()
    (folder / "good.wav").write_bytes(good)
    (folder / "cut.wav").write_bytes(good[: len(good) // 3])
    (folder / "text.mp3").write_bytes(b"just some text, not audio at all\n" * 20)
    (folder / "empty.flac").write_bytes(b"")
    with wave.open(str(folder / "silence.wav"), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(16000)
        writer.writeframes(b"\x00\x00" * 16000)
    out = tmp_path / "out"
    result = run_cli("run", str(folder), "-o", str(out), "--output", "text", env=api_env(tone_server))
    assert result.exit_code == 1
    report = {d["doc_id"]: d for d in json.loads((out / "report.json").read_text(encoding="utf-8"))["documents"]}
    assert report["good"]["status"] == "done" and report["silence"]["status"] == "done"
    assert "No speech was recognised" in (out / "silence.txt").read_text(encoding="utf-8")
    assert report["cut"]["status"] == "failed" and "truncated WAV" in report["cut"]["reason"]
    assert report["text"]["status"] == "failed" and "named .mp3 but is not WAV, MP3" in report["text"]["reason"]
    assert report["empty"]["status"] == "failed" and "empty" in report["empty"]["reason"]
    assert not list(out.glob(".audiosum-tmp-*"))


@pytest.mark.slow  # hears the recording again (Whisper, seconds a run)
def test_text_followups_about_a_recording_in_parts_go_to_a_text_model(recordings: Path, tmp_path: Path) -> None:
    manifest = _followup_manifest(recordings, tmp_path)
    out = tmp_path / "out"
    with running_server("--engine", "tone") as server:
        result = run_cli("run", str(manifest), "-o", str(out), "--output", "text", "--max-audio-mb", "0.06",
                         env=api_env(server))
        wire = server.stats()["wire"]
    assert result.exit_code == 0, result.stderr + result.stdout
    sidecar = _sidecar(out, "call-17")
    parts = sidecar["input"]["parts"]
    assert parts >= 3
    # The parts went to the audio model (audio in, text out); the follow-ups, text only, to the text model.
    assert wire == {"modalities=text": parts + 3, "input_audio": parts, "input_audio_format=mp3": parts,
                    "assistant_text": 1 + 2 + 3}
    for answer in sidecar["followups"]:
        assert answer["history"][0] == {"turn": 0, "via": "transcript",
                                        "reason": "a text answer has no audio id"}


@pytest.mark.slow  # hears the recording again (Whisper, seconds a run)
def test_answers_are_published_like_the_summary(recordings: Path, tone_server: RunningServer, tmp_path: Path) -> None:
    from pipeline.audio import duration_of

    manifest = _followup_manifest(recordings, tmp_path)
    out = tmp_path / "out"
    result = run_cli("run", str(manifest), "-o", str(out), "--format", "mp3", env=api_env(tone_server))
    assert result.exit_code == 0, result.stderr + result.stdout
    answers = _sidecar(out, "call-17")["followups"]
    assert [a["file"] for a in answers] == ["call-17.q1.mp3", "call-17.q2.mp3", "call-17.q3.mp3"]
    for answer in answers:
        assert abs(duration_of(out / answer["file"]) - answer["duration_s"]) < 0.1
    assert not list(out.glob("*.wav"))


@pytest.mark.slow  # hears the recording again (Whisper, seconds a run)
def test_the_local_server_recognises_in_its_worker_processes(recordings: Path, local_server: RunningServer,
                                                             tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("run", str(recordings / "calls"), "-o", str(out), "--output", "text", env=api_env(local_server))
    assert result.exit_code == 0, result.stderr + result.stdout
    assert "three days" in (out / "call.txt").read_text(encoding="utf-8").lower()


@pytest.mark.slow  # hears the recording in parts
def test_dry_run_counts_parts_and_followups(recordings: Path, tone_server: RunningServer, tmp_path: Path) -> None:
    def planned(*options: str) -> dict:
        out = tmp_path / f"out{len(options)}"
        result = run_cli("run", str(recordings / "calls"), "-o", str(out), "--dry-run", "--followup", "Why?",
                         *options, env=api_env(tone_server))
        assert result.exit_code == 0, result.stderr + result.stdout
        return json.loads((out / "dry-run.json").read_text(encoding="utf-8"))["dry_run"]

    before = tone_server.stats()["counts"]["requests"]
    whole = planned()
    assert whole["requests"] == 1 + 1 and whole["counts"] == {"new": 1}
    split = planned("--max-audio-mb", "0.06")
    assert tone_server.stats()["counts"]["requests"] == before  # a dry run sends nothing
    # The oracle is the real run: what the server then receives is what the dry run said it would send.
    real = run_cli("run", str(recordings / "calls"), "-o", str(tmp_path / "real"), "--followup", "Why?",
                   "--max-audio-mb", "0.06", env=api_env(tone_server))
    assert real.exit_code == 0, real.stderr + real.stdout
    sent = tone_server.stats()["counts"]["requests"] - before
    retried = json.loads((tmp_path / "real" / "report.json").read_text())["totals"]["retries"]  # a loaded machine
    # The dry run counts parts from the length alone (it does not decode to look for pauses); the real run cuts at
    # pauses, which can take one part more. The synthetic call's length varies by tens of ms between Piper runs,
    # which is enough to move it across that line now and then.
    logical = sent - retried
    assert split["requests"] <= logical <= split["requests"] + 1 and logical > 1 + 1, (split, sent, retried)


def test_pauses_are_found_across_scan_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import random

    from pipeline.audio import pcm16_to_wav, recordings

    rng = random.Random(3)
    rate = 16000
    pieces, expected, at = [], [], 0.0
    for sound_s, pause_s in [(1.3, 0.6), (0.9, 0.5), (1.7, 0.8), (1.1, 0.45), (0.8, 0.0)]:
        pieces.append(bytes(rng.getrandbits(8) for _ in range(int(sound_s * rate) * 2)))
        pieces.append(b"\x00\x00" * int(pause_s * rate))
        at += sound_s
        if pause_s:
            expected.append(at + pause_s / 2)
        at += pause_s
    recording = tmp_path / "bursts.wav"
    recording.write_bytes(pcm16_to_wav(b"".join(pieces), rate))
    monkeypatch.setattr(recordings, "SILENCE_CHUNK_S", 1.5)  # boundaries fall inside sounds and pauses
    found = recordings.pause_midpoints(recording, ".wav")
    assert len(found) >= len(expected)
    for middle in expected:  # each pause is found, its middle within 50 ms
        assert min(abs(f - middle) for f in found) < 0.05, (middle, found)
    assert all(min(abs(f - m) for m in expected) < 0.3 for f in found)  # and nothing that is not a pause
