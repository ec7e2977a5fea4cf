"""`--format`/`--loudness` end to end: published files that decode, at the loudness asked, in the podcast feed."""

from __future__ import annotations

import json
from pathlib import Path

import feedparser
from mutagen import File as MutagenFile
from oracles import integrated_lufs
from peers import RunningServer, api_env
from runs import SAMPLE_INPUTS, run_cli

from pipeline.audio import duration_of


def test_mp3_with_loudness_and_tags_in_the_feed(tone_server: RunningServer, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("run", str(SAMPLE_INPUTS / "notes"), "-o", str(out), "--format", "mp3",
                     "--podcast-title", "Notes", env=api_env(tone_server))
    assert result.exit_code == 0, result.stderr
    sidecar = json.loads((out / "short-reminder.json").read_text())
    mp3 = out / "short-reminder.mp3"
    assert sidecar["audio_file"] == mp3.name and sidecar["format"] == "mp3"
    assert abs(duration_of(mp3) - sidecar["duration_s"]) <= 0.05
    assert abs(integrated_lufs(mp3.read_bytes()) - (-16.0)) <= 1.0  # pyloudnorm, not the meter that set it
    tags = MutagenFile(mp3)
    assert str(tags["TIT2"]) == "short-reminder" and str(tags["TALB"]) == "Notes"
    feed = feedparser.parse((out / "podcast.xml").read_bytes())
    enclosure = feed.entries[0].enclosures[0]
    assert enclosure.type == "audio/mpeg" and int(enclosure.length) == mp3.stat().st_size
    assert not list(out.glob("*.wav"))


def test_wav_keeps_its_level_unless_asked(tone_server: RunningServer, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("run", str(SAMPLE_INPUTS / "notes"), "-o", str(out), "--loudness", "-23",
                     env=api_env(tone_server))
    assert result.exit_code == 0, result.stderr
    assert abs(integrated_lufs((out / "short-reminder.wav").read_bytes()) - (-23.0)) <= 1.0
    bad = run_cli("run", str(SAMPLE_INPUTS / "notes"), "-o", str(out), "--loudness", "loud")
    assert bad.exit_code == 2 and "--loudness" in bad.stderr


def test_changing_the_format_leaves_no_old_audio_file(tone_server: RunningServer, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run_cli("run", str(SAMPLE_INPUTS / "notes"), "-o", str(out), env=api_env(tone_server)).exit_code == 0
    assert (out / "short-reminder.wav").exists()
    result = run_cli("run", str(SAMPLE_INPUTS / "notes"), "-o", str(out), "--format", "opus", env=api_env(tone_server))
    assert result.exit_code == 0, result.stderr
    # short-reminder.mp3 was the WAV's feed copy and is now the opus file's: the same name, remade.
    assert sorted(p.name for p in out.glob("short-reminder.*")) == [
        "short-reminder.json", "short-reminder.mp3", "short-reminder.opus", "short-reminder.txt", "short-reminder.vtt"]


def test_flac_through_the_cli_is_lossless_and_in_the_feed(tone_server: RunningServer, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("run", str(SAMPLE_INPUTS / "notes"), "-o", str(out), "--format", "flac", "--loudness", "off",
                     env=api_env(tone_server))
    assert result.exit_code == 0, result.stderr
    flac = out / "short-reminder.flac"
    sidecar = json.loads((out / "short-reminder.json").read_text())
    assert sidecar["audio_file"] == flac.name and sidecar["format"] == "flac"
    assert flac.read_bytes()[:4] == b"fLaC"
    info = MutagenFile(flac).info  # mutagen reads the STREAMINFO block: lossless 16-bit mono, the sidecar's length
    assert (info.bits_per_sample, info.channels) == (16, 1)
    assert abs(info.length - sidecar["duration_s"]) <= 0.01
    # The feed links the MP3 copy (apps do not play FLAC); the FLAC stays as the archive.
    enclosure = feedparser.parse((out / "podcast.xml").read_bytes()).entries[0].enclosures[0]
    copy = out / "short-reminder.mp3"
    assert enclosure.type == "audio/mpeg" and int(enclosure.length) == copy.stat().st_size
    assert sidecar["feed_audio"]["file"] == copy.name and sidecar["feed_audio"]["bytes"] == copy.stat().st_size
    assert not list(out.glob("*.wav"))
