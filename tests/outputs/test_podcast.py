"""OUT/podcast.xml: a feed a podcast app can subscribe to, rebuilt at the end of every run."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlsplit

import feedparser
import httpx
from oracles import RATE, decoded_samples
from peers import RunningServer, api_env, running_server
from runs import SAMPLE_INPUTS, run_cli

from pipeline.outputs.podcast import CUE_NOTES, Cue, estimated_cues, render_vtt

ITUNES = "{http://www.itunes.com/dtds/podcast-1.0.dtd}"
PODCAST = "{https://podcastindex.org/namespace/1.0}"


def test_feed_lists_every_episode_with_true_lengths_and_stable_guids(tone_server: RunningServer,
                                                                      tmp_path: Path) -> None:
    folder = tmp_path / "in"
    shutil.copytree(SAMPLE_INPUTS / "news", folder)
    out = tmp_path / "out"
    base = "https://pods.example.org/nightly/"
    args = ("run", str(folder), "-o", str(out), "--podcast-url", base, "--podcast-title", "Nightly <news>")
    assert run_cli(*args, env=api_env(tone_server)).exit_code == 0

    parsed = feedparser.parse((out / "podcast.xml").read_bytes())
    assert not parsed.bozo, parsed.bozo_exception
    assert parsed.feed.title == "Nightly <news>"
    assert len(parsed.entries) == 2
    for entry in parsed.entries:
        enclosure = entry.enclosures[0]
        assert enclosure.href.startswith(base)
        local = out / urlsplit(enclosure.href).path.removeprefix(urlsplit(base).path)
        assert int(enclosure.length) == local.stat().st_size
        # The default --format wav keeps its WAV; the feed links the MP3 copy every app plays.
        assert enclosure.type == "audio/mpeg" and local.suffix == ".mp3" and local.with_suffix(".wav").exists()
        seconds = len(decoded_samples(local.read_bytes())) / RATE
        h, m, s = (int(x) for x in entry.itunes_duration.split(":"))
        assert abs(h * 3600 + m * 60 + s - seconds) <= 1
        assert entry.published_parsed is not None
    guids = sorted(e.id for e in parsed.entries)

    root = ET.parse(out / "podcast.xml").getroot()
    for item in root.iter("item"):
        kinds = {t.get("type"): t.get("url") for t in item.findall(f"{PODCAST}transcript")}
        vtt = out / kinds["text/vtt"].removeprefix(base)
        txt = out / kinds["text/plain"].removeprefix(base)
        assert vtt.read_text().startswith("WEBVTT") and "estimated" in vtt.read_text()
        # The description is the transcript without a title it opens with (the app shows the title above it).
        assert txt.read_text().strip().endswith(item.findtext("description"))

    assert run_cli(*args, env=api_env(tone_server)).exit_code == 0  # all skipped: the feed is rebuilt the same
    again = feedparser.parse((out / "podcast.xml").read_bytes())
    assert sorted(e.id for e in again.entries) == guids

    (folder / "late-news.txt").write_text("Late news. The night bus timetable changes from Monday onwards.")
    assert run_cli(*args, "--keep", "2", env=api_env(tone_server)).exit_code == 0
    newest = feedparser.parse((out / "podcast.xml").read_bytes())
    assert len(newest.entries) == 2 and newest.entries[0].id == "audiosum:late-news"


def test_vtt_cues() -> None:
    cues = estimated_cues("One two three. Four five six seven eight nine.", 10.0)
    assert [c.text for c in cues] == ["One two three.", "Four five six seven eight nine."]
    assert cues[0].start_s == 0 and abs(cues[-1].end_s - 10.0) < 1e-9
    text = render_vtt([Cue(0, 1.5, "Hello --> there"), Cue(1.5, 3725.25, "Bye.")], CUE_NOTES["synthesis"])
    assert "00:00:01.500 --> 01:02:05.250" in text and "Hello → there" in text and "synthesis, the real start" in text


def test_serve_feed_publishes_only_the_public_files(tone_server: RunningServer, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run_cli("run", str(SAMPLE_INPUTS / "notes"), "-o", str(out), env=api_env(tone_server)).exit_code == 0
    with running_server("--engine", "tone", "--feed", str(out), key=None) as server:
        feed_root = server.base_url.removesuffix("/v1") + "/feed/"
        feed = httpx.get(feed_root + "podcast.xml")
        assert feed.status_code == 200 and feed.headers["content-type"].startswith("application/rss+xml")
        part = httpx.get(feed_root + "short-reminder.mp3", headers={"Range": "bytes=0-9"})
        assert part.status_code == 206 and part.content[:3] == b"ID3" and len(part.content) == 10
        # The WAV is kept in OUT for the archive, but the feed does not link it, so it is not served.
        assert httpx.get(feed_root + "short-reminder.wav").status_code == 404
        for hidden in (".audiosum/state.sqlite", ".audiosum", "..%2Fsecret", "lock"):
            assert httpx.get(feed_root + hidden).status_code == 404


def test_the_loopback_podcast_url_is_said_once_and_only_where_a_podcast_is_made(tone_server: RunningServer,
                                                                                 tmp_path: Path) -> None:
    """Issue 27, item 5: a folder conversion is not told about the podcast; a run that makes one (a feed among its
    inputs, or a podcast option) is told once per output folder; giving --podcast-url, even the default, says the
    user knows."""
    notes = SAMPLE_INPUTS / "notes"
    warned = "audiosum: warning: podcast.xml links its episodes under http://127.0.0.1"
    plain = run_cli("run", str(notes), "-o", str(tmp_path / "a"), env=api_env(tone_server))
    assert plain.exit_code == 0 and "warning" not in plain.stderr, plain.stderr
    podcast = ("--podcast-title", "Notes")
    first = run_cli("run", str(notes), "-o", str(tmp_path / "b"), *podcast, "--log-format", "json",
                    env=api_env(tone_server))
    warnings = [e for e in map(json.loads, first.stderr.splitlines()) if e["event"] == "warning"]
    assert warnings and warnings[0]["kind"] == "podcast_url_local", warnings
    again = run_cli("run", str(notes), "-o", str(tmp_path / "b"), *podcast, "--force", env=api_env(tone_server))
    assert again.exit_code == 0 and warned not in again.stderr, again.stderr  # once for this folder
    acknowledged = run_cli("run", str(notes), "-o", str(tmp_path / "c"), *podcast, "--podcast-url",
                           "http://127.0.0.1:8000/feed/", env=api_env(tone_server))
    assert acknowledged.exit_code == 0 and warned not in acknowledged.stderr, acknowledged.stderr
    # A published feed also names its owner's email (without one, podcast_owner_email warns).
    given = run_cli("run", str(notes), "-o", str(tmp_path / "d"), "--podcast-url", "https://pods.example.org/feed/",
                    "--podcast-owner-email", "owner@pods.example.org", env=api_env(tone_server))
    assert given.exit_code == 0 and "warning" not in given.stderr