"""Turn inputs (folders, manifests, single files, feeds) into a stream of Documents.

Items are yielded one at a time and never collected; a bad item becomes a RejectedDocument, never an exception.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.errors import DocumentError, UsageError, first_line
from pipeline.models import AudioSource, Document, RejectedDocument, RunSettings
from pipeline.redact import quoted, shown_input
from pipeline.sources import extract, feeds
from pipeline.state import STATE_DIR

TEXT_SUFFIXES = frozenset({".txt", ".md", ".markdown"})
# Recordings: sent to the model as input_audio (WAV and MP3 as they are; the others converted to MP3 first).
AUDIO_SUFFIXES = frozenset({".wav", ".mp3", ".m4a", ".ogg", ".oga", ".opus", ".flac"})
# What folders, manifests' `path` and single-file inputs accept; the kind is then told from the content too.
DOCUMENT_SUFFIXES = TEXT_SUFFIXES | extract.HTML_SUFFIXES | extract.PDF_SUFFIXES | AUDIO_SUFFIXES
MANIFEST_SUFFIXES = frozenset({".jsonl", ".csv"})
MAX_DOCUMENT_BYTES = 20 * 1024 * 1024
MAX_RECORDING_BYTES = 1024 * 1024 * 1024  # the 4-hour decode cap bounds what is really used
MAX_FOLLOWUPS = 20
MAX_QUESTION_CHARS = 2000
MAX_MANIFEST_LINE_BYTES = 4 * 1024 * 1024
MAX_ID_LENGTH = 100
RESERVED_IDS = frozenset({"report", "podcast"})

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


def check_inputs(inputs: tuple[str, ...]) -> None:
    """Raise UsageError for no inputs or one that does not exist or is of an unknown kind."""
    if not inputs:
        raise UsageError("give at least one input: a folder, a manifest (.jsonl, .csv), a document or a feed")
    for raw in inputs:
        if feeds.is_url(raw):
            parts = urlsplit(raw.strip())
            if not parts.hostname:
                raise UsageError(f"input {quoted(shown_input(raw))!r} is not a usable feed URL (no host)")
            try:
                parts.port  # noqa: B018 - reading it checks the port
            except ValueError as exc:
                raise UsageError(f"input {quoted(shown_input(raw))!r} is not a usable feed URL ({exc})") from exc
            continue
        path = Path(raw)
        if not path.exists():
            raise UsageError(f"input {quoted(raw)!r} does not exist")
        if (not path.is_dir() and path.suffix.lower() not in MANIFEST_SUFFIXES | DOCUMENT_SUFFIXES
                and not feeds.is_feed_input(raw)):
            raise UsageError(
                f"input {quoted(raw)!r} is not a folder, a manifest (.jsonl, .csv), a document (.txt, .md, .html, "
                ".pdf), "
                "a recording (.wav, .mp3, .m4a, .ogg, .flac) or a feed (an http(s) URL, or an .xml, .rss or "
                ".atom file)")


def check_out_dir(inputs: tuple[str, ...], out_dir: Path) -> None:
    """UsageError when the output folder would hold outputs next to inputs, where an output name could replace a
    document: OUT is an input folder, or the folder of an input file or of a manifest item's `path` (compared as
    given, with symlinks resolved, and as the same folder on disk). Reads names and manifest lines only, before
    anything is sent. OUT nested inside an input folder is allowed (it is never listed as input), unless every
    document of that folder lies inside a fresh OUT."""
    for raw in inputs:
        if feeds.is_url(raw):
            continue
        path = Path(raw)
        if path.is_dir():
            if _same_place(path, out_dir):
                raise UsageError(_same_folder(out_dir, f"the input folder {printable_path(raw)}"))
            out = out_dir.resolve()
            if (out.is_relative_to(path.resolve()) and not (out / STATE_DIR).exists()
                    and next(_walk_text_files(path, out), None) is None
                    and next(_walk_text_files(out, None), None) is not None):
                raise UsageError(f"every document under {printable_path(raw)} lies inside the output folder "
                                 f"{printable_path(out_dir)}, which is never read as input; move them out of it or "
                                 "choose another -o")
            continue
        if _same_place(Path(os.path.abspath(path)).parent, out_dir) or _same_place(path.resolve().parent, out_dir):
            raise UsageError(_same_folder(out_dir, f"the folder of the input {printable_path(raw)}"))
        if path.suffix.lower() in MANIFEST_SUFFIXES:
            _check_manifest_paths(path, out_dir)


def _same_place(folder: Path, out_dir: Path) -> bool:
    """The same folder, by name (absolute or resolved) or on disk (a symlinked, bind-mounted or case-folded path)."""
    if {Path(os.path.abspath(folder)), folder.resolve()} & {Path(os.path.abspath(out_dir)), out_dir.resolve()}:
        return True
    try:
        return os.path.samefile(folder, out_dir)
    except OSError:  # OUT does not exist yet: it cannot hold anything
        return False


def _same_folder(out_dir: Path, what: str) -> str:
    return (f"the output folder {printable_path(out_dir)} is {what}: an output could replace an input there "
            "(audiosum never writes next to its inputs); choose another -o")


def _check_manifest_paths(manifest: Path, out_dir: Path) -> None:
    rows = _csv_rows(manifest) if manifest.suffix.lower() == ".csv" else _jsonl_rows(manifest)
    for line_no, row in rows:
        raw = row.get("path") if isinstance(row, dict) else None
        if not isinstance(raw, str) or "\x00" in raw:
            continue  # a bad row is the document's own failure, reported when it is read
        item = manifest.parent / raw
        if _same_place(Path(os.path.abspath(item)).parent, out_dir) or _same_place(item.resolve().parent, out_dir):
            raise UsageError(_same_folder(out_dir, f"the folder of {printable_path(raw)} "
                                                   f"({manifest.name} line {line_no})"))


def check_text_output(inputs: tuple[str, ...], *, skip_dir: Path | None = None) -> None:
    """UsageError when --output text meets a text document: the audio models need audio on one side, so a text
    document can only be answered with speech. Reads names and manifest lines only."""
    found = _first_text_document(inputs, skip_dir)
    if found is not None:
        raise UsageError(f"--output text is for recordings (.wav, .mp3, .m4a, .ogg, .flac), but {found} is a text "
                         "document; use --output text+audio for text, or give only recordings")


def _first_text_document(inputs: tuple[str, ...], skip_dir: Path | None) -> str | None:
    for raw in inputs:
        path = Path(raw)
        if feeds.is_url(raw):
            return f"the feed {raw}"
        if path.is_dir():
            for found in _walk_text_files(path, skip_dir):
                if found.suffix.lower() not in AUDIO_SUFFIXES:
                    return str(found)
        elif path.suffix.lower() in MANIFEST_SUFFIXES:
            rows = _csv_rows(path) if path.suffix.lower() == ".csv" else _jsonl_rows(path)
            for line_no, row in rows:
                if isinstance(row, dict) and ("text" in row or (
                        "path" in row and Path(str(row["path"])).suffix.lower() not in AUDIO_SUFFIXES)):
                    return f"{path.name} line {line_no}"
        elif path.suffix.lower() not in AUDIO_SUFFIXES:
            return raw if path.suffix.lower() in DOCUMENT_SUFFIXES else f"the feed {raw}"
    return None


def fetch_limits(settings: RunSettings) -> feeds.FetchLimits:
    """How this run fetches feed and article pages (private links, proxy)."""
    return feeds.FetchLimits(allow_private_links=settings.allow_private_links, proxy=settings.proxy)


def iter_inputs(inputs: tuple[str, ...], *, skip_dir: Path | None = None,
                already_done: Callable[[str], bool] | None = None, since: datetime | None = None,
                max_items: int | None = None, fetch_limits: feeds.FetchLimits | None = None) -> Iterator[SourceItem]:
    """Every document of every input, in order; call check_inputs first.

    already_done, since, max_items and fetch_limits apply to feed inputs (see feeds.iter_feed).
    """
    check_inputs(inputs)
    for raw in inputs:
        path = Path(raw)
        if feeds.is_url(raw):
            yield from feeds.iter_feed(raw.strip(), since=since, max_items=max_items, already_done=already_done,
                                       limits=fetch_limits)
        elif path.is_dir():
            yield from iter_folder(path, skip_dir=skip_dir)
        elif path.suffix.lower() in MANIFEST_SUFFIXES:
            yield from iter_manifest(path)
        elif path.suffix.lower() in DOCUMENT_SUFFIXES:
            yield _document_from_file(Path(os.path.abspath(path)), doc_id=path.stem, source=printable_path(path),
                                      root=path.parent.resolve())
        else:
            yield from feeds.iter_feed(raw, since=since, max_items=max_items, already_done=already_done,
                                       limits=fetch_limits)


def _walk_text_files(root: Path, skip_dir: Path | None) -> Iterator[Path]:
    """Document files (text, Markdown, HTML, PDF) under root in a stable (sorted) order; hidden folders and
    skip_dir are left out."""
    skip = skip_dir.resolve() if skip_dir is not None else None
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(
            d for d in dirnames
            if not d.startswith(".") and (skip is None or (here / d).resolve() != skip)
        )
        for name in sorted(filenames):
            if not name.startswith(".") and Path(name).suffix.lower() in DOCUMENT_SUFFIXES:
                yield here / name


def iter_folder(root: Path, *, skip_dir: Path | None = None) -> Iterator[SourceItem]:
    """Document files under root, recursively, in a stable (sorted) order; hidden folders are skipped."""
    root_resolved = root.resolve()
    for path in _walk_text_files(root, skip_dir):
        relative = path.relative_to(root)
        yield _document_from_file(Path(os.path.abspath(path)), doc_id=str(relative.with_suffix("")),
                                  source=printable_path(relative), root=root_resolved)


def iter_manifest(manifest: Path) -> Iterator[SourceItem]:
    """Items of a .jsonl or .csv manifest; paths are resolved against, and confined to, its folder."""
    if manifest.suffix.lower() == ".csv":
        rows = _csv_rows(manifest)
    else:
        rows = _jsonl_rows(manifest)
    for line_no, row in rows:
        where = f"{manifest.name}:{line_no}"
        if isinstance(row, str):
            yield RejectedDocument(id=f"{manifest.stem}-line-{line_no}", source=where, reason=row)
            continue
        yield _document_from_row(row, manifest=manifest, where=where, line_no=line_no)


def _jsonl_rows(manifest: Path) -> Iterator[tuple[int, dict[str, object] | str]]:
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


def _csv_rows(manifest: Path) -> Iterator[tuple[int, dict[str, object] | str]]:
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
            text = _clean_text(strings["text"])
        except DocumentError as exc:
            return RejectedDocument(id=doc_id, source=where, reason=str(exc), title=title)
        return Document(id=doc_id, source=where, text=text, sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
                        title=title, voice=voice, instructions=instructions, followups=followups)
    if "path" not in strings:
        return RejectedDocument(id=doc_id, source=where, reason="manifest item has neither 'path' nor 'text'",
                                title=title)
    return _document_from_file(Path(strings["path"]), doc_id=doc_id, source=f"{where} ({strings['path']})",
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


def _document_from_file(path: Path, *, doc_id: str, source: str, root: Path, already_safe: bool = False,
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
        text = _clean_text(extracted.text)
    except DocumentError as exc:
        return RejectedDocument(id=safe_id, source=source, reason=str(exc), title=title)
    return Document(id=safe_id, source=source, text=text, sha256=hashlib.sha256(data).hexdigest(),
                    title=title or extracted.title or guess_title(text), voice=voice, instructions=instructions,
                    meta=dict(extracted.meta) or None, followups=followups)


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


def _clean_text(text: str) -> str:
    if "\x00" in text:
        raise DocumentError("text contains NUL characters")
    stripped = text.strip()
    if not stripped:
        raise DocumentError("document is empty")
    return stripped




def count_items(inputs: tuple[str, ...], *, skip_dir: Path | None = None) -> int | None:
    """How many items iter_inputs will yield, counted cheaply (names and lines only) for a progress total.

    None when an input is a feed: its entries are known only once it is fetched and parsed.
    """
    total = 0
    for raw in inputs:
        path = Path(raw)
        if feeds.is_url(raw):
            return None
        if path.is_dir():
            total += sum(1 for _ in _walk_text_files(path, skip_dir))
        elif path.suffix.lower() == ".jsonl":
            total += _count_nonblank_lines(path)
        elif path.suffix.lower() == ".csv":
            total += max(0, _count_nonblank_lines(path) - 1)
        elif path.suffix.lower() in DOCUMENT_SUFFIXES:
            total += 1
        else:
            return None
    return total


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
