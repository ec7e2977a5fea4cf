"""One document or recording file made into a Document: confined to its root, capped in size, its text extracted.

Reads only the file it is given; a bad file becomes a RejectedDocument, never an exception.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from pipeline.errors import DocumentError
from pipeline.models import AudioSource, Document, RejectedDocument
from pipeline.sources import blocks, extract

TEXT_SUFFIXES = frozenset({".txt"}) | extract.MARKDOWN_SUFFIXES
# Recordings: sent to the model as input_audio (WAV and MP3 as they are; the others converted to MP3 first).
AUDIO_SUFFIXES = frozenset({".wav", ".mp3", ".m4a", ".ogg", ".oga", ".opus", ".flac"})
# Office documents and books (.docx, .pptx, .odt, .rtf, .epub): extract.READERS says who reads each.
OFFICE_SUFFIXES = frozenset(extract.READERS)
# What folders, manifests' `path` and single-file inputs accept (the one list: everything else asks it); the kind
# of text, HTML and PDF is then told from the content too.
DOCUMENT_SUFFIXES = TEXT_SUFFIXES | extract.HTML_SUFFIXES | extract.PDF_SUFFIXES | OFFICE_SUFFIXES | AUDIO_SUFFIXES
MAX_DOCUMENT_BYTES = 20 * 1024 * 1024
MAX_RECORDING_BYTES = 1024 * 1024 * 1024  # the 4-hour decode cap bounds what is really used
MAX_ID_LENGTH = 100
RESERVED_IDS = frozenset({"report", "podcast", "dry-run"})  # the names of the run's own files

SourceItem = Document | RejectedDocument

_UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_ANSWER_NAME = re.compile(r"\.q\d+$", re.IGNORECASE)


def printable_path(path: str | os.PathLike[str]) -> str:
    """A path as text that can be stored and printed: bytes that are not UTF-8 (a name from another system, kept
    by Python as lone surrogates that SQLite and JSON refuse) become \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def safe_doc_id(raw: str) -> str:
    """A filesystem-safe id that can never name a path outside the output folder."""
    parts = [p for p in re.split(r"[\\/]+", raw.strip()) if p not in ("", ".", "..")]
    cleaned = "__".join(_UNSAFE_ID_CHARS.sub("_", p) for p in parts).strip("._")
    if not cleaned:
        raise DocumentError(f"id {raw!r} has no usable characters")
    if cleaned.lower() in RESERVED_IDS or _ANSWER_NAME.search(cleaned):
        # <id>.json would overwrite the run's own report.json (and back), redoing the document every night; and
        # <x>.q1 would name x's first follow-up answer file (<x>.q1.wav), each document overwriting the other.
        cleaned += "_"
    if len(cleaned) > MAX_ID_LENGTH:
        digest = hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:10]
        cleaned = f"{cleaned[:MAX_ID_LENGTH - 11]}-{digest}"
    return cleaned


def document_from_path(path: str | os.PathLike[str]) -> SourceItem:
    """A single-file input: its name (without suffix) is its id, its own folder its root."""
    given = Path(path)
    return document_from_file(Path(os.path.abspath(given)), doc_id=given.stem, source=printable_path(given),
                              root=given.parent.resolve())


def document_from_file(path: Path, *, doc_id: str, source: str, root: Path, already_safe: bool = False,
                        title: str | None = None, voice: str | None = None, instructions: str | None = None,
                        followups: tuple[str, ...] | None = None) -> SourceItem:
    try:
        safe_id = doc_id if already_safe else safe_doc_id(doc_id)
    except DocumentError as exc:
        return RejectedDocument(id=f"unnamed-{hashlib.sha256(source.encode()).hexdigest()[:8]}", source=source,
                                reason=str(exc), title=title)
    if path.suffix.lower() in AUDIO_SUFFIXES:
        return _recording(path, doc_id=safe_id, source=source, root=root, title=title, voice=voice,
                          instructions=instructions, followups=followups)
    try:
        data = read_confined(path, root)
        extracted = extract.document_text(data, suffix=path.suffix)
        text = clean_text(extracted.text)
    except DocumentError as exc:
        return RejectedDocument(id=safe_id, source=source, reason=str(exc), title=title)
    # clean_text strips the text: the chapters' spans move back by what it took off the front.
    chapters = blocks.shifted(extracted.chapters, len(extracted.text) - len(extracted.text.lstrip()), len(text))
    return Document(id=safe_id, source=source, text=text, sha256=hashlib.sha256(data).hexdigest(),
                    title=title or extracted.title or guess_title(text), voice=voice, instructions=instructions,
                    meta=dict(extracted.meta) or None, followups=followups, chapters=chapters)


def _recording(path: Path, *, doc_id: str, source: str, root: Path, title: str | None, voice: str | None,
               instructions: str | None, followups: tuple[str, ...] | None) -> SourceItem:
    """A recording is hashed here (streamed) and only referenced; its content is checked when it is used."""
    try:
        resolved = _confined(path, root)
        digest, size = _hash_regular_file(resolved, MAX_RECORDING_BYTES, printable_path(path))
    except DocumentError as exc:
        return RejectedDocument(id=doc_id, source=source, reason=str(exc), title=title)
    if size == 0:
        return RejectedDocument(id=doc_id, source=source, reason=f"recording {printable_path(path)} is empty (0 bytes)",
                                title=title)
    return Document(id=doc_id, source=source, text="", sha256=digest, title=title or printable_path(path.stem),
                    voice=voice, instructions=instructions, followups=followups,
                    audio=AudioSource(path=resolved, suffix=path.suffix.lower(), size=size))


def guess_title(text: str) -> str | None:
    """The first line when it reads as a title: a Markdown heading, or a short line with no closing stop."""
    first = text.lstrip().split("\n", 1)[0].strip()
    if first.startswith("#"):
        first = first.lstrip("#").strip()
    elif first.endswith((".", "!", "?", ":", ";", ",")):
        return None
    if not first or len(first.split()) > 14 or len(first) > 160:
        return None
    return first


def _hash_regular_file(path: Path, cap: int, what: str) -> tuple[str, int]:
    """(sha256, size) of a regular file of at most cap bytes, streamed (a recording can be a gigabyte)."""
    digest = hashlib.sha256()
    size = 0
    for block in extract.read_blocks(path, cap, what):
        size += len(block)
        digest.update(block)
    return digest.hexdigest(), size


def read_confined(path: Path, root: Path) -> bytes:
    """Bytes of a regular file that really lies under root (symlinks resolved), at most MAX_DOCUMENT_BYTES."""
    return extract.read_capped(_confined(path, root), MAX_DOCUMENT_BYTES, printable_path(path))


def _confined(path: Path, root: Path) -> Path:
    """path resolved (symlinks followed), refused unless it exists and lies under root."""
    shown = printable_path(path)
    if "\x00" in str(path):
        # The OS cannot take such a name; Path.resolve would raise ValueError, which no caller expects.
        raise DocumentError(f"path {shown!r} contains a NUL character")
    candidate = path if path.is_absolute() else root / path
    try:
        resolved = candidate.resolve(strict=True)
    except FileNotFoundError as exc:
        raise DocumentError(f"file {shown} does not exist") from exc
    except RuntimeError as exc:  # Python < 3.13 reports a symlink loop this way (3.13 raises OSError ELOOP)
        raise DocumentError(f"file {shown} is a symlink loop") from exc
    except OSError as exc:
        raise DocumentError(f"cannot open {shown}: {exc.strerror or exc}") from exc
    if not resolved.is_relative_to(root):
        raise DocumentError(f"path {shown} lies outside {printable_path(root)}")
    return resolved


def clean_text(text: str) -> str:
    if "\x00" in text:
        raise DocumentError("text contains NUL characters")
    stripped = text.strip()
    if not stripped:
        raise DocumentError("document is empty")
    return stripped
