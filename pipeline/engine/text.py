"""Document text (plain or Markdown) → clean, speakable sentences.

Strips markup, code and URLs so nothing unspeakable reaches the voice; never summarises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sentencex
from markdown_it import MarkdownIt

_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_LEFTOVER_MARKUP = re.compile(r"[*_`#|<>\[\]{}~^]+")
_SPACES = re.compile(r"\s+")
_TERMINAL = (".", "!", "?", ":", ";", "…")
_MAX_HEADING_WORDS = 14

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


def _blocks(text: str) -> list[tuple[str, bool]]:
    """(block text, is_heading) in reading order; code blocks and HTML are dropped."""
    blocks: list[tuple[str, bool]] = []
    heading = False
    for token in _markdown.parse(text):
        if token.type == "heading_open":
            heading = True
        elif token.type == "heading_close":
            heading = False
        elif token.type == "inline":
            parts: list[str] = []
            for child in token.children or []:
                if child.type in ("text", "code_inline"):
                    parts.append(child.content)
                elif child.type in ("softbreak", "hardbreak"):
                    parts.append("\n")
                elif child.type == "image":
                    parts.append(child.content)
            blocks.append(("".join(parts), heading))
    return blocks


def sentences(text: str) -> list[Sentence]:
    """Speakable sentences of a document, headings marked so a summary can skip them."""
    out: list[Sentence] = []
    for block, is_heading in _blocks(text):
        lines = block.split("\n")
        pending: list[str] = []

        def flush() -> None:
            if pending:
                for piece in sentencex.segment("en", " ".join(pending)):
                    clean = speakable(piece)
                    if clean and any(ch.isalnum() for ch in clean):
                        out.append(Sentence(len(out), clean, False))
                pending.clear()

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
