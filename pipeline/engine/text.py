"""Document text (plain or Markdown) → clean, speakable sentences.

Strips markup, code and URLs so nothing unspeakable reaches the voice; never summarises. Linear in the text:
a long text is parsed in pieces cut where a fresh parse reads the same blocks, since markdown-it holds a token
for every block of what it is given.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import sentencex
from markdown_it import MarkdownIt
from markdown_it.token import Token

_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_LEFTOVER_MARKUP = re.compile(r"[*_`#|<>\[\]{}~^]+")
_SPACES = re.compile(r"\s+")
_TERMINAL = (".", "!", "?", ":", ";", "…")
_MAX_HEADING_WORDS = 14
# Up to this many characters are parsed at once: normal documents in one piece, exactly as a whole.
_PIECE_CHARS = 128 * 1024
# Past this many characters or lines, a piece is cut wherever it stands (see _Cutter.may_cut_before):
# pathological input only. markdown-it's tokens grow with lines as much as with characters (a 512 KB list of
# two-letter items took 200 MB to parse), hence the line budget.
_FORCED_CHARS = 4 * _PIECE_CHARS
_FORCED_LINES = _PIECE_CHARS // 8
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
# CommonMark HTML blocks 1-5 run to a terminator, across blank lines; (opening line, terminator).
_HTML_BLOCKS = (
    (re.compile(r" {0,3}<(?:script|pre|style|textarea)(?:[\s>]|$)", re.IGNORECASE),
     re.compile(r"</(?:script|pre|style|textarea)>", re.IGNORECASE)),
    (re.compile(r" {0,3}<!--"), re.compile(r"-->")),
    (re.compile(r" {0,3}<\?"), re.compile(r"\?>")),
    (re.compile(r" {0,3}<![A-Za-z]"), re.compile(r">")),
    (re.compile(r" {0,3}<!\[CDATA\["), re.compile(r"\]\]>")),
)

_TABLE_DELIMITER = re.compile(r" {0,3}\|?\s*:?-+:?\s*(?:\|\s*:?-+:?\s*)*\|?\s*$")
_SETEXT = re.compile(r" {0,3}(?:=+|-+)\s*$")  # a cut before it would unmake the heading above

_markdown = MarkdownIt("commonmark").enable("table")


@dataclass(frozen=True, slots=True)
class Sentence:
    index: int
    text: str
    is_heading: bool


def speakable(text: str) -> str:
    """One line of text with URLs and stray markup removed and whitespace collapsed."""
    text = _URL.sub("", text)
    text = _LEFTOVER_MARKUP.sub(" ", text)
    text = _SPACES.sub(" ", text).strip()
    return re.sub(r"\s+([,.;:!?])", r"\1", text)


def _block_closer(line: str) -> tuple[re.Pattern[str], str] | None:
    """For a line opening fenced code or an HTML block that a blank line does not end: what ends it, and a
    short line that opens the same kind of block again (for a piece cut inside it)."""
    if line.lstrip(" ")[:1] not in ("`", "~", "<"):
        return None  # most lines: no regex at all
    if fence := _FENCE.match(line):
        mark = fence.group(1)
        return re.compile(rf"^ {{0,3}}{re.escape(mark[0])}{{{len(mark)},}}\s*$"), mark + "\n"
    for opening, terminator in _HTML_BLOCKS:
        if opened := opening.match(line):
            return None if terminator.search(line, opened.end()) else (terminator, opened.group(0).strip() + "\n")
    return None


@dataclass(frozen=True, slots=True)
class _Piece:
    text: str
    repeats_table_header: bool  # the piece starts with the header rows of a table cut in two: skip them
    carried: str = ""  # what the piece starts with that is not its own text (a table header, an opening line)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" ")) + (4 if line.lstrip(" ")[:1] == "\t" else 0)


@dataclass(slots=True)
class _Cutter:
    """Where a long text may be cut so each piece parses as it would in the whole.

    Preferred: before an unindented line after a blank line, outside fenced code and HTML blocks (every block
    has ended there). A piece with no such place for twice _PIECE_CHARS (a huge list, table or paragraph) is
    cut before any unindented line instead: a list goes on as a second list, a table as a second table under
    its repeated header, a paragraph as a second paragraph (one sentence may break there).

    Forced: a piece that reaches _FORCED_CHARS or _FORCED_LINES with neither (a list or table indented by a space, a
    fence or
    HTML comment never closed, a run of rules or setext underlines, one huge line) is cut before the next line
    that cannot read as indented code, and past _FORCED_CHARS + _PIECE_CHARS before any line at all. This is
    pathological input, and bounded memory wins over fidelity there: an item may come out of its list, a
    nested list may go on shallower or (past the second limit) as dropped code, a sentence may break. Fenced
    code and HTML blocks are opened again at the top of the next piece (and tables get their header again),
    so what was hidden stays hidden.
    """

    closer: re.Pattern[str] | None = None
    reopen: str = ""  # a line that opens the block `closer` ends again
    table_header: str = ""
    previous: str = ""

    def may_cut_before(self, line: str, length: int, lines: int = 0, *, starts_line: bool = True) -> bool:
        if not starts_line:  # a part of one huge line, markup all through it: the inline tokens add up too
            return length >= 2 * _PIECE_CHARS
        forced = length >= _FORCED_CHARS or lines >= _FORCED_LINES
        if length >= _FORCED_CHARS + _PIECE_CHARS or lines >= 2 * _FORCED_LINES or (forced and _indent(line) < 4):
            return True
        if self.closer is not None or length < _PIECE_CHARS or line[:1].isspace() or _SETEXT.match(line):
            return False
        return not self.previous.strip() or length >= 2 * _PIECE_CHARS

    @property
    def carried(self) -> str:
        """What the next piece must start with to read on as this one would: the open block or table header."""
        return self.reopen if self.closer is not None else self.table_header

    def read(self, line: str, *, starts_line: bool = True) -> None:
        if self.closer is not None:
            # a fence's closer is a whole line; an HTML terminator may stand anywhere, even in a long line's tail
            if (starts_line or not self.closer.pattern.startswith("^")) and self.closer.search(line):
                self.closer, self.reopen = None, ""
        elif not starts_line:
            return  # the tail of a long line: no block starts there
        elif not line.strip():
            self.table_header = ""
        else:
            self.closer, self.reopen = _block_closer(line) or (None, "")
            if not self.table_header and "|" in self.previous and _TABLE_DELIMITER.match(line):
                self.table_header = self.previous + line
        self.previous = line


def _lines(text: str) -> Iterator[tuple[int, str, bool]]:
    """(offset, line with its newline, whether it starts a line), without a list of every line. A line longer
    than _PIECE_CHARS comes in parts, each ending after a sentence's end or a space where there is one."""
    position, starts_line = 0, True
    while position < len(text):
        limit = position + _PIECE_CHARS
        end = text.find("\n", position, limit)
        if end >= 0:
            end += 1
        elif limit >= len(text):
            end = len(text)
        else:
            end = limit
            for mark in (". ", " "):
                found = text.rfind(mark, position + _PIECE_CHARS // 2, limit)
                if found >= 0:
                    end = found + len(mark)
                    break
        yield position, text[position:end], starts_line
        starts_line = text[end - 1] == "\n"
        position = end


def _normalise_newlines(text: str) -> str:
    """\r\n and a lone \r as \n, as markdown-it reads them, so the cutter sees the same lines the parser does."""
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def _pieces(text: str) -> Iterator[_Piece]:
    """The text in pieces of about _PIECE_CHARS (the whole, for a normal document), cut where _Cutter allows.
    A link reference defined in a later piece than its use reads as its label."""
    if len(text) <= _PIECE_CHARS:
        yield _Piece(text, False)
        return
    text = _normalise_newlines(text)
    cutter = _Cutter()
    start, carried, header, lines = 0, "", False, 0
    for offset, line, starts_line in _lines(text):
        if cutter.may_cut_before(line, offset - start, lines, starts_line=starts_line):
            yield _Piece(carried + text[start:offset], header, carried)
            start, carried, header = offset, cutter.carried, cutter.closer is None and bool(cutter.table_header)
            lines = 0
        cutter.read(line, starts_line=starts_line)
        lines += 1
    yield _Piece(carried + text[start:], header, carried)


def _blocks(text: str) -> Iterator[tuple[str, bool]]:
    """(block text, is_heading) in reading order; code blocks and HTML are dropped."""
    env: dict[str, object] = {}  # shared, so a link reference defined in an earlier piece still resolves
    for piece in _pieces(text):
        yield from _piece_blocks(_markdown.parse(piece.text, env), piece.repeats_table_header)


def _piece_blocks(tokens: list[Token], repeats_table_header: bool) -> Iterator[tuple[str, bool]]:
    heading = False
    skipping = False
    for token in tokens:
        if token.type == "heading_open":
            heading = True
        elif token.type == "heading_close":
            heading = False
        elif token.type == "thead_open" and repeats_table_header:
            skipping, repeats_table_header = True, False  # said once already, with the first piece
        elif token.type == "thead_close":
            skipping = False
        elif token.type == "inline" and not skipping:
            yield _inline_text(token), heading


def _inline_text(token: Token) -> str:
    parts: list[str] = []
    for child in token.children or []:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append("\n")
        elif child.type == "image":
            parts.append(child.content)
    return "".join(parts)


def sentences(text: str) -> list[Sentence]:
    """Speakable sentences of a document, headings marked so a summary can skip them."""
    out: list[Sentence] = []
    for block, is_heading in _blocks(text):
        lines = block.split("\n")
        pending: list[str] = []

        def flush() -> None:  # called within the iteration that made `pending`
            if pending:  # noqa: B023
                for piece in sentencex.segment("en", " ".join(pending)):  # noqa: B023
                    clean = speakable(piece)
                    if clean and any(ch.isalnum() for ch in clean):
                        out.append(Sentence(len(out), clean, False))
                pending.clear()  # noqa: B023

        for position, line in enumerate(lines):
            stripped = line.strip()
            if not stripped:
                continue
            # A short line with no closing punctuation, followed by more text, reads as a title line.
            title_line = (not pending and (position < len(lines) - 1 or len(out) == 0)
                          and len(stripped.split()) <= _MAX_HEADING_WORDS
                          and not stripped.endswith(_TERMINAL + (",",)))
            if is_heading or title_line:
                flush()
                clean = speakable(stripped)
                if clean and any(ch.isalnum() for ch in clean):
                    out.append(Sentence(len(out), clean, True))
            else:
                pending.append(stripped)
        flush()
    return out


def as_spoken_sentence(text: str) -> str:
    """A heading or fragment made to end like a sentence, so the voice pauses after it."""
    return text if text.endswith(_TERMINAL) else text + "."
