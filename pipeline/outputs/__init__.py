"""Everything audiosum writes into OUT/, written atomically: temp file in the same folder, fsync, rename.

The only module that opens output files for writing; it refuses any name that would leave OUT/ and never replaces a
file that state does not record as audiosum's own (OutputClash). A full disk leaves here as DiskFull.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from pipeline import __version__
from pipeline.audio.publish import PublishedAudio, chapter_marks, feed_copy_format
from pipeline.audio.strip import audio_only
from pipeline.errors import DiskFull, OutputClash, is_no_space
from pipeline.models import Document, RunSettings, SpokenSummary, questions_for
from pipeline.redact import visible

TEMP_PREFIX = ".audiosum-tmp-"
CHAPTERS_SUFFIX = ".chapters.json"  # <id>.chapters.json: Podcasting 2.0 JSON chapters, linked as podcast:chapters
JSON_CHAPTERS_VERSION = "1.2.0"


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp creates 0600 files; outputs get the permissions an ordinary open() would give them.
FILE_MODE = 0o666 & ~_current_umask()


def confined_path(out_dir: Path, name: str) -> Path:
    """out_dir / name, refusing any name that is not a plain file name inside out_dir."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise ValueError(f"refusing to write {name!r}: not a plain file name")
    # A plain name cannot leave out_dir: rename() replaces a symlink at that name, it never follows it.
    return out_dir / name


Ours = Callable[[str], bool]  # is this file name in OUT/ one of audiosum's own outputs?


class OutputOwners(Protocol):
    """What state knows of the files in OUT/ (pipeline.state.RunState implements it)."""

    def owned_among(self, names: set[str]) -> set[str]: ...

    def claim_outputs(self, doc_id: str | None, names: set[str]) -> None: ...


def claim(out_dir: Path, owners: OutputOwners, doc_id: str | None, names: set[str]) -> frozenset[str]:
    """Make these names audiosum's before writing them: OutputClash, and nothing recorded, when one of them
    already exists in out_dir and was not made by audiosum. Returns the names, for the writer's `ours`."""
    owned = owners.owned_among(names)
    for name in sorted(names - owned):
        if os.path.lexists(confined_path(out_dir, name)):
            raise OutputClash(f"{out_dir / name} already exists and was not made by audiosum; it was left as it is "
                              "(move it away, or choose another output folder)")
    owners.claim_outputs(doc_id, names)
    return frozenset(names)


def _refuse_foreign(path: Path, ours: Ours) -> None:
    if not ours(path.name) and os.path.lexists(path):
        raise OutputClash(f"{path} already exists and was not made by audiosum; it was left as it is")


@contextlib.contextmanager
def atomic_writer(path: Path, *, ours: Ours, sync_dir: bool = True) -> Iterator[BinaryIO]:
    """A handle whose content replaces path only when the block ends without error (temp, fsync, rename).

    A file already at path is replaced only when ours(name) says audiosum made it (checked before writing and again
    just before the rename). ENOSPC/EDQUOT become DiskFull."""
    _refuse_foreign(path, ours)
    try:
        fd, temp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=path.parent)
    except OSError as exc:
        raise _mapped(exc, path) from exc
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            # fdatasync: the data and the size reach the disk; the mtime need not (it is cheaper).
            os.fdatasync(handle.fileno())
        _refuse_foreign(path, ours)
        os.replace(temp_name, path)
    except BaseException as exc:
        try:
            os.unlink(temp_name)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):
            raise _mapped(exc, path) from exc
        raise
    if sync_dir:
        fsync_folder(path.parent)


def _mapped(exc: OSError, path: Path) -> OSError | DiskFull:
    if is_no_space(exc):
        return DiskFull(f"no space left to write {path.name} in {path.parent} ({exc.strerror}); stopped before "
                        "sending more requests: free some space and run again to finish the rest")
    return exc


def make_out_dir(out_dir: Path) -> None:
    """Create OUT/ (and its parents); a full disk is DiskFull like any other write."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _mapped(exc, out_dir / ".") from exc


def atomic_write(path: Path, data: bytes, *, ours: Ours, sync_dir: bool = True) -> None:
    """Replace path with data so readers see the old file or the whole new one, never a part.

    sync_dir=False skips the folder fsync when a later write to the same folder will do it for both.
    """
    with atomic_writer(path, ours=ours, sync_dir=sync_dir) as handle:
        handle.write(data)


def fsync_folder(folder: Path) -> None:
    """Make renames in folder durable (their directory entries reach the disk)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sidecar(document: Document, summary: SpokenSummary, settings: RunSettings, main_name: str,
            main_sha256: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": document.id,
        "source": document.source,
        "title": document.title,
        "input_sha256": document.sha256,
        "transcript": summary.transcript,
        "provider": summary.provider,
        "model": summary.model,
        "voice": summary.voice,
        "voice_requested": summary.voice_requested or summary.voice,
        "voice_used": summary.voice,
        "engine": summary.engine,
        "format": settings.audio_format,
        "audio_file": main_name,
        "audio_sha256": main_sha256,
        "sample_rate": summary.sample_rate,
        "duration_s": round(summary.duration_s, 3),
        "audio_id": summary.audio_id,
        "audio_expires_at": summary.audio_expires_at,
        "usage": summary.usage.as_dict(),
        "request_id": summary.request_id,
        "attempts": len(summary.attempts),
        "parts": summary.parts,
        "chapters": [{"start_s": start, "title": label} for start, label in summary.chapters] or None,
        # Per-sentence times, and how they were made: synthesis (offline voice), aligned (API audio heard by the
        # offline recogniser), estimated (sentence length; cues_reason says why). Word cues with --captions word.
        "cues": [list(cue) for cue in summary.cues] or None,
        "cues_method": summary.cues_method,
        "cues_reason": summary.cues_reason,
        "word_cues": [list(cue) for cue in summary.word_cues] or None,
        "words_target": settings.words,
        "instructions": document.instructions or settings.instructions,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "audiosum_version": __version__,
        # Where the text came from: feed entry (title, author, link, published, feed_title) and how it was extracted.
        "meta": dict(document.meta) if document.meta else None,
    }
    if summary.steps:  # two-step: the text model's requests and the speech endpoint's, each with its usage
        body.update(strategy="two-step", steps=[step.as_dict() for step in summary.steps],
                    voice_instructions=settings.voice_instructions)
    if settings.output == "text":
        body.update(output="text", audio_file=None, audio_sha256=None, text_file=main_name, text_sha256=main_sha256,
                    format="text", sample_rate=None, duration_s=None, voice=None, voice_used=None)
    if document.audio is not None:
        heard = {"heard": summary.heard} if summary.heard is not None else {}  # what the offline engine recognised
        body["input"] = {"kind": "recording", "format": document.audio.suffix.lstrip("."),
                         "bytes": document.audio.size, "seconds": summary.input_seconds, "parts": summary.parts,
                         **heard}
    return body


def followup_entries(summary: SpokenSummary, files: list[WrittenFile]) -> list[dict[str, Any]]:
    """The sidecar's `followups`: each question, its answer, its file and how the history was sent."""
    return [{
        "n": number,
        "question": answer.question,
        "transcript": answer.transcript,
        "file": written.name,
        "sha256": written.sha256,
        "duration_s": round(answer.duration_s, 3) if answer.wav else None,
        "audio_id": answer.audio_id,
        "audio_expires_at": answer.audio_expires_at,
        "answer_basis": answer.basis,
        "history": [{"turn": turn.turn, "via": turn.via, "reason": turn.reason} for turn in answer.history],
    } for number, (answer, written) in enumerate(zip(summary.followups, files), start=1)]


@dataclass(frozen=True, slots=True)
class WrittenFile:
    name: str
    sha256: str
    size: int
    mtime_ns: int


def _write_recorded(path: Path, data: bytes, *, ours: Ours, sync_dir: bool) -> WrittenFile:
    atomic_write(path, data, ours=ours, sync_dir=sync_dir)
    info = os.stat(path)
    return WrittenFile(path.name, hashlib.sha256(data).hexdigest(), info.st_size, info.st_mtime_ns)


@dataclass(frozen=True, slots=True)
class DocumentFiles:
    """What one document left in OUT/: its audio (or, for --output text, its .txt), sidecar and answer files, and
    the podcast feed's copy of its audio when its format is one podcast apps do not play."""

    main: WrittenFile
    sidecar: WrittenFile
    followups: tuple[WrittenFile, ...] = ()
    feed: WrittenFile | None = None
    chapters: WrittenFile | None = None  # <id>.chapters.json, for an episode with chapter marks

    @property
    def extras(self) -> tuple[WrittenFile, ...]:
        """The files besides main and sidecar, as state records them (extra_files_json) and plan checks them."""
        return (*self.followups, *(f for f in (self.feed, self.chapters) if f is not None))


@dataclass(frozen=True, slots=True)
class DocumentNames:
    """The file names one document's outputs will have, known before anything is written."""

    main: str
    sidecar: str
    answers: tuple[str, ...]
    podcast: tuple[str, ...]  # <id>.txt and <id>.vtt, which podcast.build writes for a spoken summary
    feed: str | None = None  # <id>.mp3, the feed's copy of a wav, opus or flac main file
    chapters: str | None = None  # <id>.chapters.json

    @property
    def all(self) -> set[str]:
        return {self.main, self.sidecar, *self.answers, *self.podcast,
                *(name for name in (self.feed, self.chapters) if name)}


def transcript_file(transcript: str) -> bytes:
    """A transcript as its .txt holds it: control characters shown as \\xNN, as reports show them (a server's ESC, BEL
    or CR would act on a terminal or hide what precedes it), one line break at the end."""
    return (visible(transcript) + "\n").encode("utf-8")


Content = Callable[[], bytes]  # a file's bytes, made only when it is written (not when its name is worked out)


def _as_it_came(wav: bytes) -> Content:
    """A WAV as it came (no --format or --loudness asked): still only its fmt and data, none of a server's chunks."""
    return functools.partial(audio_only, wav, "wav")


def _main_data(summary: SpokenSummary, settings: RunSettings, published: PublishedAudio | None) -> tuple[Content, str]:
    if settings.output == "text":
        return functools.partial(transcript_file, summary.transcript), "txt"
    if published:
        return functools.partial(bytes, published.data), published.extension
    return _as_it_came(summary.wav), "wav"


def _answer_data(summary: SpokenSummary, published_answers: tuple[PublishedAudio, ...]) -> list[tuple[Content, str]]:
    answers: list[tuple[Content, str]] = []
    for number, answer in enumerate(summary.followups, start=1):
        if number <= len(published_answers):
            published = published_answers[number - 1]
            answers.append((functools.partial(bytes, published.data), published.extension))
        elif answer.wav:
            answers.append((_as_it_came(answer.wav), "wav"))
        else:
            answers.append((functools.partial(transcript_file, answer.transcript), "txt"))
    return answers


def _names(doc_id: str, main_extension: str, answer_extensions: list[str], feed_extension: str | None,
           chapters: bool) -> DocumentNames:
    answers = tuple(f"{doc_id}.q{n}.{ext}" for n, ext in enumerate(answer_extensions, start=1))
    podcast = (f"{doc_id}.txt", f"{doc_id}.vtt") if main_extension != "txt" else ()
    feed = f"{doc_id}.{feed_extension}" if feed_extension else None
    marks = f"{doc_id}{CHAPTERS_SUFFIX}" if chapters and main_extension != "txt" else None
    return DocumentNames(f"{doc_id}.{main_extension}", f"{doc_id}.json", answers, podcast, feed, marks)


def chapters_file(chapters: tuple[tuple[float, str], ...], title: str | None) -> bytes:
    """Podcasting 2.0 JSON chapters (version 1.2.0): each mark's startTime in seconds and its title."""
    body: dict[str, Any] = {"version": JSON_CHAPTERS_VERSION}
    if title:
        body["title"] = title
    body["chapters"] = [{"startTime": start, "title": label} for start, label in chapters]
    return (json.dumps(body, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def document_names(document: Document, summary: SpokenSummary, settings: RunSettings,
                   published: PublishedAudio | None = None,
                   published_answers: tuple[PublishedAudio, ...] = (), *,
                   feed_audio: PublishedAudio | None = None) -> DocumentNames:
    """The names this summary's files get."""
    _, extension = _main_data(summary, settings, published)
    return _names(document.id, extension, [ext for _, ext in _answer_data(summary, published_answers)],
                  feed_audio.extension if feed_audio is not None else None, bool(chapter_marks(summary.chapters)))


def planned_names(document: Document, settings: RunSettings) -> DocumentNames:
    """The names a document's files will get, known before anything is sent (document_names once it is made)."""
    if settings.output == "text":
        extension = "txt"
    elif settings.audio_format != "wav" or settings.loudness_lufs is not None:
        extension = settings.audio_format
    else:
        extension = "wav"
    # Chapters come from reading a text aloud part by part; a narration that fits one part has none, and a name
    # claimed but not written stays free of any file.
    return _names(document.id, extension, [extension] * len(questions_for(document, settings)),
                  feed_copy_format(extension), settings.mode == "narrate")


def write_document_outputs(out_dir: Path, document: Document, summary: SpokenSummary, settings: RunSettings,
                           published: PublishedAudio | None = None,
                           published_answers: tuple[PublishedAudio, ...] = (), *,
                           feed_audio: PublishedAudio | None = None, ours: Ours) -> DocumentFiles:
    """Write the answers' files (<id>.q1.wav, ...), the feed's copy (<id>.mp3), then <id>.<format> (or
    <id>.txt), then <id>.json last, so the sidecar's presence means everything it names is whole. A summary with
    chapter marks also gets <id>.chapters.json (Podcasting 2.0 JSON chapters).

    `published` is the normalised, encoded and tagged file when --format/--loudness asked for one, and
    `published_answers` the same for each answer; otherwise the model's WAVs are written with their samples as they
    came but nothing else of the server's (strip.audio_only), and a transcript with its control characters shown.
    `feed_audio` is the copy the podcast feed links when the main file is in a format podcast apps do not play
    (the sidecar's `feed_audio` names it, with its exact size and duration).
    `ours` says which existing files may be replaced (claim() them first). The caller must fsync_folder(out_dir)
    before recording the document as done.
    """
    content, _ = _main_data(summary, settings, published)
    names = document_names(document, summary, settings, published, published_answers, feed_audio=feed_audio)
    # All renames are made durable together by the folder fsync the runner does before each state commit.
    answers = [_write_recorded(confined_path(out_dir, name), answer_content(), ours=ours, sync_dir=False)
               for name, (answer_content, _) in zip(names.answers, _answer_data(summary, published_answers))]
    feed = None
    if feed_audio is not None and names.feed is not None:
        feed = _write_recorded(confined_path(out_dir, names.feed), feed_audio.data, ours=ours, sync_dir=False)
    marks = None
    if names.chapters is not None:
        marks = _write_recorded(confined_path(out_dir, names.chapters),
                                chapters_file(chapter_marks(summary.chapters), document.title), ours=ours,
                                sync_dir=False)
    audio = _write_recorded(confined_path(out_dir, names.main), content(), ours=ours, sync_dir=False)
    body = sidecar(document, summary, settings, audio.name, audio.sha256)
    if summary.followups:
        body["followups"] = followup_entries(summary, answers)
    if published is not None:
        body.update(format=published.extension, mime_type=published.mime_type,
                    sample_rate=published.sample_rate, duration_s=round(published.duration_s, 3),
                    loudness_lufs=round(published.loudness_lufs, 1), true_peak_dbtp=round(published.true_peak_dbtp, 1))
        if summary.audio_format != "wav":
            body["encoded_by"] = "api"  # format-direct: saved as the API sent it (tagged), never re-encoded
    if feed is not None and feed_audio is not None:
        body["feed_audio"] = {"file": feed.name, "mime_type": feed_audio.mime_type, "bytes": feed.size,
                              "sha256": feed.sha256, "duration_s": round(feed_audio.duration_s, 3),
                              "loudness_lufs": round(feed_audio.loudness_lufs, 1)}
    if marks is not None:
        body["chapters_file"] = {"file": marks.name, "sha256": marks.sha256}
    written = _write_recorded(confined_path(out_dir, names.sidecar),
                              (json.dumps(body, indent=2, ensure_ascii=False) + "\n").encode("utf-8"),
                              ours=ours, sync_dir=False)
    return DocumentFiles(audio, written, tuple(answers), feed, marks)


def remove_outputs(out_dir: Path, names: set[str], owners: OutputOwners) -> set[str]:
    """Delete those of these plain-named files that audiosum made (a document's outputs that its new version no
    longer has); returns the names it was allowed to remove."""
    ours = owners.owned_among(names)
    for name in sorted(ours):
        try:
            confined_path(out_dir, name).unlink()
        except (FileNotFoundError, ValueError):
            pass
    return ours


def remove_stale_temp_files(out_dir: Path) -> int:
    """Delete temp files a killed run left behind; call only while holding the run lock."""
    removed = 0
    for path in out_dir.glob(TEMP_PREFIX + "*"):
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    return removed
