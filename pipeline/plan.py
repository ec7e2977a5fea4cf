"""Decide, per document, whether this run must make it: new, changed, damaged, or unchanged (skip).

Reads state and the files in OUT/ (stat first, hash only when stat disagrees); never writes anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pipeline.errors import DocumentError
from pipeline.models import Document, RunSettings, questions_for
from pipeline.state import DocumentRecord

Decision = Literal["new", "changed", "damaged", "unchanged", "forced"]


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


def decide(document: Document, settings: RunSettings, record: DocumentRecord | None, *,
           force: bool = False) -> tuple[Decision, str]:
    """(decision, settings fingerprint) for one document."""
    print_ = fingerprint(document, settings)
    if force:
        return "forced", print_
    if record is None or record.status != "done":
        return "new" if record is None else "changed", print_
    if record.input_sha256 != document.sha256 or record.fingerprint != print_:
        return "changed", print_
    out_dir = settings.out_dir
    if not (_output_intact(out_dir, record.wav_name, record.wav_sha256, record.wav_size, record.wav_mtime_ns)
            and _output_intact(out_dir, record.sidecar_name, record.sidecar_sha256, record.sidecar_size,
                               record.sidecar_mtime_ns)
            and all(_output_intact(out_dir, *extra) for extra in json.loads(record.extra_files_json or "[]"))):
        return "damaged", print_
    return "unchanged", print_


# -- long documents ------------------------------------------------------------------------------------------

CHARS_PER_TOKEN = 4.0
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s")


def _pieces(text: str) -> list[str]:
    """Structure first: sections at Markdown headings, then paragraphs at blank lines."""
    sections: list[list[str]] = [[]]
    for line in text.splitlines():
        if _HEADING.match(line) and any(s.strip() for s in sections[-1]):
            sections.append([])
        sections[-1].append(line)
    pieces: list[str] = []
    for section in sections:
        pieces.extend(p.strip() for p in re.split(r"\n\s*\n", "\n".join(section)) if p.strip())
    return pieces


def _split_oversized(piece: str, limit_chars: int) -> list[str]:
    """A paragraph too big for one part: at sentence ends, and only as a last resort mid-sentence."""
    import sentencex

    out, current = [], ""
    for sentence in sentencex.segment("en", piece):
        while len(sentence) > limit_chars:
            out.append(sentence[:limit_chars])
            sentence = sentence[limit_chars:]
        if current and len(current) + len(sentence) > limit_chars:
            out.append(current.strip())
            current = ""
        current += sentence
    if current.strip():
        out.append(current.strip())
    return out


def split_for_budget(text: str, budget_tokens: int) -> list[str]:
    """The document in as few parts as fit `budget_tokens` each, split on headings, paragraphs, sentences."""
    limit = max(200, int(budget_tokens * CHARS_PER_TOKEN))
    if len(text) <= limit:
        return [text]
    parts: list[str] = []
    current = ""
    for piece in _pieces(text):
        for chunk in ([piece] if len(piece) <= limit else _split_oversized(piece, limit)):
            if current and len(current) + 2 + len(chunk) > limit:
                parts.append(current)
                current = ""
            current = f"{current}\n\n{chunk}" if current else chunk
    if current:
        parts.append(current)
    return parts


NARRATE_PART_TOKENS = 1200  # about four minutes of speech per request
NARRATE_MAX_WORDS = 40_000  # about four and a half hours read aloud: more is a book, not a narration


def narration_parts(text: str) -> list[str]:
    """--mode narrate: the whole text in parts of about four minutes each; DocumentError when it is too long to
    read aloud in one file (its WAV alone would be gigabytes)."""
    words = len(text.split())
    if words > NARRATE_MAX_WORDS:
        raise DocumentError(f"too long to read aloud: {words} words, over the {NARRATE_MAX_WORDS}-word limit of "
                            "--mode narrate (about four and a half hours); summarise it instead")
    return split_for_budget(text, NARRATE_PART_TOKENS)
