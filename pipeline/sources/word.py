"""A Word document (.docx) becomes text a voice reads (python-docx), its Heading 1/2 paragraphs its chapters.

Must not read headers, footers or page numbers, nor let a footnote interrupt its sentence; bad files raise.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Any

from pipeline.errors import DocumentError, first_line
from pipeline.sources.blocks import SpokenText
from pipeline.sources.office import Read, core_meta
from pipeline.sources.packages import Package

WHAT = "Word document (.docx)"
SUFFIXES = frozenset({".docx"})
_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
_HEADING = re.compile(r"heading\s*(\d)", re.I)


def docx_text(data: bytes) -> Read:
    Package(data, WHAT).check_xml()
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    try:
        document = docx.Document(io.BytesIO(data))
        notes = _footnotes(document)
        numbering = _NumberFormats(document)
        out = SpokenText(chapter_levels=2)
        title_paragraph: str | None = None
        for block in document.iter_inner_content():
            if isinstance(block, Table):
                out.table(_rows(block))
                continue
            assert isinstance(block, Paragraph)
            style = (block.style.name if block.style is not None else "") or ""
            text = block.text
            for reference in block._p.iter(f"{{{_W}}}footnoteReference"):
                out.note(notes.get(reference.get(f"{{{_W}}}id") or "", ""))
            if (match := _HEADING.fullmatch(style.strip())) is not None:
                out.heading(text, int(match.group(1)))
            elif style.strip().lower() == "title":
                title_paragraph = title_paragraph or text.strip() or None
                out.heading(text, 0)
            elif (item := numbering.item(block, style)) is not None:
                out.item(text, number=item.number)
            else:
                out.paragraph(text)
        core = document.core_properties
        meta = core_meta(title=core.title, author=core.author, language=core.language)
    except DocumentError:
        raise
    except Exception as exc:  # python-docx raises KeyError, ValueError, lxml errors for damaged packages
        raise DocumentError(f"damaged {WHAT} ({type(exc).__name__}: {first_line(exc)})") from exc
    title = meta.pop("title", None) or title_paragraph
    text, chapters = out.result(title)
    return Read(text=text, chapters=chapters, title=title, meta={"kind": "docx", "extraction": "python-docx",
                                                                  **meta})


def _rows(table: Any) -> list[list[str]]:
    rows = []
    for row in table.rows:
        cells, seen = [], set()
        for cell in row.cells:  # a merged cell is listed once per grid column it spans
            if id(cell._tc) not in seen:
                seen.add(id(cell._tc))
                cells.append(cell.text)
        rows.append(cells)
    return rows


def _footnotes(document: Any) -> dict[str, str]:
    """Footnote id -> text, from word/footnotes.xml when the document has one."""
    for part in document.part.package.iter_parts():
        if str(part.partname) == "/word/footnotes.xml":
            from pipeline.sources.xmlguard import parse_xml

            root = parse_xml(part.blob, f"the {WHAT}'s footnotes")
            return {note.get(f"{{{_W}}}id") or "": "".join(t.text or "" for t in note.iter(f"{{{_W}}}t"))
                    for note in root.iter(f"{{{_W}}}footnote")}
    return {}


@dataclass(frozen=True, slots=True)
class _Item:
    number: int | None  # None: a bullet


class _NumberFormats:
    """Which list paragraphs are numbered (and their running numbers) and which are bullets."""

    def __init__(self, document: Any) -> None:
        self._formats: dict[tuple[str, str], str] = {}
        self._counters: dict[tuple[str, str], int] = {}
        try:
            root = document.part.numbering_part.element
        except (KeyError, NotImplementedError, AttributeError):
            return
        abstract = {el.get(f"{{{_W}}}abstractNumId"): el for el in root.iter(f"{{{_W}}}abstractNum")}
        for num in root.iter(f"{{{_W}}}num"):
            ref = num.find(f"{{{_W}}}abstractNumId")
            definition = abstract.get(ref.get(f"{{{_W}}}val") if ref is not None else None)
            if definition is None:
                continue
            for level in definition.iter(f"{{{_W}}}lvl"):
                fmt = level.find(f"{{{_W}}}numFmt")
                self._formats[(num.get(f"{{{_W}}}numId") or "", level.get(f"{{{_W}}}ilvl") or "0")] = (
                    fmt.get(f"{{{_W}}}val") if fmt is not None else "bullet") or "bullet"

    def item(self, paragraph: Any, style: str) -> _Item | None:
        """The paragraph as a list item (numbered or a bullet), or None when it is not one."""
        props = paragraph._p.pPr
        num_pr = props.numPr if props is not None else None
        if num_pr is not None and num_pr.numId is not None:
            key = (str(num_pr.numId.val), str(num_pr.ilvl.val if num_pr.ilvl is not None else 0))
            if key[0] == "0":  # numId 0: numbering switched off for this paragraph
                return None
            if self._formats.get(key, "bullet") in ("bullet", "none"):
                return _Item(None)
            self._counters[key] = self._counters.get(key, 0) + 1
            return _Item(self._counters[key])
        lowered = style.lower()
        if lowered.startswith("list number"):
            self._counters[("style", lowered)] = self._counters.get(("style", lowered), 0) + 1
            return _Item(self._counters[("style", lowered)])
        if lowered.startswith(("list bullet", "list paragraph")):
            return _Item(None)
        return None
