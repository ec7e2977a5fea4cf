"""A document's blocks (headings, paragraphs, list items, table rows, notes) become text a voice reads, and chapters.

Knows no file format and opens nothing: readers of each format call it; the text never holds Markdown symbols.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pipeline.errors import DocumentError
from pipeline.models import Chapter

MAX_TEXT_CHARS = 20 * 1024 * 1024  # the most text one document may give (a PDF's too: extract reads it here)
SEPARATOR = "\n\n"
_SPACES = re.compile(r"\s+")
# A block ending in one of these already makes the voice pause; any other gets a full stop.
_CLOSING = (".", "!", "?", ":", ";", "…", "。", "！", "？", '"', "'", "”", "’", ")", "»")
FRONT_MATTER_TITLE = "Opening"


def one_line(text: str) -> str:
    """Runs of whitespace (line breaks inside a paragraph included) as one space."""
    return _SPACES.sub(" ", text).strip()


def closed(text: str) -> str:
    """A heading, list item or table row ends like a sentence, so it is not read into the next."""
    return text if not text or text.endswith(_CLOSING) else text + "."


class SpokenText:
    """Blocks in reading order; chapters start where chapter() or a heading of a chapter level is met."""

    def __init__(self, *, chapter_levels: int = 2, max_chars: int = MAX_TEXT_CHARS) -> None:
        self._parts: list[str] = []
        self._length = 0
        self._starts: list[tuple[str, int]] = []
        self._notes: list[str] = []
        self._chapter_levels = chapter_levels
        self._max_chars = max_chars

    @property
    def position(self) -> int:
        """Where the next block will start in the text."""
        return self._length + (len(SEPARATOR) if self._parts else 0)

    def _add(self, block: str) -> None:
        if not block:
            return
        self._length = self.position + len(block)
        if self._length > self._max_chars:
            raise DocumentError(f"document text is over the {self._max_chars}-character limit")
        self._parts.append(block)

    def chapter(self, title: str, at: int | None = None) -> None:
        """A chapter starts at `at` (default: the next block); its title is read from the table of contents."""
        title = one_line(title)
        if title:
            self._starts.append((title, self.position if at is None else at))

    def heading(self, text: str, level: int) -> None:
        text = one_line(text)
        if not text:
            return
        if 1 <= level <= self._chapter_levels:
            self.end_section()  # the notes of the chapter before are read before this one starts
            self.chapter(text)
        self._add(closed(text))

    def paragraph(self, text: str) -> None:
        self._add(one_line(text))

    def item(self, text: str, *, number: int | None = None) -> None:
        """A list item: a sentence of its own; numbered lists keep their numbers, bullets are not spoken."""
        text = one_line(text)
        if text:
            self._add(closed(f"{number}. {text}" if number is not None else text))

    def table(self, rows: Sequence[Sequence[str]]) -> None:
        """Rows as sentences: "Header: cell; Header: cell." when the first row reads as a header row."""
        cells = [[one_line(cell) for cell in row] for row in rows]
        cells = [row for row in cells if any(row)]
        if not cells:
            return
        header = cells[0] if len(cells) > 1 and len(cells[0]) > 1 and all(cells[0]) else None
        for row in cells[1:] if header else cells:
            if header and len(row) == len(header):
                line = "; ".join(f"{name}: {cell}" for name, cell in zip(header, row) if cell)
            else:
                line = "; ".join(cell for cell in row if cell)
            self._add(closed(line))

    def note(self, text: str) -> None:
        """A footnote or endnote: kept out of the sentence that cites it, read at the end of the section."""
        text = one_line(text)
        if text:
            self._notes.append(text)

    def end_section(self) -> None:
        """Read the notes gathered so far, after the section that cited them."""
        if self._notes:
            self._add("Notes.")
            for number, text in enumerate(self._notes, start=1):
                self._add(closed(f"Note {number}: {text}"))
            self._notes.clear()

    def result(self, title: str | None = None) -> tuple[str, tuple[Chapter, ...]]:
        """The text, and its chapters when it has at least two (text before the first is its own, the opening)."""
        self.end_section()
        text = SEPARATOR.join(self._parts)
        return text, chapters_from_starts(text, self._starts, front_title=title or FRONT_MATTER_TITLE)


def chapters_from_starts(text: str, starts: Sequence[tuple[str, int]], *,
                         front_title: str = FRONT_MATTER_TITLE) -> tuple[Chapter, ...]:
    """Chapters from (title, start) marks: each runs to the next mark (trailing whitespace left out); a mark
    that starts no text is dropped; text before the first mark is a chapter titled front_title."""
    marks: dict[int, str] = {}
    for title, start in starts:
        if 0 <= start < len(text):
            marks.setdefault(start, title)  # two marks at one place: the first (the outer TOC entry) names it
    ordered = sorted(marks.items())
    if ordered and text[:ordered[0][0]].strip():
        ordered.insert(0, (0, front_title))
    chapters: list[Chapter] = []
    for index, (start, title) in enumerate(ordered):
        end = ordered[index + 1][0] if index + 1 < len(ordered) else len(text)
        while end > start and text[end - 1].isspace():
            end -= 1
        while start < end and text[start].isspace():
            start += 1
        if end > start:
            chapters.append(Chapter(title=title, start=start, end=end))
    return tuple(chapters) if len(chapters) >= 2 else ()


def shifted(chapters: tuple[Chapter, ...], by: int, length: int) -> tuple[Chapter, ...]:
    """Chapters moved `by` characters back (the text lost that much at its start), kept inside `length`."""
    moved = tuple(Chapter(c.title, max(0, c.start - by), min(length, c.end - by)) for c in chapters)
    return tuple(c for c in moved if c.end > c.start)
