"""OUT/podcast.xml: an RSS 2.0 podcast feed (iTunes and Podcasting 2.0 namespaces) of the narrated documents,
with each episode's transcript as .txt and WebVTT beside it, its chapters file when it has one, and the channel's
artwork (cover.py).

Reads state and sidecars; writes only through outputs.atomic_write. It never changes audio.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from pipeline import __version__
from pipeline.audio.publish import PODCAST_FORMATS
from pipeline.engine.align import estimated_transcript_cues
from pipeline.errors import OutputClash
from pipeline.models import DEFAULT_PODCAST_BASE_URL, PodcastChannel
from pipeline.outputs import OutputOwners, atomic_write, claim, confined_path, remove_outputs, transcript_file
from pipeline.outputs.cover import COVER_STEM, MAX_PX, MIN_PX, Artwork, artwork
from pipeline.redact import visible


class Episode(Protocol):
    """A document as the feed needs it (pipeline.state.DocumentRecord is one)."""

    @property
    def doc_id(self) -> str: ...

    @property
    def finished_at(self) -> float: ...

    @property
    def sidecar_name(self) -> str | None: ...

    @property
    def title(self) -> str | None: ...


class EpisodeRecords(OutputOwners, Protocol):
    """What the feed reads of state, and the files in OUT/ it claims (pipeline.state.RunState implements it)."""

    def owns(self, name: str) -> bool: ...

    def episodes(self, limit: int) -> Sequence[Episode]: ...

    def document(self, doc_id: str) -> Episode | None: ...

    def unverified_outputs(self) -> Mapping[str, list[str]]: ...

    def forget_unverified(self) -> None: ...


FEED_NAME = "podcast.xml"
ITUNES = "http://www.itunes.com/dtds/podcast-1.0.dtd"
PODCAST = "https://podcastindex.org/namespace/1.0"
ATOM = "http://www.w3.org/2005/Atom"
# Podcasting 2.0's namespace for podcast:guid (the spec's uuidv5 of the feed URL without scheme).
PODCAST_GUID_NAMESPACE = uuid.UUID("ead4c236-bf58-58c6-a2c6-a6b28d128cb6")
MAX_DESCRIPTION = 4000  # characters: Apple Podcasts' limit; the whole transcript is linked as podcast:transcript
CHAPTERS_TYPE = "application/json+chapters"  # Podcasting 2.0's podcast:chapters type
MIME_BY_SUFFIX = {".wav": "audio/wav", ".mp3": "audio/mpeg", ".opus": "audio/ogg", ".ogg": "audio/ogg",
                  ".flac": "audio/flac", ".m4a": "audio/mp4"}

ET.register_namespace("itunes", ITUNES)
ET.register_namespace("podcast", PODCAST)
ET.register_namespace("atom", ATOM)


@dataclass(frozen=True, slots=True)
class Cue:
    start_s: float
    end_s: float
    text: str


def estimated_cues(transcript: str, duration_s: float) -> list[Cue]:
    """Sentence cues timed in proportion to their length (for answers that came with no timing)."""
    return [Cue(a, b, t) for a, b, t in estimated_transcript_cues(transcript, duration_s)]


# The VTT's NOTE for each way the cues were timed (the sidecar's cues_method).
CUE_NOTES = {
    "synthesis": "NOTE cue times: synthesis, the real start of each synthesised sentence",
    "aligned": "NOTE cue times: aligned, the transcript matched to the words the offline recogniser heard in this "
               "audio",
    "estimated": "NOTE cue times: estimated from sentence length",
}


def cues_from_sidecar(sidecar: dict[str, Any]) -> tuple[list[Cue], str]:
    """(cues, NOTE line): the sidecar's word cues (--captions word) or sentence cues with how they were timed; an
    estimate for a sidecar with none (an older one, or an answer the recogniser could not hear)."""
    method = str(sidecar.get("cues_method") or "")
    for key in ("word_cues", "cues"):
        raw = sidecar.get(key)
        if isinstance(raw, list) and raw:
            try:
                cues = [Cue(float(a), float(b), str(t)) for a, b, t in raw]
            except (TypeError, ValueError):
                continue
            # Sidecars written before cues_method existed have cues only from synthesis.
            return cues, _note(method or "synthesis", sidecar.get("cues_reason"))
    transcript_cues = estimated_cues(str(sidecar.get("transcript") or ""), float(sidecar.get("duration_s") or 0))
    return transcript_cues, _note("estimated", sidecar.get("cues_reason") or "the API returns no timing")


def _note(method: str, reason: object) -> str:
    note = CUE_NOTES.get(method, CUE_NOTES["estimated"])
    return f"{note} ({' '.join(str(reason).split())[:200]})" if method == "estimated" and reason else note


_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_safe(text: str) -> str:
    """XML 1.0 cannot carry most control characters; one in a title would break the whole feed."""
    return _NOT_XML.sub("", text)


def _timestamp(seconds: float) -> str:
    millis = int(round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


def render_vtt(cues: list[Cue], note: str) -> str:
    """WebVTT of these cues; control characters in their text are shown as \\xNN, as in the .txt."""
    blocks = ["WEBVTT", visible(note, one_line=True).replace("-->", "→")]
    for index, cue in enumerate(cues, start=1):
        text = visible(cue.text).replace("-->", "→")
        blocks.append(f"{index}\n{_timestamp(cue.start_s)} --> {_timestamp(cue.end_s)}\n{text}")
    return "\n\n".join(blocks) + "\n"


def _duration(seconds: float) -> str:
    total = int(round(seconds))
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


def _rfc822(value: str | float | None, fallback: float) -> str:
    return format_datetime(published_at(value, fallback))


def published_at(value: str | float | None, fallback: float) -> datetime:
    """When an episode was published: its source's date (a feed entry's `published`), else when it was made."""
    when: datetime | None = None
    if isinstance(value, str) and value:
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            when = None
    if when is None:
        when = datetime.fromtimestamp(fallback, UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when


def _ours_or_adoptable(out_dir: Path, state: EpisodeRecords, doc_id: str, txt_name: str, vtt_name: str,
                       transcript: bytes) -> bool:
    """True when both names are audiosum's or free, or hold the pair an earlier audiosum wrote before it recorded
    its files (the .txt is exactly this transcript, the .vtt a WebVTT file): those are claimed now. False when a
    user's file holds either name."""
    names = {txt_name, vtt_name}
    owned = state.owned_among(names)
    if owned == names:
        return True
    found: dict[str, bytes | None] = {}
    for name in names - owned:
        path = confined_path(out_dir, name)
        try:
            found[name] = None if path.is_symlink() else path.read_bytes()
        except FileNotFoundError:
            continue
        except OSError:
            return False
    if txt_name in found and found[txt_name] != transcript:
        return False
    if vtt_name in found and not (found[vtt_name] or b"").startswith(b"WEBVTT"):
        return False
    if vtt_name in found and txt_name not in found and txt_name not in owned:
        return False  # a lone .vtt of that name says nothing about who made it
    state.claim_outputs(doc_id, names - owned)
    return True


def adopt_earlier_transcripts(out_dir: Path, state: EpisodeRecords) -> None:
    """Once, in a folder made before audiosum recorded its files: claim the <id>.txt/<id>.vtt pairs it wrote then
    (the .txt holds the sidecar's transcript), so remaking a document may replace them; a user's file is left."""
    candidates = state.unverified_outputs()
    for doc_id in candidates:
        record = state.document(doc_id)
        if record is None or not record.sidecar_name:
            continue
        try:
            sidecar = json.loads((out_dir / record.sidecar_name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        transcript = transcript_file(str(sidecar.get("transcript", "")))
        if (out_dir / f"{doc_id}.txt").exists():
            _ours_or_adoptable(out_dir, state, doc_id, f"{doc_id}.txt", f"{doc_id}.vtt", transcript)
    if candidates:
        state.forget_unverified()


def podcast_guid(feed_url: str) -> str:
    """Podcasting 2.0's podcast:guid: a UUIDv5 of the feed's URL without its scheme and trailing slashes, so any
    directory that knows the URL can work it out."""
    bare = re.sub(r"^[A-Za-z][A-Za-z0-9+.-]*://", "", feed_url.strip()).rstrip("/")
    return str(uuid.uuid5(PODCAST_GUID_NAMESPACE, bare))


def _one_line(value: object) -> str:
    return " ".join(str(value or "").split())


def episode_title(record: Episode, sidecar: Mapping[str, Any]) -> str:
    """The document's own title (the feed entry's, a heading, a PDF's or a manifest's), else its file name made
    readable; never a bare doc-id when a better name exists."""
    meta = sidecar.get("meta") or {}
    bare = {record.doc_id, record.doc_id.rsplit("__", 1)[-1]}
    for candidate in (sidecar.get("title"), meta.get("title"), record.title):
        title = _one_line(candidate)
        if title and title not in bare:
            return title
    # A recording or a file with no heading: its name, as words ("website-launch" reads "Website launch").
    words = " ".join(re.sub(r"[-_.]+", " ", record.doc_id.rsplit("__", 1)[-1]).split()) or record.doc_id
    return words[:1].upper() + words[1:]


_AFTER_TITLE = re.compile(r"\s*(?:[.:!?\u2014\u2013]|\s-\s|\n)\s*")


def episode_description(transcript: str, title: str) -> str:
    """The spoken summary without the title it often opens with (the app shows the title just above it), at most
    MAX_DESCRIPTION characters."""
    text = transcript.strip()
    flat, flat_title = _one_line(text), _one_line(title)
    if flat_title and flat.casefold().startswith(flat_title.casefold()):
        rest = flat[len(flat_title):]
        separator = _AFTER_TITLE.match(rest)
        # Only when the title stands alone: "Why Libraries Still Matter. Every few..." but not "... Matter is ...".
        if separator and rest[separator.end():]:
            text = rest[separator.end():]
    if len(text) > MAX_DESCRIPTION:
        text = text[:MAX_DESCRIPTION - 1].rsplit(" ", 1)[0] + "…"
    return text


def _web_link(value: object) -> str | None:
    link = str(value or "").strip()
    return link if re.match(r"https?://[^\s]+$", link, re.I) else None


@dataclass(frozen=True, slots=True)
class Enclosure:
    """The audio file an episode links: one every podcast app plays (MP3 or AAC in .m4a)."""

    name: str
    mime_type: str
    length: int        # the file's size in bytes, as it is now
    duration_s: float  # what it decodes to, measured when it was made
    sha256: str        # its hash as recorded (the URL's version), or "" when unknown


def playable_enclosure(out_dir: Path, sidecar: Mapping[str, Any]) -> Enclosure | None:
    """The sidecar's feed_audio (the mp3 copy of a wav, opus or flac file) or else its own audio file, if that is
    MP3 or M4A; None when it has neither (say, a wav episode made before feed copies existed: plan.decide finds its
    outputs incomplete and the next run remakes it). OSError when the file is gone."""
    feed = sidecar.get("feed_audio")
    if isinstance(feed, Mapping) and feed.get("file"):
        name, duration, digest = str(feed["file"]), feed.get("duration_s"), feed.get("sha256")
    else:
        name, duration, digest = str(sidecar["audio_file"]), sidecar.get("duration_s"), sidecar.get("audio_sha256")
    suffix = Path(name).suffix.lower()
    if suffix.lstrip(".") not in PODCAST_FORMATS:
        return None
    length = confined_path(out_dir, name).stat().st_size
    return Enclosure(name, MIME_BY_SUFFIX[suffix], length, float(duration or 0), str(digest or ""))


def chapters_link(out_dir: Path, sidecar: Mapping[str, Any]) -> str | None:
    """The sidecar's <id>.chapters.json as the feed links it (with its hash as the version, like the audio), or
    None when the episode has no chapters or the file is gone."""
    marks = sidecar.get("chapters_file")
    if not isinstance(marks, Mapping) or not marks.get("file"):
        return None
    name = str(marks["file"])
    try:
        if not confined_path(out_dir, name).is_file():
            return None
    except ValueError:
        return None
    digest = str(marks.get("sha256") or "")
    return quote(name) + (f"?v={digest[:16]}" if re.fullmatch(r"[0-9a-f]{16,64}", digest) else "")


def _add_episode(channel: ET.Element, record: Episode, sidecar: dict[str, Any], base: str,
                 enclosure: Enclosure, chapters: str | None = None) -> None:
    """The feed's <item> for one episode: its enclosure, and its <id>.txt and <id>.vtt transcripts."""
    meta = sidecar.get("meta") or {}
    txt_name, vtt_name = f"{record.doc_id}.txt", f"{record.doc_id}.vtt"
    title = episode_title(record, sidecar)
    item = ET.SubElement(channel, "item")
    ET.SubElement(item, "title").text = title
    ET.SubElement(item, "description").text = episode_description(str(sidecar.get("transcript") or ""), title)
    link = _web_link(meta.get("link"))
    if link:
        ET.SubElement(item, "link").text = link
    if meta.get("author"):
        ET.SubElement(item, f"{{{ITUNES}}}author").text = str(meta["author"])
    # The GUID names the document, not the run: the same episode keeps it when it is remade.
    ET.SubElement(item, "guid", {"isPermaLink": "false"}).text = f"audiosum:{record.doc_id}"
    ET.SubElement(item, "pubDate").text = _rfc822(meta.get("published"), record.finished_at)
    # A remade episode keeps its file name and guid; the audio's hash in the URL is what tells apps to fetch it anew.
    digest = enclosure.sha256
    version = f"?v={digest[:16]}" if re.fullmatch(r"[0-9a-f]{16,64}", digest) else ""
    ET.SubElement(item, "enclosure", {
        "url": base + quote(enclosure.name) + version, "length": str(enclosure.length),
        "type": enclosure.mime_type})
    ET.SubElement(item, f"{{{ITUNES}}}duration").text = _duration(enclosure.duration_s)
    ET.SubElement(item, f"{{{ITUNES}}}episodeType").text = "full"
    ET.SubElement(item, f"{{{PODCAST}}}transcript", {"url": base + quote(vtt_name), "type": "text/vtt"})
    ET.SubElement(item, f"{{{PODCAST}}}transcript", {"url": base + quote(txt_name), "type": "text/plain"})
    if chapters:
        ET.SubElement(item, f"{{{PODCAST}}}chapters", {"url": base + chapters, "type": CHAPTERS_TYPE})


def channel_title(out_dir: Path, title: str | None) -> str:
    """The podcast's title: --podcast-title, else one naming OUT (the runner's album tag says the same)."""
    return title or f"audiosum: {out_dir.resolve().name}"


def _add_channel(channel: ET.Element, *, title: str, base: str, settings: PodcastChannel, language: str,
                 cover: str | None) -> None:
    """The channel's elements a directory reads: who made it and how to reach them, its art, its identity."""
    feed_url = base + FEED_NAME
    author = settings.author or settings.owner_name or "audiosum"
    ET.SubElement(channel, "title").text = title
    ET.SubElement(channel, "link").text = base
    ET.SubElement(channel, "description").text = f"Spoken summaries narrated by audiosum ({title})."
    ET.SubElement(channel, "language").text = settings.language or language
    if settings.copyright:
        ET.SubElement(channel, "copyright").text = settings.copyright
    ET.SubElement(channel, "generator").text = f"audiosum {__version__}"
    ET.SubElement(channel, "lastBuildDate").text = format_datetime(datetime.now(UTC))
    ET.SubElement(channel, f"{{{ATOM}}}link", {"href": feed_url, "rel": "self", "type": "application/rss+xml"})
    if cover:
        image = ET.SubElement(channel, "image")
        ET.SubElement(image, "url").text = base + cover
        ET.SubElement(image, "title").text = title
        ET.SubElement(image, "link").text = base
        ET.SubElement(channel, f"{{{ITUNES}}}image", {"href": base + cover})
    ET.SubElement(channel, f"{{{ITUNES}}}author").text = author
    if settings.owner_email:  # an owner without an address verifies nothing (channel_warnings says so)
        owner = ET.SubElement(channel, f"{{{ITUNES}}}owner")
        ET.SubElement(owner, f"{{{ITUNES}}}name").text = settings.owner_name or author
        ET.SubElement(owner, f"{{{ITUNES}}}email").text = settings.owner_email
    ET.SubElement(channel, f"{{{ITUNES}}}explicit").text = "false"
    ET.SubElement(channel, f"{{{ITUNES}}}type").text = settings.kind
    ET.SubElement(channel, f"{{{ITUNES}}}category", {"text": "News"})
    ET.SubElement(channel, f"{{{PODCAST}}}guid").text = podcast_guid(feed_url)
    locked = {"owner": settings.owner_email} if settings.owner_email else {}
    ET.SubElement(channel, f"{{{PODCAST}}}locked", locked).text = "yes" if settings.locked else "no"


def _publish_cover(out_dir: Path, state: EpisodeRecords, art: Artwork) -> str | None:
    """OUT/<art.name>, written when its bytes changed, and the cover of the other format removed if audiosum made
    it; the name with a hash of the bytes as its query (apps cache artwork by URL, so new art needs a new URL), or
    None when a file of that name is not audiosum's (the feed then has no image rather than someone else's)."""
    data = art.data()
    path = confined_path(out_dir, art.name)
    try:
        current = path.read_bytes() if state.owns(art.name) and not path.is_symlink() else None
    except OSError:
        current = None
    if current != data:  # unchanged art keeps its file (and its mtime and ETag) as it was
        try:
            claim(out_dir, state, None, {art.name})
        except OutputClash:
            return None
        atomic_write(path, data, ours=state.owns)
    others = {f"{COVER_STEM}.png", f"{COVER_STEM}.jpg"} - {art.name}
    remove_outputs(out_dir, others, state)
    return f"{quote(art.name)}?v={hashlib.sha256(data).hexdigest()[:16]}"


def channel_warnings(channel: PodcastChannel, *, podcast_url: str, title: str) -> list[dict[str, str]]:
    """Warnings (kind, option, message) for channel values a podcast directory would reject; the runner says them
    when the feed has episodes. A feed at the default loopback URL is not published, so it gets no owner warning."""
    warnings: list[dict[str, str]] = []
    art = artwork(channel.image, title)
    if art.problems:
        rules = f"a square JPEG or PNG in RGB, {MIN_PX}-{MAX_PX} px"
        outcome = ("a cover drawn from the title is used instead" if art.drawn_instead else
                   "a copy made to fit (RGB, padded to a square where it is not one, scaled into that range) is "
                   "published instead: give an image that fits to have it published as it is")
        warnings.append({"kind": "podcast_image", "option": "--podcast-image",
                         "message": f"podcast image {channel.image}: {'; '.join(art.problems)}. Podcast directories "
                                    f"take {rules}; {outcome}"})
    if podcast_url != DEFAULT_PODCAST_BASE_URL and not channel.owner_email:
        warnings.append({"kind": "podcast_owner_email", "option": "--podcast-owner-email",
                         "message": f"{FEED_NAME} names no owner email: Apple Podcasts and Spotify send the "
                                    "ownership check to itunes:owner's address, so a directory cannot verify the "
                                    "feed; give --podcast-owner-email (or podcast_owner_email in the job)"})
    return warnings


def build(out_dir: Path, state: EpisodeRecords, *, base_url: str = DEFAULT_PODCAST_BASE_URL, title: str | None = None,
          keep: int = 100, channel: PodcastChannel | None = None, language: str = "en") -> Path:
    """Write <id>.txt/<id>.vtt for every episode, the channel's cover and the feed of the newest `keep` ones;
    returns the feed path."""
    base = base_url if base_url.endswith("/") else base_url + "/"
    settings = channel or PodcastChannel()
    shown_title = channel_title(out_dir, title)
    rss = ET.Element("rss", {"version": "2.0"})
    episodes = ET.Element("channel")
    ordered: list[tuple[datetime, str, ET.Element]] = []  # newest publication first, as apps list them
    for record in state.episodes(keep):
        try:
            sidecar = json.loads((out_dir / (record.sidecar_name or "")).read_text(encoding="utf-8"))
            if not sidecar.get("audio_file"):
                continue  # --output text: an analysis to read, not an episode
            enclosure = playable_enclosure(out_dir, sidecar)
            if enclosure is None:
                continue  # no file a podcast app plays (an episode from before feed copies, remade next run)
        except (OSError, ValueError, KeyError, TypeError):
            continue  # an episode whose files are gone is left out until a run makes it again
        cues, note = cues_from_sidecar(sidecar)
        txt_name, vtt_name = f"{record.doc_id}.txt", f"{record.doc_id}.vtt"
        transcript = transcript_file(str(sidecar.get("transcript", "")))
        if not _ours_or_adoptable(out_dir, state, record.doc_id, txt_name, vtt_name, transcript):
            continue  # a file of that name that audiosum did not make: left alone, and no episode without it
        atomic_write(confined_path(out_dir, txt_name), transcript, ours=state.owns)
        atomic_write(confined_path(out_dir, vtt_name), render_vtt(cues, note).encode("utf-8"), ours=state.owns)
        _add_episode(episodes, record, sidecar, base, enclosure, chapters_link(out_dir, sidecar))
        meta = sidecar.get("meta") if isinstance(sidecar.get("meta"), dict) else {}
        ordered.append((published_at(meta.get("published"), record.finished_at), record.doc_id, episodes[-1]))
    for item in list(episodes):
        episodes.remove(item)
    ordered.sort(key=lambda entry: (-entry[0].timestamp(), entry[1]))
    episodes.extend(item for _, _, item in ordered)
    feed_path = confined_path(out_dir, FEED_NAME)
    if episodes.find("item") is None and not feed_path.exists():
        return feed_path  # nothing spoken here yet (say, only --output text): no empty feed to publish
    # The cover is in place before the feed that links to it.
    cover = _publish_cover(out_dir, state, artwork(settings.image, shown_title))
    channel_element = ET.SubElement(rss, "channel")
    _add_channel(channel_element, title=shown_title, base=base, settings=settings, language=language, cover=cover)
    channel_element.extend(episodes)
    for element in rss.iter():
        if element.text:
            element.text = _xml_safe(element.text)
        for name, value in element.attrib.items():
            element.attrib[name] = _xml_safe(value)
    ET.indent(rss)
    data = b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(rss, encoding="utf-8") + b"\n"
    atomic_write(feed_path, data, ours=state.owns)
    return feed_path
