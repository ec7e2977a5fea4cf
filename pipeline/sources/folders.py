"""Folders of documents and recordings: every file of a known kind below them, in a stable (sorted) order.

Hidden files and folders and OUT itself are never read; files become Documents through documents.py.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from pipeline.errors import UsageError
from pipeline.models import STATE_DIR
from pipeline.sources.documents import (
    AUDIO_SUFFIXES,
    DOCUMENT_SUFFIXES,
    SourceItem,
    document_from_file,
    printable_path,
)
from pipeline.sources.feeds import FEED_FILE_SUFFIXES
from pipeline.sources.manifests import MANIFEST_SUFFIXES
from pipeline.sources.placement import same_folder_error, same_place

# Manifests and feed files are read when named as inputs, not when met in a folder: not "passed over" by a walk.
NAMED_ONLY = MANIFEST_SUFFIXES | FEED_FILE_SUFFIXES


def walk_document_files(root: Path, skip_dir: Path | None,
                        passed_over: Counter[str] | None = None) -> Iterator[Path]:
    """Document files (text, Markdown, HTML, PDF, office files, books, recordings) under root in a stable (sorted)
    order; hidden files and folders and skip_dir are left out. passed_over: counts the other files by suffix (what
    this version does not read), so a run can say what it passed over."""
    skip = skip_dir.resolve() if skip_dir is not None else None
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(
            d for d in dirnames
            if not d.startswith(".") and (skip is None or (here / d).resolve() != skip)
        )
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            suffix = Path(name).suffix.lower()
            if suffix in DOCUMENT_SUFFIXES:
                yield here / name
            elif passed_over is not None and suffix not in NAMED_ONLY:
                passed_over[suffix or "(no extension)"] += 1


def iter_folder(root: Path, *, skip_dir: Path | None = None,
                passed_over: Counter[str] | None = None) -> Iterator[SourceItem]:
    """Document files under root, recursively, in a stable (sorted) order; hidden folders are skipped (files of
    other kinds are counted in passed_over)."""
    root_resolved = root.resolve()
    for path in walk_document_files(root, skip_dir, passed_over):
        relative = path.relative_to(root)
        yield document_from_file(Path(os.path.abspath(path)), doc_id=str(relative.with_suffix("")),
                                  source=printable_path(relative), root=root_resolved)


def check_out_dir(raw: str, out_dir: Path) -> None:
    """UsageError when OUT is this input folder, or when every document under it lies inside a fresh OUT (OUT
    nested inside an input folder is otherwise allowed: it is never listed as input)."""
    path = Path(raw)
    if same_place(path, out_dir):
        raise same_folder_error(out_dir, f"the input folder {printable_path(raw)}")
    out = out_dir.resolve()
    if (out.is_relative_to(path.resolve()) and not (out / STATE_DIR).exists()
            and next(walk_document_files(path, out), None) is None
            and next(walk_document_files(out, None), None) is not None):
        raise UsageError(f"every document under {printable_path(raw)} lies inside the output folder "
                         f"{printable_path(out_dir)}, which is never read as input; move them out of it or "
                         "choose another -o")


def first_text_file(raw: str, skip_dir: Path | None) -> str | None:
    """The first document under the folder that is text rather than a recording, or None."""
    for found in walk_document_files(Path(raw), skip_dir):
        if found.suffix.lower() not in AUDIO_SUFFIXES:
            return str(found)
    return None


def count_files(raw: str, skip_dir: Path | None) -> int:
    return sum(1 for _ in walk_document_files(Path(raw), skip_dir))
