"""An (X)HTML element tree read into SpokenText: headings, paragraphs, lists and tables in reading order.

Walks a tree already parsed; it parses nothing, and page numbers and note markers never reach the text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from pipeline.sources.blocks import SpokenText

_OPS = "http://www.idpf.org/2007/ops"
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_BLOCKS = frozenset({"address", "article", "aside", "blockquote", "body", "caption", "dd", "details", "div", "dl",
                     "dt", "figcaption", "figure", "footer", "header", "hr", "li", "main", "nav", "ol", "p", "pre",
                     "section", "table", "ul", "html", "summary", "hgroup"} | set(_HEADINGS))
_HIDDEN = frozenset({"head", "script", "style", "template", "noscript", "svg", "math", "object", "iframe", "rt",
                     "rp"})
_NOTE_TYPES = frozenset({"footnote", "endnote", "rearnote", "note", "doc-footnote", "doc-endnote"})
_FURNITURE_TYPES = frozenset({"pagebreak", "doc-pagebreak", "noteref", "doc-noteref", "biblioref", "glossref"})


def local(tag: object) -> str:
    """An element's name without its namespace, lower case ("" for comments and processing instructions)."""
    return tag.rsplit("}", 1)[-1].lower() if isinstance(tag, str) else ""


def _types(element: Any) -> set[str]:
    raw = f"{element.get(f'{{{_OPS}}}type') or element.get('epub:type') or ''} {element.get('role') or ''}"
    return set(raw.lower().split())


def _is_furniture(element: Any) -> bool:
    """A page-number marker or a note reference: read, it would break the sentence it sits in."""
    return bool(_types(element) & _FURNITURE_TYPES)


def _is_note(element: Any) -> bool:
    return bool(_types(element) & _NOTE_TYPES) and local(element.tag) in ("aside", "div", "section", "li", "p")


def inline_text(element: Any) -> str:
    """The text of an element as read inline: hidden parts and furniture left out, a line break a space."""
    parts: list[str] = []

    def visit(node: Any, top: bool = False) -> None:
        name = local(node.tag)
        if name and name not in _HIDDEN and (top or not (_is_furniture(node) or _is_note(node))):
            if name == "br":
                parts.append(" ")
            parts.append(node.text or "")
            for child in node:
                visit(child)
                parts.append(child.tail or "")

    visit(element, top=True)
    return "".join(parts)


class XhtmlReader:
    """Feeds SpokenText from a tree; `on_id(id)` is told each element id as its block is reached (for TOC links)."""

    def __init__(self, out: SpokenText, on_id: Callable[[str], None] | None = None) -> None:
        self.out = out
        self._on_id = on_id or (lambda _id: None)

    def read(self, root: Any) -> None:
        bodies = [el for el in root.iter() if local(el.tag) == "body"]
        self._container(bodies[0] if bodies else root)

    def _ids(self, element: Any) -> None:
        for node in element.iter():
            if isinstance(node.tag, str) and node.get("id"):
                self._on_id(node.get("id"))

    def _block(self, element: Any) -> None:
        name = local(element.tag)
        if not name or name in _HIDDEN or _is_furniture(element):
            return
        if _is_note(element):
            self._ids(element)
            self.out.note(inline_text(element))
            return
        if name in _HEADINGS:
            self._ids(element)
            self.out.heading(inline_text(element), _HEADINGS[name])
        elif name in ("ul", "ol"):
            self._list(element, numbered=name == "ol")
        elif name == "table":
            self._ids(element)
            self.out.table([[inline_text(cell) for cell in row if local(cell.tag) in ("td", "th")]
                            for row in element.iter() if local(row.tag) == "tr"])
        else:
            self._container(element)

    def _list(self, element: Any, *, numbered: bool) -> None:
        start = element.get("start")
        number = int(start) if start and start.lstrip("-").isdigit() else 1
        for item in element:
            if local(item.tag) != "li":
                continue
            self._container(item, item_number=number if numbered else 0)
            number += 1

    def _container(self, element: Any, *, item_number: int | None = None) -> None:
        """Text runs between block children become paragraphs (or, in a list item, the item itself)."""
        run: list[str] = [element.text or ""]
        if element.get("id"):
            self._on_id(element.get("id"))

        def flush() -> None:
            nonlocal item_number
            text = "".join(run)
            run.clear()
            if not text.strip():
                return
            if item_number is not None:
                self.out.item(text, number=item_number or None)
                item_number = None  # the item's later runs are its own paragraphs
            else:
                self.out.paragraph(text)

        for child in element:
            name = local(child.tag)
            if name in _BLOCKS or _is_note(child):
                flush()
                self._block(child)
            elif name and name not in _HIDDEN and not _is_furniture(child):
                for node in _with_ids(child):
                    self._on_id(node)
                run.append(inline_text(child))
            run.append(child.tail or "")
        flush()


def _with_ids(element: Any) -> Iterator[str]:
    for node in element.iter():
        if isinstance(node.tag, str) and node.get("id"):
            yield node.get("id")
