"""Every enclosure podcast.xml links is one podcast apps play (MP3 or AAC in .m4a): a --format wav, opus or flac run
keeps its file for the archive and the feed links an MP3 copy made in the same publishing step.

Expected values come from gPodder's podcastparser, feedparser, the ffmpeg binary's decode and pyloudnorm.
"""

from __future__ import annotations

import io
import json
import shutil
import time
from pathlib import Path
from urllib.parse import urlsplit

import feedparser
import podcastparser
import pytest
from oracles import RATE, decoded_samples, integrated_lufs
from runs import SAMPLE_INPUTS, child_env, run_cli

from pipeline.audio.publish import PublishOptions, publish
from pipeline.engine.tone import tone
from pipeline.models import Document, RunSettings
from pipeline.plan import decide, fingerprint, sha256_file
from pipeline.state import DocumentRecord

BASE = "http://127.0.0.1:8000/feed/"  # the default podcast URL the run writes when none is given
PLAYABLE = {"audio/mpeg": ".mp3", "audio/mp4": ".m4a"}


def _local(out: Path, url: str) -> Path:
    return out / urlsplit(url).path.removeprefix(urlsplit(BASE).path)


def _check_enclosures(out: Path) -> list[dict]:
    """Every episode's enclosure as gPodder reads it: a type apps play, the file's exact size, and an
    itunes:duration (whole seconds) within 1 s of what ffmpeg decodes from that file."""
    data = (out / "podcast.xml").read_bytes()
    gpodder = podcastparser.parse(BASE + "podcast.xml", io.BytesIO(data))
    parsed = feedparser.parse(data)
    assert not parsed.bozo, parsed.bozo_exception
    assert gpodder["episodes"] and len(gpodder["episodes"]) == len(parsed.entries)
    for episode, entry in zip(gpodder["episodes"], parsed.entries):
        (enclosure,) = episode["enclosures"]
        audio = _local(out, enclosure["url"])
        assert enclosure["mime_type"] in PLAYABLE and audio.suffix == PLAYABLE[enclosure["mime_type"]]
        assert entry.enclosures[0].type == enclosure["mime_type"]
        assert enclosure["file_size"] == audio.stat().st_size == int(entry.enclosures[0].length)
        assert abs(episode["total_time"] - len(decoded_samples(audio.read_bytes())) / RATE) <= 1
    return gpodder["episodes"]


@pytest.mark.slow  # three offline runs of one short note (about six seconds)
def test_a_wav_run_keeps_its_wav_and_feeds_an_mp3_and_a_rerun_skips(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(SAMPLE_INPUTS / "notes" / "short-reminder.txt", folder)
    out = tmp_path / "out"
    result = run_cli("run", str(folder), "-o", str(out), "--format", "wav", env=child_env())
    assert result.exit_code == 0, result.stderr

    (episode,) = _check_enclosures(out)
    copy = _local(out, episode["enclosures"][0]["url"])
    wav, sidecar = out / "short-reminder.wav", json.loads((out / "short-reminder.json").read_text())
    assert copy.name == "short-reminder.mp3" and wav.read_bytes()[:4] == b"RIFF"  # the WAV stays, for the archive
    assert sidecar["audio_file"] == wav.name and sidecar["format"] == "wav"
    feed_audio = sidecar["feed_audio"]
    assert feed_audio["file"] == copy.name and feed_audio["mime_type"] == "audio/mpeg"
    assert feed_audio["bytes"] == copy.stat().st_size and feed_audio["sha256"] == sha256_file(copy)
    assert abs(feed_audio["duration_s"] - len(decoded_samples(copy.read_bytes())) / RATE) <= 0.05
    assert abs(feed_audio["duration_s"] - len(decoded_samples(wav.read_bytes())) / RATE) <= 0.05
    assert abs(integrated_lufs(copy.read_bytes()) - (-16.0)) <= 1.0  # what apps expect of a published file

    stamps = {p.name: p.stat().st_mtime_ns for p in (copy, wav, out / "short-reminder.json")}
    again = run_cli("run", str(folder), "-o", str(out), "--format", "wav", env=child_env())
    assert again.exit_code == 0, again.stderr
    assert json.loads((out / "report.json").read_text())["totals"]["skipped"] == 1
    assert {p.name: p.stat().st_mtime_ns for p in (copy, wav, out / "short-reminder.json")} == stamps
    _check_enclosures(out)

    copy.unlink()  # a recorded output gone: the document is damaged and made again, copy and all
    remade = run_cli("run", str(folder), "-o", str(out), "--format", "wav", env=child_env())
    assert remade.exit_code == 0, remade.stderr
    assert json.loads((out / "report.json").read_text())["totals"]["done"] == 1
    assert copy.exists()
    _check_enclosures(out)


def test_the_feed_copy_is_made_from_the_same_source_at_the_same_target() -> None:
    wav = tone(["a tone long enough to measure its loudness and its length properly"]).wav
    main = publish(wav, PublishOptions(format="flac", loudness_lufs=-16.0, tags={"title": "Tone"}, feed_format="mp3"))
    copy = main.feed_copy
    assert copy is not None and copy.extension == "mp3" and copy.mime_type == "audio/mpeg"
    assert copy.data[:3] == b"ID3" and main.data[:4] == b"fLaC"
    decoded = len(decoded_samples(copy.data)) / RATE
    assert abs(copy.duration_s - decoded) <= 0.01 and abs(main.duration_s - decoded) <= 0.01
    assert abs(integrated_lufs(copy.data) - (-16.0)) <= 1.0
    with pytest.raises(ValueError):
        PublishOptions(format="mp3", feed_format="mp3")  # an mp3 needs no copy
    with pytest.raises(ValueError):
        PublishOptions(format="wav", feed_format="opus")  # apps do not play opus


def _record(out: Path, doc: Document, settings: RunSettings, extras: list[str]) -> DocumentRecord:
    def stamp(name: str) -> list:
        path = out / name
        path.write_bytes(name.encode())
        info = path.stat()
        return [name, sha256_file(path), info.st_size, info.st_mtime_ns]

    main, side = stamp(f"{doc.id}.wav"), stamp(f"{doc.id}.json")
    return DocumentRecord(
        doc_id=doc.id, source=doc.source, title=None, input_sha256=doc.sha256,
        fingerprint=fingerprint(doc, settings), status="done", error=None, attempts=1, duration_s=1.0,
        transcript="t", run_id="r", started_at=None, finished_at=time.time(), main_name=main[0],
        main_sha256=main[1], main_size=main[2], main_mtime_ns=main[3], sidecar_name=side[0],
        sidecar_sha256=side[1], sidecar_size=side[2], sidecar_mtime_ns=side[3],
        extra_files_json=json.dumps([stamp(name) for name in extras]) if extras else None)


def test_a_wav_document_recorded_without_its_feed_copy_is_made_again(tmp_path: Path) -> None:
    """A folder made before feed copies: its wav episodes would drop out of the feed if they were skipped."""
    settings = RunSettings(inputs=(str(tmp_path),), out_dir=tmp_path)
    doc = Document(id="note", source="note.txt", text="t", sha256="0" * 64)
    assert decide(doc, settings, _record(tmp_path, doc, settings, [])).verdict == "damaged"
    assert decide(doc, settings, _record(tmp_path, doc, settings, ["note.mp3"])).verdict == "unchanged"
