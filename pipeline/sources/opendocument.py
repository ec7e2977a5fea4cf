"""An OpenDocument text (.odt) becomes text a voice reads (odfpy), its outline levels 1 and 2 its chapters.

Must not read page furniture nor let a footnote interrupt its sentence; entities and bombs raise DocumentError.
"""

from __future__ import annotations

import io
from typing import Any

from pipeline.errors import DocumentError, first_line
from pipeline.sources.blocks import SpokenText
from pipeline.sources.office import Read, core_meta
from pipeline.sources.packages import Package

WHAT = "OpenDocument text (.odt)"
SUFFIXES = frozenset({".odt"})
_TEXT = "urn:oasis:names:tc:opendocument:xmlns:text:1.0"
_TABLE = "urn:oasis:names:tc:opendocument:xmlns:table:1.0"
_STYLE = "urn:oasis:names:tc:opendocument:xmlns:style:1.0"
_DC = "http://purl.org/dc/elements/1.1/"
_META = "urn:oasis:names:tc:opendocument:xmlns:meta:1.0"
_SKIPPED = frozenset({"note-citation", "bookmark", "bookmark-start", "bookmark-end", "soft-page-break",
                      "page-number", "page-count", "sequence-decls", "tracked-changes", "variable-decls",
                      "user-field-decls", "alphabetical-index", "table-of-content", "illustration-index"})


def odt_text(data: bytes) -> Read:
    Package(data, WHAT).check_xml()
    from odf.opendocument import load

    try:
        document = load(io.BytesIO(data))
        reader = _Reader(_numbered_list_styles(document))
        reader.block(document.text)
        meta = core_meta(title=_meta_text(document, _DC, "title"),
                         author=_meta_text(document, _DC, "creator") or _meta_text(document, _META,
                                                                                     "initial-creator"),
                         language=_meta_text(document, _DC, "language"))
    except DocumentError:
        raise
    except Exception as exc:  # odfpy raises KeyError, zipfile and SAX errors for damaged packages
        raise DocumentError(f"damaged {WHAT} ({type(exc).__name__}: {first_line(exc)})") from exc
    title = meta.pop("title", None)
    text, chapters = reader.out.result(title)
    return Read(text=text, chapters=chapters, title=title, meta={"kind": "odt", "extraction": "odfpy", **meta})


def _name(node: Any) -> tuple[str, str]:
    return getattr(node, "qname", ("", "")) or ("", "")


def _attr(node: Any, namespace: str, name: str) -> str | None:
    value = node.attributes.get((namespace, name)) if hasattr(node, "attributes") else None
    return str(value) if value is not None else None


def _meta_text(document: Any, namespace: str, name: str) -> str | None:
    for node in document.meta.childNodes:
        if _name(node) == (namespace, name):
            return _inline(node)
    return None


def _numbered_list_styles(document: Any) -> set[str]:
    """Names of list styles whose first level is numbered (text:list-level-style-number)."""
    names: set[str] = set()
    for styles in (document.automaticstyles, document.styles):
        for style in styles.childNodes:
            if _name(style) == (_TEXT, "list-style"):
                levels = [child for child in style.childNodes if _name(child)[0] == _TEXT]
                if levels and _name(levels[0])[1] == "list-level-style-number":
                    names.add(_attr(style, _STYLE, "name") or "")
    return names


def _inline(node: Any, notes: list[str] | None = None) -> str:
    """Text of a paragraph or heading: spaces and tabs as spaces, notes set aside (into `notes`)."""
    parts: list[str] = []
    for child in node.childNodes:
        if child.nodeType == child.TEXT_NODE:
            parts.append(str(child.data))
            continue
        namespace, name = _name(child)
        if namespace == _TEXT and name in ("s", "tab", "line-break"):
            parts.append(" ")
        elif namespace == _TEXT and name == "note":
            if notes is not None:
                body = next((c for c in child.childNodes if _name(c) == (_TEXT, "note-body")), None)
                if body is not None:
                    notes.append(" ".join(_inline(p) for p in body.childNodes if _name(p)[0] == _TEXT))
        elif not (namespace == _TEXT and name in _SKIPPED):
            parts.append(_inline(child, notes))
    return "".join(parts)


class _Reader:
    def __init__(self, numbered_styles: set[str]) -> None:
        self.out = SpokenText(chapter_levels=2)
        self._numbered = numbered_styles

    def _text(self, node: Any) -> str:
        notes: list[str] = []
        text = _inline(node, notes)
        for note in notes:
            self.out.note(note)
        return text

    def block(self, node: Any) -> None:
        for child in node.childNodes:
            self.one(child)

    def one(self, child: Any) -> None:
        """One element of the body, in reading order."""
        namespace, name = _name(child)
        if namespace == _TEXT and name == "h":
            level = _attr(child, _TEXT, "outline-level") or "1"
            text = self._text(child)
            self.out.heading(text, int(level) if level.isdigit() else 1)
        elif namespace == _TEXT and name == "p":
            self.out.paragraph(self._text(child))
        elif namespace == _TEXT and name == "list":
            self._list(child, numbered=(_attr(child, _TEXT, "style-name") or "") in self._numbered)
        elif namespace == _TABLE and name == "table":
            self.out.table([[_inline(cell) for cell in row.childNodes if _name(cell) == (_TABLE, "table-cell")]
                            for row in _rows(child)])
        elif namespace == _TEXT and name in _SKIPPED:
            return
        elif hasattr(child, "childNodes") and child.nodeType != child.TEXT_NODE:
            self.block(child)  # sections, frames' text boxes, table headers: their paragraphs in order

    def _list(self, node: Any, *, numbered: bool) -> None:
        number = 0
        for item in node.childNodes:
            if _name(item) not in ((_TEXT, "list-item"), (_TEXT, "list-header")):
                continue
            number += 1
            first = True
            for child in item.childNodes:
                namespace, name = _name(child)
                if first and namespace == _TEXT and name in ("p", "h"):
                    self.out.item(self._text(child), number=number if numbered else None)
                    first = False
                elif namespace == _TEXT and name == "list":
                    self._list(child, numbered=numbered)
                else:
                    self.one(child)


def _rows(table: Any) -> list[Any]:
    rows: list[Any] = []
    for child in table.childNodes:
        namespace, name = _name(child)
        if (namespace, name) == (_TABLE, "table-row"):
            rows.append(child)
        elif namespace == _TABLE and name in ("table-header-rows", "table-rows", "table-row-group"):
            rows.extend(_rows(child))
    return rows
