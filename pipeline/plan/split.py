"""Long texts in parts: as few as fit a token budget (map/reduce summaries), and narration parts with their chapter
labels.

Pure text functions; they send nothing and read no files.
"""

from __future__ import annotations

import re

from pipeline.errors import DocumentError

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


def chapter_label(part: str) -> str:
    """A part's first line, shortened: what a chapter marker shows."""
    first = part.strip().splitlines()[0].lstrip("#").strip() if part.strip() else ""
    return first if len(first) <= 80 else first[:77].rstrip() + "\u2026"
