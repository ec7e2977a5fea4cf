"""Bytes of a document (text, Markdown, HTML, PDF, Word, PowerPoint, OpenDocument, RTF, EPUB) become plain text.

Pure functions over bytes already read: nothing here opens files or sockets; bad input raises DocumentError.
"""

from __future__ import annotations

import io
import logging
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any, Literal

from pipeline.errors import DocumentError, first_line
from pipeline.models import Chapter
from pipeline.sources import blocks, encodings, epub, headings, opendocument, rtf, slides, word
from pipeline.sources.office import Read

Kind = Literal["text", "html", "pdf", "docx", "pptx", "odt", "rtf", "epub"]

HTML_SUFFIXES = frozenset({".html", ".htm"})
PDF_SUFFIXES = frozenset({".pdf"})
MARKDOWN_SUFFIXES = frozenset({".md", ".markdown"})
# Formats read by their name alone (a zip or RTF's own header says nothing a sniff could use), and who reads them.
READERS: dict[str, tuple[Kind, Callable[[bytes], Read]]] = {
    **{suffix: ("docx", word.docx_text) for suffix in word.SUFFIXES},
    **{suffix: ("pptx", slides.pptx_text) for suffix in slides.SUFFIXES},
    **{suffix: ("odt", opendocument.odt_text) for suffix in opendocument.SUFFIXES},
    **{suffix: ("rtf", rtf.rtf_text) for suffix in rtf.SUFFIXES},
    **{suffix: ("epub", epub.epub_text) for suffix in epub.SUFFIXES},
}
MAX_PDF_PAGES = 2000
MAX_TEXT_CHARS = blocks.MAX_TEXT_CHARS
# Share of control bytes (besides tab, newlines, form feed, escape) above which bytes are not text.
MAX_CONTROL_RATIO = 0.10
SNIFF_BYTES = 8192

# These libraries log parsing trouble at WARNING; without a handler Python would print it on stderr,
# interleaved with the progress bar or the JSON event log. The reason reaches the report instead.
for _name in ("pypdf", "courlan", "justext", "trafilatura", "htmldate"):
    logging.getLogger(_name).addHandler(logging.NullHandler())

_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_TEXT_CONTROLS = frozenset(b"\t\n\r\x0b\x0c\x1b")
_HTML_START = re.compile(rb"^(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*(?:<!doctype\s+html|<html[\s>])", re.S)


@dataclass(frozen=True, slots=True)
class Extracted:
    """Plain text of one document, with what the extractor learnt about it."""

    text: str
    kind: Kind
    title: str | None = None
    meta: dict[str, str] = field(default_factory=dict)
    chapters: tuple[Chapter, ...] = ()  # spans into text


def sniff_kind(data: bytes, suffix: str = "") -> Kind:
    """The document's kind from its first bytes, the file name's suffix breaking ties; junk raises DocumentError."""
    head = data[:SNIFF_BYTES]
    # Readers accept junk before the header, but only a file named .pdf gets that benefit: a text note that
    # mentions "%PDF-" in its first lines is still text.
    if head.lstrip().startswith(b"%PDF-") or (suffix.lower() in PDF_SUFFIXES and b"%PDF-" in head[:1024]):
        return "pdf"
    if suffix.lower() in PDF_SUFFIXES:
        raise DocumentError(f"not a PDF: no %PDF- header (it starts with {_preview(head)})")
    reject_binary(head)
    if looks_like_html(head) or suffix.lower() in HTML_SUFFIXES:
        return "html"
    return "text"


def looks_like_html(head: bytes) -> bool:
    """True when the bytes open (after a BOM, whitespace, an XML declaration or comments) an HTML document."""
    if head.startswith(_UTF16_BOMS):
        head = head.decode("utf-16", errors="ignore").encode("utf-8")
    return bool(_HTML_START.match(head.removeprefix(b"\xef\xbb\xbf").lstrip().lower()))


def reject_binary(head: bytes) -> None:
    """Raise DocumentError when the bytes are binary data rather than text in some encoding."""
    if head.startswith(_UTF16_BOMS) or not head:
        return
    if b"\x00" in head:
        raise DocumentError("binary data, not text (contains NUL bytes)")
    controls = sum(1 for byte in head if (byte < 0x20 and byte not in _TEXT_CONTROLS) or byte == 0x7F)
    if controls / len(head) > MAX_CONTROL_RATIO:
        raise DocumentError(f"binary data, not text ({controls} control bytes in the first {len(head)})")


def decode_text(data: bytes) -> str:
    """Text by its BOM, as UTF-8, else by detection (encodings.decode); a weak guess raises DocumentError."""
    return encodings.decode(data).text


def document_text(data: bytes, *, suffix: str = "", url: str | None = None) -> Extracted:
    """Plain text of a document's bytes: decoded text as it is, the main text of HTML, the text layer of a PDF,
    the text of an office document or book (READERS)."""
    if suffix.lower() in READERS:
        kind, reader = READERS[suffix.lower()]
        found = reader(data)
        return Extracted(text=found.text, kind=kind, title=found.title, meta=found.meta, chapters=found.chapters)
    kind = sniff_kind(data, suffix)
    if kind == "pdf":
        return pdf_text(data)
    if kind == "html":
        return html_text(data, url=url)
    decoded = encodings.decode(data)
    chapters = headings.markdown_chapters(decoded.text) if suffix.lower() in MARKDOWN_SUFFIXES else ()
    return Extracted(text=decoded.text, kind="text", meta=decoded.meta(), chapters=chapters)


def html_text(data: bytes | str, *, url: str | None = None) -> Extracted:
    """The main text of an HTML page (trafilatura: boilerplate such as navigation and footers left out).

    trafilatura only parses here; it fetches nothing (its downloads live in functions this never calls).
    """
    import trafilatura

    decoded = encodings.decode(data, html=True) if isinstance(data, bytes) else None
    if decoded is not None:
        data = decoded.text
    try:
        # <noscript> holds "please enable JavaScript" on script-built pages: that is not the article.
        found = trafilatura.bare_extraction(data, url=url, with_metadata=True, include_comments=False,
                                            include_tables=True, include_images=False, deduplicate=False,
                                            prune_xpath="//noscript",
                                            date_extraction_params={"extensive_search": False})
    except (ValueError, TypeError, RecursionError) as exc:  # lxml gives up on some malformed markup this way
        raise DocumentError(f"HTML could not be parsed: {exc}") from exc
    text = (getattr(found, "text", None) or "").strip() if found is not None else ""
    if not text:
        raise DocumentError("no main text found in the HTML page")
    meta = {"kind": "html", "extraction": "trafilatura", **(decoded.meta() if decoded is not None else {})}
    for key in ("author", "date"):
        value = getattr(found, key, None)
        if value:
            meta[key] = str(value)
    title = (getattr(found, "title", None) or "").strip() or None
    return Extracted(text=text, kind="html", title=title, meta=meta, chapters=headings.html_chapters(data, text))


def pdf_text(data: bytes, *, max_pages: int = MAX_PDF_PAGES, max_chars: int = MAX_TEXT_CHARS) -> Extracted:
    """The text layer of a PDF (pypdf); encrypted, malformed, image-only or oversized PDFs raise DocumentError."""
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            try:
                opened = reader.decrypt("")  # an owner-password-only PDF opens with the empty user password
            except (DependencyError, NotImplementedError, FileNotDecryptedError) as exc:
                raise DocumentError(f"encrypted PDF (cannot be opened: {first_line(exc)})") from exc
            if not opened:
                raise DocumentError("encrypted PDF (a password is needed to read it)")
        count = len(reader.pages)
        if count > max_pages:
            raise DocumentError(f"PDF has {count} pages, over the {max_pages}-page limit")
        parts: list[str] = []
        total = 0
        for page in reader.pages:
            page_text = (page.extract_text() or "").replace("\x00", "").strip()
            total += len(page_text)
            if total > max_chars:
                raise DocumentError(f"PDF text is over the {max_chars}-character limit")
            if page_text:
                parts.append(page_text)
        info: Any = reader.metadata or {}
        pdf_title = _pdf_string(info.get("/Title"))
        pdf_author = _pdf_string(info.get("/Author"))
    except DocumentError:
        raise
    except Exception as exc:
        raise DocumentError(f"malformed PDF ({type(exc).__name__}: {first_line(exc)})") from exc
    if not parts:
        raise DocumentError("no text layer (scanned PDF?)")
    meta = {"kind": "pdf", "extraction": "pypdf", "pages": str(count)}
    if pdf_author:
        meta["author"] = pdf_author
    title = pdf_title if pdf_title and not re.search(r"\.(docx?|pdf|odt|pages|tex)$", pdf_title, re.I) else None
    return Extracted(text="\n\n".join(parts), kind="pdf", title=title, meta=meta)


def html_fragment_text(fragment: str) -> str:
    """Plain text of a feed's HTML content or summary: tags dropped, block elements on their own lines."""
    parser = _TextOnly()
    parser.feed(fragment)
    parser.close()
    lines = (re.sub(r"[ \t\r\f\v\xa0]+", " ", line).strip() for line in "".join(parser.parts).split("\n"))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


class _TextOnly(HTMLParser):
    _BLOCKS = frozenset({"p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote",
                         "pre", "tr", "table", "section", "article", "figure", "figcaption", "hr", "dd", "dt"})
    _HIDDEN = frozenset({"script", "style", "noscript", "template", "iframe", "object", "svg"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._HIDDEN:
            self._hidden += 1
        elif tag in self._BLOCKS:
            self.parts.append("\n\n" if tag not in ("br", "li", "tr") else "\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def _pdf_string(value: object) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text or None


def _preview(head: bytes) -> str:
    return repr(head[:12])




def read_capped(path: str | os.PathLike[str], cap: int, what: str) -> bytes:
    """A regular file's bytes, at most `cap`; a FIFO or device is refused without blocking (O_NONBLOCK)."""
    return b"".join(read_blocks(path, cap, what, block_size=cap))


def read_blocks(path: str | os.PathLike[str], cap: int, what: str, *, block_size: int = 1 << 20) -> Iterator[bytes]:
    """A regular file's bytes in blocks, at most cap in all (a file that grows past it while being read is a
    DocumentError); a FIFO, device or folder is refused without blocking, and every OS error is this document's
    DocumentError."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise DocumentError(f"cannot open {what}: {exc.strerror or exc}") from exc
    try:
        # Checked on the descriptor before it becomes a file object: os.fdopen raises IsADirectoryError for a
        # folder (a manifest `path` of "."), which is this document's problem, not the run's.
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise DocumentError(f"{what} is not a regular file")
        if info.st_size > cap:
            raise DocumentError(f"{what} is {info.st_size} bytes, over the {cap}-byte limit")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            left = cap
            while left > 0 and (block := handle.read(min(block_size, left))):
                left -= len(block)
                yield block
            if left == 0 and handle.read(1):
                raise DocumentError(f"{what} grew past the {cap}-byte limit while being read")
    except OSError as exc:  # EIO and the like: the disk's problem shows up as this document's failure
        raise DocumentError(f"cannot read {what}: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
