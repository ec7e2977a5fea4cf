"""An EPUB (2 or 3) becomes text a voice reads, its chapters from the table of contents (else the spine), and meta.

Must not write anything (the cover is only recorded) nor read a DRM-protected, damaged or bomb-like book.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.errors import DocumentError
from pipeline.sources.blocks import SpokenText, chapters_from_starts, one_line
from pipeline.sources.office import Read
from pipeline.sources.packages import Package, member_path
from pipeline.sources.xhtml import XhtmlReader, inline_text, local
from pipeline.sources.xmlguard import parse_xhtml, parse_xml

WHAT = "EPUB"
SUFFIXES = frozenset({".epub"})
TOC_DEPTH = 2  # parts and their chapters; deeper entries (sections) stay inside their chapter
_OPF = "http://www.idpf.org/2007/opf"
_DC = "http://purl.org/dc/elements/1.1/"
_NCX = "http://www.daisy.org/z3986/2005/ncx/"
_OPS = "http://www.idpf.org/2007/ops"
_CONTAINER = "urn:oasis:names:tc:opendocument:xmlns:container"
_PAGES = frozenset({"application/xhtml+xml", "text/html", "application/x-dtbook+xml"})
# Font obfuscation (IDPF and Adobe) lists fonts in encryption.xml; it hides no text, so it is not DRM.
_FONT_MANGLING = frozenset({"http://www.idpf.org/2008/embedding", "http://ns.adobe.com/pdf/enc#RC"})


@dataclass(frozen=True, slots=True)
class _Item:
    path: str
    media_type: str
    properties: frozenset[str]


def epub_text(data: bytes) -> Read:
    package = Package(data, WHAT)
    _refuse_drm(package)
    opf_path = _rootfile(package)
    opf = parse_xml(package.read(opf_path), f"the {WHAT}'s package file")
    items = {item.get("id"): _Item(member_path(opf_path, item.get("href") or ""), item.get("media-type") or "",
                                   frozenset((item.get("properties") or "").split()))
             for item in opf.iter(f"{{{_OPF}}}item") if item.get("id") and item.get("href")}
    spine = opf.find(f"{{{_OPF}}}spine")
    if spine is None:
        raise DocumentError(f"damaged {WHAT}: its package file has no spine (reading order)")
    pages = [items[ref.get("idref")].path for ref in spine.iter(f"{{{_OPF}}}itemref")
             if ref.get("idref") in items and items[ref.get("idref")].media_type in _PAGES
             and ref.get("linear") != "no" and package.has(items[ref.get("idref")].path)]
    if not pages:
        raise DocumentError(f"damaged {WHAT}: its spine names no readable page")
    toc = _toc(package, opf, items, spine)
    wanted: dict[str, set[str]] = {}
    for _title, page, fragment in toc:
        wanted.setdefault(page, set()).add(fragment)

    out = SpokenText(chapter_levels=0)  # chapters come from the table of contents, not from headings
    page_starts: dict[str, int] = {}
    anchors: dict[tuple[str, str], int] = {}
    first_headings: dict[str, str] = {}
    for page in pages:
        root = parse_xhtml(package.read(page), f"{page!r} in the {WHAT}")
        page_starts[page] = out.position
        targets = wanted.get(page, set())

        def seen(element_id: str, page: str = page, targets: set[str] = targets) -> None:
            if element_id in targets:
                anchors.setdefault((page, element_id), out.position)

        heading = next((inline_text(el) for el in root.iter() if local(el.tag) in ("h1", "h2", "h3")), "")
        title = next((inline_text(el) for el in root.iter() if local(el.tag) == "title"), "")
        first_headings[page] = one_line(heading) or one_line(title)
        XhtmlReader(out, on_id=seen).read(root)
        out.end_section()  # a page's notes are read at its end

    starts = [(title or f"Chapter {number}",
               anchors.get((page, fragment), page_starts[page]) if fragment else page_starts[page])
              for number, (title, page, fragment) in enumerate(toc, start=1) if page in page_starts]
    if not starts:  # no usable table of contents: the spine is the structure
        starts = [(first_headings[page] or f"Part {number}", page_starts[page])
                  for number, page in enumerate(pages, start=1)]
    book_title = _first(opf, "title")
    text, _ = out.result()
    if not text.strip():
        raise DocumentError(f"no text in the {WHAT} (a book of images only?)")
    meta = {"kind": "epub", "extraction": "zipfile+lxml", "epub_version": opf.get("version") or "unknown"}
    creators = [one_line(el.text or "") for el in opf.iter(f"{{{_DC}}}creator") if (el.text or "").strip()]
    if creators:
        meta["author"] = ", ".join(creators)
    if language := _first(opf, "language"):
        meta["language"] = language
    cover = _cover(opf, items)
    if cover is not None and package.has(cover.path):
        meta["cover"] = cover.path
        meta["cover_media_type"] = cover.media_type
    return Read(text=text, chapters=chapters_from_starts(text, starts, front_title=book_title or "Opening"),
                title=book_title, meta=meta)


def _first(opf: Any, name: str) -> str | None:
    for element in opf.iter(f"{{{_DC}}}{name}"):
        if text := one_line(element.text or ""):
            return text
    return None


def _refuse_drm(package: Package) -> None:
    """Adobe ADEPT and other DRM leave rights.xml, or encrypt pages (not just fonts) in encryption.xml."""
    if package.has("META-INF/rights.xml"):
        raise DocumentError(f"the {WHAT} is DRM-protected (META-INF/rights.xml); only DRM-free books can be read")
    if not package.has("META-INF/encryption.xml"):
        return
    encryption = parse_xml(package.read("META-INF/encryption.xml"), f"the {WHAT}'s encryption.xml")
    for data in encryption.iter():
        if local(data.tag) != "encrypteddata":
            continue
        method = next((el.get("Algorithm") for el in data.iter() if local(el.tag) == "encryptionmethod"), None)
        if method not in _FONT_MANGLING:
            target = next((el.get("URI") for el in data.iter() if local(el.tag) == "cipherreference"), "?")
            raise DocumentError(f"the {WHAT} is DRM-protected ({target} is encrypted); only DRM-free books can "
                                "be read")


def _rootfile(package: Package) -> str:
    if not package.has("META-INF/container.xml"):
        raise DocumentError(f"damaged {WHAT}: no META-INF/container.xml (is it an EPUB?)")
    container = parse_xml(package.read("META-INF/container.xml"), f"the {WHAT}'s container.xml")
    for rootfile in container.iter(f"{{{_CONTAINER}}}rootfile"):
        path = rootfile.get("full-path")
        if path and rootfile.get("media-type", "application/oebps-package+xml") == "application/oebps-package+xml":
            if not package.has(path):
                raise DocumentError(f"damaged {WHAT}: its package file {path!r} is missing")
            return path
    raise DocumentError(f"damaged {WHAT}: container.xml names no package file")


def _toc(package: Package, opf: Any, items: dict[str, _Item], spine: Any) -> list[tuple[str, str, str]]:
    """(title, page, fragment) of each table-of-contents entry to TOC_DEPTH, in order: the EPUB 3 navigation
    document's toc nav, else the EPUB 2 NCX; [] when the book has neither (or they are unreadable)."""
    nav = next((item for item in items.values() if "nav" in item.properties and package.has(item.path)), None)
    if nav is not None:
        root = parse_xhtml(package.read(nav.path), f"the {WHAT}'s navigation document")
        navs = [el for el in root.iter() if local(el.tag) == "nav"]
        toc = next((el for el in navs if "toc" in (el.get(f"{{{_OPS}}}type") or el.get("epub:type") or "").split()),
                   navs[0] if navs else None)
        if toc is not None:
            entries = list(_nav_entries(toc, nav.path, 1))
            if entries:
                return entries
    ncx = items.get(spine.get("toc") or "") or next(
        (item for item in items.values() if item.media_type == "application/x-dtbncx+xml"), None)
    if ncx is None or not package.has(ncx.path):
        return []
    root = parse_xml(package.read(ncx.path), f"the {WHAT}'s NCX table of contents")
    nav_map = next((el for el in root.iter(f"{{{_NCX}}}navMap")), None)
    return list(_ncx_entries(nav_map, ncx.path, 1)) if nav_map is not None else []


def _nav_entries(element: Any, base: str, depth: int) -> Any:
    for ordered in (el for el in element if local(el.tag) == "ol"):
        for item in (el for el in ordered if local(el.tag) == "li"):
            link = next((el for el in item if local(el.tag) in ("a", "span")), None)
            if link is not None and link.get("href"):
                href = link.get("href")
                yield one_line(inline_text(link)), member_path(base, href), _fragment(href)
            if depth < TOC_DEPTH:
                yield from _nav_entries(item, base, depth + 1)


def _ncx_entries(element: Any, base: str, depth: int) -> Any:
    for point in element.iterchildren(f"{{{_NCX}}}navPoint"):
        label = point.find(f"{{{_NCX}}}navLabel/{{{_NCX}}}text")
        content = point.find(f"{{{_NCX}}}content")
        if content is not None and content.get("src"):
            yield (one_line(label.text or "") if label is not None else ""), member_path(base, content.get("src")), \
                _fragment(content.get("src"))
        if depth < TOC_DEPTH:
            yield from _ncx_entries(point, base, depth + 1)


def _fragment(href: str) -> str:
    return href.split("#", 1)[1] if "#" in href else ""


def _cover(opf: Any, items: dict[str, _Item]) -> _Item | None:
    """EPUB 3's cover-image property, else EPUB 2's <meta name="cover" content="item id">."""
    for item in items.values():
        if "cover-image" in item.properties:
            return item
    for meta in opf.iter(f"{{{_OPF}}}meta"):
        if meta.get("name") == "cover" and meta.get("content") in items:
            item = items[meta.get("content")]
            return item if item.media_type.startswith("image/") else None
    return None
