"""Decide, per document, whether this run must make it: new, changed, damaged, or unchanged (skip).

Reads state and the files in OUT/ (stat first, hash only when stat disagrees); never writes anything.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

from pipeline.audio.publish import feed_copy_format
from pipeline.models import Document, RunSettings, questions_for
from pipeline.state import DocumentRecord, RunState

Verdict = Literal["new", "changed", "damaged", "unchanged", "forced"]  # why a document is made, or "unchanged"


class Decision(NamedTuple):
    """What this run does with one document, and the settings fingerprint the verdict was reached with."""

    verdict: Verdict
    fingerprint: str


def fingerprint(document: Document, settings: RunSettings) -> str:
    """Everything besides the input text that changes what would be spoken or saved."""
    relevant = {
        "provider": settings.provider,
        "model": settings.model if settings.provider == "openai" else "local",
        "voice": document.voice or settings.voice,
        "words": settings.words,
        "instructions": document.instructions or settings.instructions,
        "title": document.title,
        "format": settings.audio_format,
    }
    if settings.loudness_lufs is not None:
        relevant["loudness"] = settings.loudness_lufs
    if settings.mode != "summary":  # only when set, so fingerprints made before the option existed still match
        relevant["mode"] = settings.mode
    if settings.output != "text+audio":
        relevant["output"] = settings.output
    questions = questions_for(document, settings)
    if questions:
        relevant["followups"] = list(questions)
    if settings.strategy == "two-step":
        relevant["two_step"] = [settings.text_model, settings.tts_model, settings.voice_instructions]
    if settings.language != "en":  # only when set: fingerprints made before the option existed still match
        relevant["language"] = settings.language
    if settings.captions != "sentence":  # the sidecar's cues and the VTT differ; only when set, as above
        relevant["captions"] = settings.captions
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class FileStamp:
    """What we know of an output file without reading it."""

    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> FileStamp | None:
        try:
            info = os.stat(path)
        except OSError:
            return None
        return cls(info.st_size, info.st_mtime_ns)


def sha256_file(path: Path) -> str | None:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def _output_intact(out_dir: Path, name: str | None, sha256: str | None, size: int | None,
                   mtime_ns: int | None) -> bool:
    if not name or not sha256:
        return False
    path = out_dir / name
    stamp = FileStamp.of(path)
    if stamp is None:
        return False
    if stamp.size == size and stamp.mtime_ns == mtime_ns:
        # Same size and modification time as when we wrote and hashed it (git's index makes the same bet).
        return True
    return sha256_file(path) == sha256


def _feed_copy_missing(record: DocumentRecord) -> bool:
    """A main file podcast apps do not play (wav, opus, flac) needs the feed's copy recorded beside it; a document
    made before feed copies existed has none, and is made again rather than left out of the feed."""
    main = Path(record.main_name or "")
    copy_format = feed_copy_format(main.suffix)
    if copy_format is None:
        return False
    return main.with_suffix(f".{copy_format}").name not in {
        extra[0] for extra in json.loads(record.extra_files_json or "[]")}


def decide(document: Document, settings: RunSettings, record: DocumentRecord | None, *,
           force: bool = False) -> Decision:
    """The verdict on one document, with its settings fingerprint."""
    print_ = fingerprint(document, settings)
    if force:
        return Decision("forced", print_)
    if record is None or record.status not in ("done", "degraded") or (record.status == "degraded"
                                                                        and record.degraded_retry):
        return Decision("new" if record is None else "changed", print_)
    if record.input_sha256 != document.sha256 or record.fingerprint != print_:
        return Decision("changed", print_)
    out_dir = settings.out_dir
    if not (_output_intact(out_dir, record.main_name, record.main_sha256, record.main_size, record.main_mtime_ns)
            and _output_intact(out_dir, record.sidecar_name, record.sidecar_sha256, record.sidecar_size,
                               record.sidecar_mtime_ns)
            and all(_output_intact(out_dir, *extra) for extra in json.loads(record.extra_files_json or "[]"))
            and not _feed_copy_missing(record)):
        return Decision("damaged", print_)
    return Decision("unchanged", print_)


def already_done(settings: RunSettings, state: RunState) -> Callable[[str], bool]:
    """Feeds ask this before fetching an entry's page: True only when the plan would skip it anyway."""
    def done(doc_id: str) -> bool:
        if settings.force:
            return False
        record = state.document(doc_id)
        if record is None or record.status != "done":  # a degraded entry is fetched again: its cause may have passed
            return False
        probe = Document(id=doc_id, source="", text="", sha256=record.input_sha256, title=record.title)
        # Only when the plan will really skip it (outputs intact too): a redo must fetch the article again.
        return decide(probe, settings, record).verdict == "unchanged"

    return done
