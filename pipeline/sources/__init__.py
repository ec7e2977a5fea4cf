"""Turn inputs (folders, manifests, single files, feeds) into a stream of Documents.

Items are yielded one at a time and never collected; a bad item becomes a RejectedDocument, never an exception.
Each kind of input is handled in its own module (folders, manifests, documents, feeds); the table below says which.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pipeline.errors import UsageError
from pipeline.models import RunSettings
from pipeline.redact import quoted, shown_input, visible
from pipeline.sources import extract, feeds, fetch, folders, manifests  # noqa: F401 - extract: sources.extract stays
from pipeline.sources.documents import (  # noqa: F401 - the names callers and tests know from pipeline.sources
    AUDIO_SUFFIXES,
    DOCUMENT_SUFFIXES,
    MAX_ID_LENGTH,
    RESERVED_IDS,
    SourceItem,
    document_from_path,
    guess_title,
    printable_path,
    safe_doc_id,
)
from pipeline.sources.folders import iter_folder
from pipeline.sources.manifests import MANIFEST_SUFFIXES, iter_manifest, parse_followups  # noqa: F401
from pipeline.sources.placement import check_input_file

InputKind = Literal["feed_url", "folder", "manifest", "document", "feed_file"]


@dataclass(frozen=True, slots=True)
class ReadOptions:
    """How a run reads its inputs: OUT to leave out of folders; and for feeds, see feeds.iter_feed."""

    skip_dir: Path | None = None
    already_done: Callable[[str], bool] | None = None
    since: datetime | None = None
    max_items: int | None = None
    fetch_limits: fetch.FetchLimits | None = None
    passed_over: Counter[str] | None = None  # folders count here the files of kinds this version does not read


def _read_feed(raw: str, options: ReadOptions) -> Iterator[SourceItem]:
    return feeds.iter_feed(raw, since=options.since, max_items=options.max_items,
                           already_done=options.already_done, limits=options.fetch_limits)


@dataclass(frozen=True, slots=True)
class InputHandler:
    """What audiosum does with one kind of input: read its items, count them cheaply (None: only known once read),
    find its first text document (for --output text), and check OUT against where it lies."""

    read: Callable[[str, ReadOptions], Iterator[SourceItem]]
    count: Callable[[str, Path | None], int | None]
    first_text: Callable[[str, Path | None], str | None]
    check_out_dir: Callable[[str, Path], None]


def _no_out_dir_check(raw: str, out_dir: Path) -> None:
    """A feed URL lies in no folder."""


HANDLERS: dict[InputKind, InputHandler] = {
    "feed_url": InputHandler(read=lambda raw, options: _read_feed(raw.strip(), options),
                             count=lambda raw, skip: None, first_text=lambda raw, skip: f"the feed {raw}",
                             check_out_dir=_no_out_dir_check),
    "folder": InputHandler(read=lambda raw, options: iter_folder(Path(raw), skip_dir=options.skip_dir,
                                                                 passed_over=options.passed_over),
                           count=folders.count_files, first_text=folders.first_text_file,
                           check_out_dir=folders.check_out_dir),
    "manifest": InputHandler(read=lambda raw, options: iter_manifest(Path(raw)),
                             count=lambda raw, skip: manifests.count_rows(Path(raw)),
                             first_text=lambda raw, skip: manifests.first_text_row(Path(raw)),
                             check_out_dir=manifests.check_out_dir),
    "document": InputHandler(read=lambda raw, options: iter((document_from_path(raw),)),
                             count=lambda raw, skip: 1,
                             first_text=lambda raw, skip: None if Path(raw).suffix.lower() in AUDIO_SUFFIXES else raw,
                             check_out_dir=check_input_file),
    "feed_file": InputHandler(read=_read_feed, count=lambda raw, skip: None,
                              first_text=lambda raw, skip: f"the feed {raw}", check_out_dir=check_input_file),
}


def input_kind(raw: str) -> InputKind:
    """What an input is, from its text and its name: a file of no known suffix is read as a feed file."""
    if feeds.is_url(raw):
        return "feed_url"
    path = Path(raw)
    if path.is_dir():
        return "folder"
    if path.suffix.lower() in MANIFEST_SUFFIXES:
        return "manifest"
    if path.suffix.lower() in DOCUMENT_SUFFIXES:
        return "document"
    return "feed_file"


def check_inputs(inputs: tuple[str, ...]) -> None:
    """Raise UsageError for no inputs or one that does not exist or is of an unknown kind."""
    if not inputs:
        raise UsageError("give at least one input: a folder, a manifest (.jsonl, .csv), a document or a feed")
    for raw in inputs:
        kind = input_kind(raw)
        if kind == "feed_url":
            _check_feed_url(raw)
        elif not Path(raw).exists():
            raise UsageError(f"input {quoted(raw)!r} does not exist")
        elif kind == "feed_file" and not feeds.is_feed_input(raw):
            documents = ", ".join(sorted(DOCUMENT_SUFFIXES - AUDIO_SUFFIXES))
            raise UsageError(
                f"input {quoted(raw)!r} is not a folder, a manifest (.jsonl, .csv), a document ({documents}), a "
                f"recording ({', '.join(sorted(AUDIO_SUFFIXES))}) or a feed (an http(s) URL, or an .xml, .rss or "
                ".atom file)")


def _check_feed_url(raw: str) -> None:
    parts = urlsplit(raw.strip())
    if not parts.hostname:
        raise UsageError(f"input {quoted(shown_input(raw))!r} is not a usable feed URL (no host)")
    try:
        parts.port  # noqa: B018 - reading it checks the port
    except ValueError as exc:
        raise UsageError(f"input {quoted(shown_input(raw))!r} is not a usable feed URL ({exc})") from exc


def check_out_dir(inputs: tuple[str, ...], out_dir: Path) -> None:
    """UsageError when the output folder would hold outputs next to inputs, where an output name could replace a
    document: OUT is an input folder, or the folder of an input file or of a manifest item's `path` (compared as
    given, with symlinks resolved, and as the same folder on disk). Reads names and manifest lines only, before
    anything is sent. OUT nested inside an input folder is allowed (it is never listed as input), unless every
    document of that folder lies inside a fresh OUT."""
    for raw in inputs:
        HANDLERS[input_kind(raw)].check_out_dir(raw, out_dir)


def check_text_output(inputs: tuple[str, ...], *, skip_dir: Path | None = None) -> None:
    """UsageError when --output text meets a text document: the audio models need audio on one side, so a text
    document can only be answered with speech. Reads names and manifest lines only."""
    found = next((text for raw in inputs if (text := HANDLERS[input_kind(raw)].first_text(raw, skip_dir))), None)
    if found is not None:
        raise UsageError(f"--output text is for recordings (.wav, .mp3, .m4a, .ogg, .flac), but {found} is a text "
                         "document; use --output text+audio for text, or give only recordings")


def fetch_limits(settings: RunSettings) -> fetch.FetchLimits:
    """How this run fetches feed and article pages (private links, proxy)."""
    return fetch.FetchLimits(allow_private_links=settings.allow_private_links, proxy=settings.proxy)


def iter_inputs(inputs: tuple[str, ...], *, skip_dir: Path | None = None,
                already_done: Callable[[str], bool] | None = None, since: datetime | None = None,
                max_items: int | None = None, fetch_limits: fetch.FetchLimits | None = None,
                passed_over: Counter[str] | None = None) -> Iterator[SourceItem]:
    """Every document of every input, in order; call check_inputs first.

    already_done, since, max_items and fetch_limits apply to feed inputs (see feeds.iter_feed); passed_over counts,
    by suffix, the files in input folders of kinds this version does not read (see passed_over_note).
    """
    check_inputs(inputs)
    options = ReadOptions(skip_dir=skip_dir, already_done=already_done, since=since, max_items=max_items,
                          fetch_limits=fetch_limits, passed_over=passed_over)
    for raw in inputs:
        yield from HANDLERS[input_kind(raw)].read(raw, options)


def passed_over_note(passed_over: Counter[str]) -> str | None:
    """One line on the files input folders held that this version does not read, by kind; None when there were none.
    "3 files of types this version does not read: .pages (2), .key" """
    if not passed_over:
        return None
    total = sum(passed_over.values())
    kinds = ", ".join(f"{suffix} ({count})" if count > 1 else suffix for suffix, count in
                      sorted(passed_over.items(), key=lambda item: (-item[1], item[0])))
    # A suffix is part of a file name, which can hold a terminal escape: shown, never acted on.
    return visible(f"{total} file{'s' if total != 1 else ''} of types this version does not read: {kinds} "
                   "(passed over)", one_line=True)


def count_items(inputs: tuple[str, ...], *, skip_dir: Path | None = None) -> int | None:
    """How many items iter_inputs will yield, counted cheaply (names and lines only) for a progress total.

    None when an input is a feed: its entries are known only once it is fetched and parsed.
    """
    total = 0
    for raw in inputs:
        count = HANDLERS[input_kind(raw)].count(raw, skip_dir)
        if count is None:
            return None
        total += count
    return total
