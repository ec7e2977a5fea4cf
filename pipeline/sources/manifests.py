"""Manifests (.jsonl, .csv): one item a line or row, each a path (confined to the manifest's folder) or inline text.

Rows are streamed, never collected; a bad row becomes a RejectedDocument, never an exception.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

from pipeline.errors import DocumentError, first_line
from pipeline.models import Document, RejectedDocument
from pipeline.sources.documents import (
    AUDIO_SUFFIXES,
    MAX_DOCUMENT_BYTES,
    SourceItem,
    clean_text,
    document_from_file,
    printable_path,
    safe_doc_id,
)
from pipeline.sources.placement import check_beside, check_input_file

MANIFEST_SUFFIXES = frozenset({".jsonl", ".csv"})
MAX_FOLLOWUPS = 20
MAX_QUESTION_CHARS = 2000
MAX_MANIFEST_LINE_BYTES = 4 * 1024 * 1024

Row = tuple[int, dict[str, object] | str]  # (line number, the row's fields, or why it is unusable)


def manifest_rows(manifest: Path) -> Iterator[Row]:
    """The rows of a .csv or .jsonl manifest, by its suffix."""
    return _csv_rows(manifest) if manifest.suffix.lower() == ".csv" else _jsonl_rows(manifest)


def iter_manifest(manifest: Path) -> Iterator[SourceItem]:
    """Items of a .jsonl or .csv manifest; paths are resolved against, and confined to, its folder."""
    for line_no, row in manifest_rows(manifest):
        where = f"{manifest.name}:{line_no}"
        if isinstance(row, str):
            yield RejectedDocument(id=f"{manifest.stem}-line-{line_no}", source=where, reason=row)
            continue
        yield _document_from_row(row, manifest=manifest, where=where, line_no=line_no)


def _jsonl_rows(manifest: Path) -> Iterator[Row]:
    with manifest.open("rb") as handle:
        line_no = 0
        while True:
            line = handle.readline(MAX_MANIFEST_LINE_BYTES + 1)
            if not line:
                return
            line_no += 1
            if len(line) > MAX_MANIFEST_LINE_BYTES:
                # Skip the rest of an over-long line without holding it in memory.
                while line and not line.endswith(b"\n"):
                    line = handle.readline(MAX_MANIFEST_LINE_BYTES)
                yield line_no, f"manifest line is longer than {MAX_MANIFEST_LINE_BYTES} bytes"
                continue
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                yield line_no, f"manifest line is not valid JSON ({first_line(exc)})"
                continue
            if not isinstance(value, dict):
                yield line_no, "manifest line is not a JSON object"
                continue
            yield line_no, value


def _csv_rows(manifest: Path) -> Iterator[Row]:
    csv.field_size_limit(MAX_DOCUMENT_BYTES)
    with manifest.open(newline="", encoding="utf-8-sig", errors="strict") as handle:
        reader = csv.DictReader(handle)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError) as exc:
                # The reader cannot resynchronise after this; the rest of the manifest is one failure.
                yield reader.line_num + 1, f"CSV manifest is unreadable from here on: {exc}"
                return
            line_no = reader.line_num
            if None in row:
                yield line_no, "CSV row has more columns than the header"
                continue
            if any(v is None for v in row.values()):
                yield line_no, "CSV row has fewer columns than the header"
                continue
            yield line_no, {k.strip(): v for k, v in row.items() if v != ""}


def _document_from_row(row: dict[str, object], *, manifest: Path, where: str, line_no: int) -> SourceItem:
    fallback_id = f"{manifest.stem}-line-{line_no}"
    try:
        followups = parse_followups(row.get("followups"))
    except DocumentError as exc:
        return RejectedDocument(id=fallback_id, source=where, reason=str(exc))
    strings: dict[str, str] = {}
    for key in ("id", "path", "text", "title", "voice", "instructions"):
        value = row.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            return RejectedDocument(id=fallback_id, source=where, reason=f"field {key!r} must be a string")
        strings[key] = str(value)
    raw_id = strings.get("id") or (Path(strings["path"]).stem if "path" in strings else "")
    title = strings.get("title")
    if not raw_id:
        return RejectedDocument(id=fallback_id, source=where, reason="manifest item has no 'id'", title=title)
    try:
        doc_id = safe_doc_id(raw_id)
    except DocumentError as exc:
        return RejectedDocument(id=fallback_id, source=where, reason=str(exc), title=title)
    if "text" in strings and "path" in strings:
        return RejectedDocument(id=doc_id, source=where, reason="manifest item has both 'path' and 'text'",
                                title=title)
    voice, instructions = strings.get("voice"), strings.get("instructions")
    if "text" in strings:
        try:
            text = clean_text(strings["text"])
        except DocumentError as exc:
            return RejectedDocument(id=doc_id, source=where, reason=str(exc), title=title)
        return Document(id=doc_id, source=where, text=text, sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
                        title=title, voice=voice, instructions=instructions, followups=followups)
    if "path" not in strings:
        return RejectedDocument(id=doc_id, source=where, reason="manifest item has neither 'path' nor 'text'",
                                title=title)
    return document_from_file(Path(strings["path"]), doc_id=doc_id, source=f"{where} ({strings['path']})",
                               root=manifest.parent.resolve(), already_safe=True, title=title, voice=voice,
                               instructions=instructions, followups=followups)


def parse_followups(value: object, where: str = "field 'followups'") -> tuple[str, ...] | None:
    """A manifest's `followups`: a JSON list of questions, or (CSV) one question per line; None when absent.

    `where` names the setting in error messages."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [line for line in value.splitlines() if line.strip()]
    if not isinstance(value, list) or not all(isinstance(q, str) for q in value):
        raise DocumentError(f"{where} must be a list of questions (strings)")
    questions = tuple(" ".join(q.split()) for q in value if q.strip())
    if len(questions) > MAX_FOLLOWUPS:
        raise DocumentError(f"{where} has {len(questions)} questions; at most {MAX_FOLLOWUPS} are allowed")
    if any(len(q) > MAX_QUESTION_CHARS for q in questions):
        raise DocumentError(f"{where} has a question longer than {MAX_QUESTION_CHARS} characters")
    return questions


def check_out_dir(raw: str, out_dir: Path) -> None:
    """UsageError when OUT is the manifest's folder or the folder of one of its items' `path`."""
    check_input_file(raw, out_dir)
    manifest = Path(raw)
    for line_no, row in manifest_rows(manifest):
        given = row.get("path") if isinstance(row, dict) else None
        if not isinstance(given, str) or "\x00" in given:
            continue  # a bad row is the document's own failure, reported when it is read
        check_beside(manifest.parent / given, out_dir,
                     f"the folder of {printable_path(given)} ({manifest.name} line {line_no})")


def first_text_row(manifest: Path) -> str | None:
    """Where the manifest's first text item is (a `text`, or a `path` that is not a recording), or None."""
    for line_no, row in manifest_rows(manifest):
        if isinstance(row, dict) and ("text" in row or (
                "path" in row and Path(str(row["path"])).suffix.lower() not in AUDIO_SUFFIXES)):
            return f"{manifest.name} line {line_no}"
    return None


def count_rows(manifest: Path) -> int:
    """How many items the manifest holds, from its non-blank lines (a CSV's header is not one)."""
    lines = _count_nonblank_lines(manifest)
    return max(0, lines - 1) if manifest.suffix.lower() == ".csv" else lines


def _count_nonblank_lines(path: Path) -> int:
    """Lines holding more than whitespace, read in 1 MiB blocks: iterating a file by lines would hold a whole
    line in memory, and a manifest can have a 1 GiB one."""
    total, content = 0, False
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            *ended, rest = block.split(b"\n")
            for line in ended:
                if content or line.strip():
                    total += 1
                content = False
            content = content or bool(rest.strip())
    return total + int(content)
