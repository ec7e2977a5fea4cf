"""podcast.xml as podcast directories and apps take it: read back by gPodder's podcastparser and by feedparser,
with its artwork measured by Pillow, its podcast:guid worked out here from the spec, and its audio decoded by ffmpeg.

Real offline runs (the local engine, --format mp3); the channel's own settings come from a job file.
"""

from __future__ import annotations

import io
import os
import shutil
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import feedparser
import podcastparser
import pytest
from loopback import LoopbackSite, Reply, Request
from oracles import RATE, decoded_samples
from PIL import Image
from runs import SAMPLE_INPUTS, child_env, run_cli

from pipeline.jobs import load_job
from pipeline.models import PodcastChannel
from pipeline.outputs import cover, podcast
from pipeline.settings import build_settings, merge
from pipeline.state import locked_state

BASE = "https://pods.example.org/nightly/"
PODCAST_NS = "{https://podcastindex.org/namespace/1.0}"
ITUNES_NS = "{http://www.itunes.com/dtds/podcast-1.0.dtd}"
# The Podcasting 2.0 namespace's UUID for podcast:guid (podcast-namespace, docs/tags/guid.md).
GUID_NAMESPACE = uuid.UUID("ead4c236-bf58-58c6-a2c6-a6b28d128cb6")


def _run(inputs: list[Path | str], out: Path, *extra: str) -> None:
    result = run_cli("run", *map(str, inputs), "-o", str(out), "--provider", "local", "--format", "mp3",
                     "--podcast-url", BASE, *extra, env=child_env())
    assert result.exit_code == 0, result.stderr + result.stdout


def _local(out: Path, url: str) -> Path:
    """The file in OUT a feed URL names (its query, a version, is not part of the name)."""
    assert url.startswith(BASE), url
    return out / urlsplit(url).path.removeprefix(urlsplit(BASE).path)


def _parsed(out: Path) -> tuple[dict, feedparser.FeedParserDict, ET.Element]:
    """The feed as gPodder, feedparser and a plain XML reader see it. (podcastparser 0.6.11 knows the podcast
    namespace only by its old GitHub URI, so podcast:locked and podcast:guid are read from the XML.)"""
    data = (out / "podcast.xml").read_bytes()
    by_gpodder = podcastparser.parse(BASE + "podcast.xml", io.BytesIO(data))
    by_feedparser = feedparser.parse(data)
    assert not by_feedparser.bozo, by_feedparser.bozo_exception
    return by_gpodder, by_feedparser, ET.fromstring(data)


def _check_artwork(path: Path) -> Image.Image:
    """The rules Apple Podcasts states for show art: square, 1400-3000 px, JPEG or PNG, RGB."""
    with Image.open(path) as image:
        image.load()
    assert image.format in ("PNG", "JPEG") and path.suffix == {"PNG": ".png", "JPEG": ".jpg"}[image.format]
    assert image.mode == "RGB"
    assert image.width == image.height and 1400 <= image.width <= 3000
    return image


def _check_every_rule(out: Path) -> tuple[dict, feedparser.FeedParserDict, ET.Element]:
    """What every feed audiosum writes must hold, whatever its settings."""
    gpodder, parsed, root = _parsed(out)
    assert gpodder["episodes"] and len(gpodder["episodes"]) == len(parsed.entries)
    _check_artwork(_local(out, gpodder["cover_url"]))
    assert parsed.feed.image.href == gpodder["cover_url"]
    assert [link.href for link in parsed.feed.links if link.rel == "self"] == [BASE + "podcast.xml"]
    expected_guid = str(uuid.uuid5(GUID_NAMESPACE, urlsplit(BASE).netloc + urlsplit(BASE).path + "podcast.xml"))
    assert root.findtext(f"channel/{PODCAST_NS}guid") == expected_guid
    assert gpodder["type"] in ("episodic", "serial") and gpodder["itunes_author"]
    guids = [episode["guid"] for episode in gpodder["episodes"]]
    assert len(set(guids)) == len(guids)
    for episode in gpodder["episodes"]:
        (enclosure,) = episode["enclosures"]
        audio = _local(out, enclosure["url"])
        assert enclosure["mime_type"] == "audio/mpeg" and audio.suffix == ".mp3"
        assert enclosure["file_size"] == audio.stat().st_size
        assert abs(episode["total_time"] - len(decoded_samples(audio.read_bytes())) / RATE) <= 1
        doc_id = audio.stem
        assert episode["title"] and episode["title"] != doc_id and "__" not in episode["title"]
        assert episode["description"] and not episode["description"].startswith(episode["title"])
    return gpodder, parsed, root


@pytest.fixture(scope="module")
def first_feed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run of one short note: the feed a new user gets first."""
    folder = tmp_path_factory.mktemp("first")
    shutil.copytree(SAMPLE_INPUTS / "notes", folder / "in")
    _run([folder / "in"], folder / "out")
    return folder / "out"


def test_a_first_feed_is_one_podcast_apps_take(first_feed: Path) -> None:
    gpodder, parsed, root = _check_every_rule(first_feed)
    # Defaults where the user gave nothing: a cover drawn from the title, episodic, locked, no owner without an email.
    assert gpodder["title"] == "audiosum: out" and gpodder["type"] == "episodic"
    assert root.findtext(f"channel/{PODCAST_NS}locked") == "yes" and gpodder["itunes_author"] == "audiosum"
    assert "itunes_owner" not in gpodder and root.find(f"channel/{ITUNES_NS}owner") is None
    assert "rights" not in parsed.feed  # no copyright is claimed for other people's texts
    (episode,) = gpodder["episodes"]
    assert episode["title"] == "Short reminder"  # short-reminder.txt has no heading: its name, as words
    assert episode["description"].startswith("Reminder: the office will close early")


def test_the_channel_says_what_the_job_file_sets(first_feed: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(first_feed, out)
    art = tmp_path / "art.png"
    Image.new("RGBA", (800, 600), (200, 40, 40, 128)).save(art)  # small, not square, with alpha: all three wrong
    job = tmp_path / "nightly.toml"
    job.write_text("\n".join([
        f'inputs = ["{SAMPLE_INPUTS / "notes"}"]', f'out = "{out}"', f'podcast_url = "{BASE}"',
        'podcast_title = "Harbour Nightly"', f'podcast_image = "{art}"', 'podcast_author = "Harbour Gazette"',
        'podcast_owner_name = "Ada Byron"', 'podcast_owner_email = "ada@pods.example.org"',
        'podcast_copyright = "© 2026 Harbour Gazette"', 'podcast_type = "serial"', 'podcast_locked = "no"',
        'podcast_language = "en-GB"']) + "\n")
    values = merge({}, lambda key: False, load_job(job).values)
    settings = build_settings(tuple(values["inputs"]), values, prices={}, environ={})
    assert settings.podcast == PodcastChannel(image=str(art), author="Harbour Gazette", owner_name="Ada Byron",
                                              owner_email="ada@pods.example.org", copyright="© 2026 Harbour Gazette",
                                              kind="serial", locked=False, language="en-GB")
    drawn = next(out.glob("podcast-cover.*"))
    with locked_state(out) as state:
        podcast.build(out, state, base_url=settings.podcast_url, title=settings.podcast_title,
                      channel=settings.podcast, language=settings.language)

    gpodder, parsed, root = _check_every_rule(out)
    assert gpodder["title"] == "Harbour Nightly" and gpodder["language"] == "en-GB"
    assert gpodder["itunes_owner"] == {"name": "Ada Byron", "email": "ada@pods.example.org"}
    assert gpodder["itunes_author"] == "Harbour Gazette" and parsed.feed.rights == "© 2026 Harbour Gazette"
    assert gpodder["type"] == "serial"
    locked = root.find(f"channel/{PODCAST_NS}locked")
    assert locked is not None and (locked.text, locked.get("owner")) == ("no", "ada@pods.example.org")
    # The user's image, made to fit: the same picture (its colour, flattened on white) at the smallest allowed size.
    cover = _check_artwork(_local(out, gpodder["cover_url"]))
    assert cover.width == 1400 and cover.getpixel((700, 700)) == pytest.approx((227, 147, 147), abs=2)
    assert not drawn.exists() or drawn == _local(out, gpodder["cover_url"])  # one cover in OUT, never two

    warnings = podcast.channel_warnings(settings.podcast, podcast_url=BASE, title="Harbour Nightly")
    assert [w["kind"] for w in warnings] == ["podcast_image"]
    assert all(word in warnings[0]["message"] for word in ("800x600", "not square", "RGBA", "made to fit"))


def test_a_published_feed_without_an_owner_email_is_warned_about() -> None:
    def kinds(channel: PodcastChannel, url: str) -> list[str]:
        return [w["kind"] for w in podcast.channel_warnings(channel, podcast_url=url, title="T")]

    assert kinds(PodcastChannel(), BASE) == ["podcast_owner_email"]
    assert kinds(PodcastChannel(owner_email="ada@pods.example.org"), BASE) == []
    # At the loopback default the feed reaches no directory (podcast_url_local says so): no owner warning.
    assert kinds(PodcastChannel(), "http://127.0.0.1:8000/feed/") == []


def test_a_user_image_that_keeps_the_rules_is_published_byte_for_byte(first_feed: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(first_feed, out)
    art = tmp_path / "art.jpg"
    Image.new("RGB", (1600, 1600), (20, 90, 160)).save(art, "JPEG", quality=80)
    with locked_state(out) as state:
        podcast.build(out, state, base_url=BASE, channel=PodcastChannel(image=str(art)))
    gpodder, _, _ = _check_every_rule(out)
    published = _local(out, gpodder["cover_url"])
    assert published.name == "podcast-cover.jpg" and published.read_bytes() == art.read_bytes()
    assert not (out / "podcast-cover.png").exists()  # the drawn cover audiosum made before is gone
    assert podcast.channel_warnings(PodcastChannel(image=str(art), owner_email="a@b.example"), podcast_url=BASE,
                                    title="T") == []


@pytest.mark.parametrize("content", [b"", b"not an image at all", None], ids=["empty", "text", "missing"])
def test_an_unusable_image_gives_a_drawn_cover_and_a_warning(first_feed: Path, tmp_path: Path,
                                                            content: bytes | None) -> None:
    out = tmp_path / "out"
    shutil.copytree(first_feed, out)
    art = tmp_path / "art.png"
    if content is not None:
        art.write_bytes(content)
    with locked_state(out) as state:
        podcast.build(out, state, base_url=BASE, channel=PodcastChannel(image=str(art)))
    _check_every_rule(out)
    (warning,) = podcast.channel_warnings(PodcastChannel(image=str(art), owner_email="a@b.example"),
                                          podcast_url=BASE, title="T")
    assert warning["kind"] == "podcast_image" and "drawn from the title is used instead" in warning["message"]


def _relative_luminance(rgb: tuple[int, ...]) -> float:
    def linear(channel: int) -> float:
        c = channel / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _line_heights(image: Image.Image, background: tuple[int, ...], bottom: int) -> list[int]:
    """The heights of the runs of rows (above `bottom`) holding pixels far from the background: one per text line."""
    pixels = image.load()
    assert pixels is not None
    step = max(1, image.width // 300)

    def inked(y: int) -> bool:
        return any(sum(abs(a - b) for a, b in zip(pixels[x, y], background)) > 240  # type: ignore[arg-type]
                   for x in range(0, image.width, step))

    runs: list[list[int]] = []
    for y in range(bottom):
        if inked(y):
            if runs and runs[-1][1] == y - 1:
                runs[-1][1] = y
            else:
                runs.append([y, y])
    return [last - first + 1 for first, last in runs]


@pytest.fixture(params=["installed", "bundled"])
def face(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The bold face this machine has (if any), and Pillow's bundled one, which every machine has."""
    if request.param == "bundled":
        monkeypatch.setattr(cover, "installed_fonts", lambda: ())
    return str(request.param)


@pytest.mark.parametrize("title", ["audiosum: out", "Nightly <news>", "A", "Platform Sync — 18 November 2026",
                                   "The Extraordinarily Long Title of My Nightly Reading List From Many Feeds",
                                   "Supercalifragilisticexpialidocious-podcast"])
def test_a_drawn_cover_stays_legible_as_a_60_px_thumbnail(title: str, face: str) -> None:
    """Podcast apps' lists show art at about 60 px: there every line of the title is still several pixels tall and
    stands out from its background at a WCAG contrast of at least 7:1."""
    image = Image.open(io.BytesIO(cover.drawn_cover(title)))
    assert (image.format, image.mode, image.size) == ("PNG", "RGB", (1400, 1400))
    background = image.getpixel((2, 2))
    assert isinstance(background, tuple)
    # Lines, measured where they are apart (full size): each at least 4.7 px tall once shrunk to 60 px.
    full_size = _line_heights(image, background, 1340)  # above the bottom band
    assert full_size and min(full_size) * 60 / 1400 >= 4.7, full_size
    thumb = image.resize((60, 60), Image.Resampling.LANCZOS)
    thumb_background = thumb.getpixel((1, 1))
    assert isinstance(thumb_background, tuple)
    assert min(_line_heights(thumb, thumb_background, 56)) >= 5  # and still there, not smeared away, at 60 px
    pixels = thumb.load()
    assert pixels is not None
    inked = [(x, y) for x in range(60) for y in range(56)
             if sum(abs(a - b) for a, b in zip(pixels[x, y], thumb_background)) > 240]  # type: ignore[arg-type]
    width = max(x for x, _ in inked) - min(x for x, _ in inked)
    assert width >= (6 if len(title) == 1 else 30)  # the title spans the tile, not a corner of it
    brightest = max((pixels[x, y] for x, y in inked), key=_relative_luminance)  # type: ignore[arg-type]
    lighter, darker = sorted((_relative_luminance(brightest), _relative_luminance(thumb_background)), reverse=True)
    assert (lighter + 0.05) / (darker + 0.05) >= 7


def test_a_face_without_a_character_shows_it_plainly_never_as_a_box(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cover, "installed_fonts", lambda: ())  # Pillow's bundled face: ASCII letters only
    assert cover.cover_text("Café — Ñandú  Straße 日本") == "Cafe - Nandu Strasse"
    assert cover.cover_text("日本語ニュース") == "audiosum"


def test_an_episode_is_named_by_its_document_not_its_id() -> None:
    @dataclass
    class Record:
        doc_id: str
        title: str | None
        finished_at: float = 0.0
        sidecar_name: str | None = None

    def title(record: Record, sidecar: dict) -> str:
        return podcast.episode_title(record, sidecar)

    # A recording's title is its file's stem: the name, as words, rather than that.
    assert title(Record("voice-notes__website-launch", "website-launch"), {"title": "website-launch"}) == \
        "Website launch"
    assert title(Record("notes__short-reminder", None), {"title": None}) == "Short reminder"
    # A feed entry's title (the sidecar's meta), a heading or a manifest's title wins over any name.
    assert title(Record("gazette__tides-1a2b3c4d", None), {"meta": {"title": "Tide tables change"}}) == \
        "Tide tables change"
    assert title(Record("call-17", "Call with the landlord"), {"title": "Call with the landlord"}) == \
        "Call with the landlord"
    assert title(Record("essays__why", None), {"title": "  Why  Libraries\nMatter "}) == "Why Libraries Matter"


def test_podcast_guid_matches_the_spec_examples() -> None:
    # docs/tags/guid.md's examples, and the rule: no scheme, no trailing slashes.
    assert podcast.podcast_guid("https://mp3s.nashownotes.com/pc20rss.xml") == "917393e3-1b1e-5cef-ace4-edaa54e1f810"
    assert podcast.podcast_guid("podnews.net/rss////") == "9b024349-ccf0-5f69-a609-6b82873eab3c"
    assert podcast.podcast_guid("http://podnews.net/rss/") == "9b024349-ccf0-5f69-a609-6b82873eab3c"


@pytest.mark.parametrize("transcript, title, expected", [
    ("Why Libraries Still Matter. Every few years, someone says so.", "Why Libraries Still Matter",
     "Every few years, someone says so."),
    ("Platform Sync — 18 November 2026: review of action items.", "Platform Sync — 18 November 2026",
     "review of action items."),
    ("why libraries still matter: a look back.", "Why Libraries Still Matter", "a look back."),
    # The title as the start of a sentence, not a heading: kept whole.
    ("Why Libraries Still Matter is a question people ask.", "Why Libraries Still Matter",
     "Why Libraries Still Matter is a question people ask."),
    ("Only the title.", "Only the title", "Only the title."),
])
def test_the_description_does_not_repeat_the_title(transcript: str, title: str, expected: str) -> None:
    assert podcast.episode_description(transcript, title) == expected


def _news_site(article_text: str) -> LoopbackSite:
    """A feed with one entry whose article lives on the same loopback site."""
    def answer(request: Request) -> Reply:
        base = f"http://{request.headers['Host']}"
        if request.path == "/feed.xml":
            return Reply(body=f"""<?xml version="1.0"?><rss version="2.0"><channel><title>Harbour Gazette</title>
<link>{base}/</link><description>Local news</description>
<item><title>Tide tables change for the winter</title><link>{base}/articles/tides.html</link>
<guid>tides-2026</guid><pubDate>Mon, 02 Nov 2026 07:00:00 GMT</pubDate>
<description>The harbour office publishes new tide tables.</description></item>
</channel></rss>""".encode(), content_type="application/rss+xml")
        if request.path == "/articles/tides.html":
            return Reply(body=f"<html><head><title>Tides</title></head><body><article><h1>Tide tables change for the "
                              f"winter</h1><p>{article_text}</p></article></body></html>".encode(),
                         content_type="text/html; charset=utf-8")
        return Reply(status=404, body=b"no", content_type="text/plain")

    return LoopbackSite(answer)


ARTICLE = ("From Monday the harbour office publishes winter tide tables. High water moves about forty minutes later "
           "at the outer pier, and the ferry timetable follows it. Printed copies are at the library. " * 3)


@pytest.mark.slow  # three real runs: the first narrates three documents (about ten seconds)
def test_episodes_keep_their_guids_and_a_remade_one_gets_a_new_enclosure_url(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    shutil.copytree(SAMPLE_INPUTS / "notes", folder)
    shutil.copy(SAMPLE_INPUTS / "essays" / "why-libraries-matter.txt", folder)
    out = tmp_path / "out"
    with _news_site(ARTICLE) as site:
        feed = site.url("/feed.xml")
        _run([folder, feed], out, "--allow-private-links")
        first, _, _ = _check_every_rule(out)
        by_title = {episode["title"]: episode for episode in first["episodes"]}
        assert set(by_title) == {"Short reminder", "Why Libraries Still Matter", "Tide tables change for the winter"}
        tides = by_title["Tide tables change for the winter"]
        assert tides["link"] == site.url("/articles/tides.html")
        assert by_title["Why Libraries Still Matter"]["link"] == ""  # a file has no web page: no <link>
        assert not by_title["Why Libraries Still Matter"]["description"].startswith("Why Libraries")
        cover = _local(out, first["cover_url"])
        cover_stamp = cover.stat().st_mtime_ns

        _run([folder, feed], out, "--allow-private-links")  # nothing changed: every episode as it was
        again, _, _ = _check_every_rule(out)
        assert [(e["guid"], e["enclosures"]) for e in again["episodes"]] == \
            [(e["guid"], e["enclosures"]) for e in first["episodes"]]
        assert cover.stat().st_mtime_ns == cover_stamp  # unchanged art is not rewritten

        note = folder / "short-reminder.txt"
        note.write_text(note.read_text() + "\nThe car park closes at 2:30 p.m. that day.\n")
        _run([folder, feed], out, "--allow-private-links")
        remade, _, _ = _check_every_rule(out)
    before = {e["guid"]: e["enclosures"][0]["url"] for e in first["episodes"]}
    after = {e["guid"]: e["enclosures"][0]["url"] for e in remade["episodes"]}
    assert set(after) == set(before)  # the same episodes, by the same guids
    changed = {guid for guid in after if after[guid] != before[guid]}
    (reminder_guid,) = [e["guid"] for e in remade["episodes"] if e["title"] == "Short reminder"]
    assert changed == {reminder_guid}  # only the remade one has a new URL, so apps fetch only its new audio
    assert urlsplit(after[reminder_guid]).path == urlsplit(before[reminder_guid]).path  # the same file, remade
    assert os.path.exists(_local(out, after[reminder_guid]))
