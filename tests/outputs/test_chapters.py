"""Chapter marks of a narration read part by part: Podcasting 2.0 JSON chapters linked from the feed, ID3 CHAP/CTOC
frames in the MP3 and a chapter track in the M4A, all saying the same thing.

The frames are read back by mutagen and the ffmpeg binary; where each chapter really starts comes from ffmpeg's
silencedetect (the narration's parts are joined with a pause), not from the code under test.
"""

from __future__ import annotations

import json
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from mutagen.id3 import ID3
from mutagen.mp4 import MP4
from peers import RunningServer, api_env
from runs import run_cli

from pipeline.audio import ffmpeg_exe
from pipeline.audio.publish import PublishOptions, chapter_marks, publish
from pipeline.engine.tone import tone

PODCAST = "{https://podcastindex.org/namespace/1.0}"
BASE = "http://127.0.0.1:8000/feed/"
# Three sections, each too long to share a narration part with the next (parts hold about 4,800 characters), in
# long words so the tone engine's 0.4 s a word keeps the audio short.
SECTIONS = ("Harbour", "Ferries", "Library")
WORD = "Pneumonoultramicroscopicsilicovolcanoconiosis"


@pytest.fixture(scope="module")
def narrated(tone_server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One three-part narration run with --format mp3, m4a and wav (whose feed links an mp3 copy)."""
    root = tmp_path_factory.mktemp("chapters")
    folder = root / "in"
    folder.mkdir()
    body = "\n\n".join(f"# {name}\n" + " ".join([WORD] * 58) + "." for name in SECTIONS)
    (folder / "town.md").write_text(body + "\n")
    outs = {}
    for fmt in ("mp3", "m4a", "wav"):
        out = root / fmt
        result = run_cli("run", str(folder), "-o", str(out), "--mode", "narrate", "--format", fmt,
                         env=api_env(tone_server))
        assert result.exit_code == 0, result.stderr
        outs[fmt] = out
    return outs


def _json_chapters(out: Path) -> list[tuple[float, str]]:
    """The episode's chapters file, found through the feed's podcast:chapters link, checked against the
    Podcasting 2.0 JSON chapters format (version, chapters[] of startTime in seconds and title)."""
    (item,) = ET.parse(out / "podcast.xml").getroot().iter("item")
    (link,) = item.findall(f"{PODCAST}chapters")
    assert link.get("type") == "application/json+chapters" and link.get("url", "").startswith(BASE)
    path = out / urlsplit(link.get("url", "")).path.removeprefix(urlsplit(BASE).path)
    body = json.loads(path.read_text(encoding="utf-8"))
    assert body["version"] == "1.2.0" and isinstance(body["chapters"], list)
    for chapter in body["chapters"]:
        assert set(chapter) <= {"startTime", "title", "endTime", "img", "url", "toc", "location"}
        assert isinstance(chapter["startTime"], (int, float)) and chapter["startTime"] >= 0
        assert isinstance(chapter["title"], str) and chapter["title"]
    starts = [c["startTime"] for c in body["chapters"]]
    assert starts == sorted(starts) and starts[0] == 0
    return [(float(c["startTime"]), c["title"]) for c in body["chapters"]]


def _pause_ends(audio: Path) -> list[float]:
    """Where each pause of at least half a second ends, by ffmpeg's silencedetect."""
    completed = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostats", "-i", str(audio), "-af",
                                "silencedetect=noise=-50dB:d=0.5", "-f", "null", "-"],
                               capture_output=True, text=True, timeout=120, check=True)
    return [float(x) for x in re.findall(r"silence_end: ([0-9.]+)", completed.stderr)]


def _mp3_chapters(mp3: Path) -> list[tuple[float, str]]:
    tags = ID3(mp3)
    (toc,) = tags.getall("CTOC")
    assert toc.flags & 3 == 3  # top level, ordered
    chapters = {frame.element_id: frame for frame in tags.getall("CHAP")}
    assert list(toc.child_element_ids) == sorted(chapters, key=lambda key: chapters[key].start_time)
    frames = [chapters[key] for key in toc.child_element_ids]
    for frame, following in zip(frames, frames[1:]):
        assert frame.end_time == following.start_time
    return [(frame.start_time / 1000, str(frame.sub_frames["TIT2"])) for frame in frames]


def _ffmpeg_chapters(audio: Path) -> list[tuple[float, str]]:
    """`ffmpeg -i FILE` prints each chapter as 'Chapter #0:N: start S, end E' with its title below."""
    printed = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(audio)], capture_output=True, text=True,
                             timeout=60).stderr
    return [(float(start), title) for start, title in
            re.findall(r"Chapter #0:\d+: start ([0-9.]+), end [0-9.]+\n\s+Metadata:\n\s+title\s+: (.*)", printed)]


def _close(found: list[tuple[float, str]], expected: list[tuple[float, str]]) -> bool:
    return [t for _, t in found] == [t for _, t in expected] and all(
        abs(a - b) <= 0.002 for (a, _), (b, _) in zip(found, expected))


@pytest.mark.slow  # three narrations of three parts, each published (about ten seconds)
def test_a_narration_in_parts_carries_the_same_chapters_in_json_mp3_and_m4a(narrated: dict[str, Path]) -> None:
    mp3_out, m4a_out, wav_out = narrated["mp3"], narrated["m4a"], narrated["wav"]
    expected = _json_chapters(mp3_out)
    assert [title for _, title in expected] == list(SECTIONS)
    sidecar = json.loads((mp3_out / "town.json").read_text())
    assert [(c["start_s"], c["title"]) for c in sidecar["chapters"]] == expected

    mp3 = mp3_out / "town.mp3"
    assert _close(_mp3_chapters(mp3), expected)
    assert _close(_ffmpeg_chapters(mp3), expected)  # ffmpeg reads the ID3 chapters too
    # Each chapter after the first starts where the pause between two parts ends.
    pauses = _pause_ends(mp3)
    for start, _ in expected[1:]:
        assert any(abs(start - end) <= 0.05 for end in pauses), (start, pauses)

    m4a = m4a_out / "town.m4a"
    assert _close(_json_chapters(m4a_out), expected)
    assert _close(_ffmpeg_chapters(m4a), expected)
    assert _close([(c.start, c.title) for c in MP4(m4a).chapters], expected)  # the Nero chpl atom

    # --format wav keeps its WAV (no chapters there); the feed's MP3 copy carries them.
    assert _close(_json_chapters(wav_out), expected)
    assert _close(_mp3_chapters(wav_out / "town.mp3"), expected)
    sidecar = json.loads((wav_out / "town.json").read_text())
    assert sidecar["chapters_file"]["file"] == "town.chapters.json" and sidecar["feed_audio"]["file"] == "town.mp3"


@pytest.mark.slow
def test_a_rerun_skips_and_a_lost_chapters_file_is_made_again(tone_server: RunningServer,
                                                               narrated: dict[str, Path]) -> None:
    out = narrated["mp3"]
    folder = out.parent / "in"
    args = ("run", str(folder), "-o", str(out), "--mode", "narrate", "--format", "mp3")
    assert run_cli(*args, env=api_env(tone_server)).exit_code == 0
    assert json.loads((out / "report.json").read_text())["totals"]["skipped"] == 1
    (out / "town.chapters.json").unlink()
    assert run_cli(*args, env=api_env(tone_server)).exit_code == 0
    assert json.loads((out / "report.json").read_text())["totals"]["done"] == 1
    assert [title for _, title in _json_chapters(out)] == list(SECTIONS)


def test_chapters_written_by_publish_read_back_from_mp3_and_m4a(tmp_path: Path) -> None:
    wav = tone(["one two three four five six seven eight nine ten"] * 2).wav  # 8 s
    marks = ((0.0, "Opening"), (2.5, "Fares = four pounds; #1 \\ ok"), (5.0, "Close"))
    for fmt in ("mp3", "m4a"):
        audio = tmp_path / f"marked.{fmt}"
        audio.write_bytes(publish(wav, PublishOptions(format=fmt, tags={"title": "T"}, chapters=marks)).data)
        assert _close(_ffmpeg_chapters(audio), list(marks)), fmt
    assert _close(_mp3_chapters(tmp_path / "marked.mp3"), list(marks))
    assert _close([(c.start, c.title) for c in MP4(tmp_path / "marked.m4a").chapters], list(marks))
    # No marks for one part (nothing to skip to); a part with no words of its own gets a name.
    assert chapter_marks([(0.0, "Only")]) == ()
    assert chapter_marks([(0.0, "A"), (1.0, " \n ")]) == ((0.0, "A"), (1.0, "Part 2"))
