"""EPUB 2 and 3 books built from their parts: text, chapters from the TOC (else the spine), metadata, the cover."""

from __future__ import annotations

from pathlib import Path

import pytest
from made_documents import EPUB_CHAPTERS, NOTE_TEXT, epub_parts, make_epub, png_bytes, write_zip

from pipeline import sources
from pipeline.errors import DocumentError
from pipeline.models import Document
from pipeline.sources import epub


def read(path: Path) -> Document:
    item = sources.document_from_path(path)
    assert isinstance(item, Document), getattr(item, "reason", item)
    return item


@pytest.mark.parametrize("version", [2, 3])
def test_epub_text_chapters_and_metadata(version: int, tmp_path: Path) -> None:
    book = read(make_epub(tmp_path / "crossing.epub", version=version, title="The Crossing", author="Mary Shelley"))
    assert book.title == "The Crossing" and book.meta is not None
    assert (book.meta["author"], book.meta["language"], book.meta["epub_version"]) == (
        "Mary Shelley", "en", f"{version}.0")
    # The cover is recorded, never written anywhere.
    assert (book.meta["cover"], book.meta["cover_media_type"]) == ("OEBPS/images/cover.png", "image/png")
    text = book.text
    # The note reference and the page-break marker do not interrupt the sentence; the note is read after.
    assert "The ferry left at dawn and the sea was calm. By noon they saw the island." in text
    assert f"Note 1: {NOTE_TEXT}." in text and text.index("Note 1") > text.index("By noon")
    assert "Rope.\n\nLantern." in text and "Port: Brodick; Hour: Nine." in text
    # Chapters from the table of contents (nav in EPUB 3, NCX in EPUB 2), the nested entry at its anchor.
    assert [c.title for c in book.chapters] == ["Chapter 1: The Crossing", "Chapter 2: The Island", "The Market"]
    spans = {c.title: text[c.start:c.end] for c in book.chapters}
    assert spans["Chapter 1: The Crossing"].startswith("Chapter 1: The Crossing.")
    assert spans["Chapter 1: The Crossing"].endswith(f"{NOTE_TEXT}.")
    assert spans["Chapter 2: The Island"] == "Chapter 2: The Island.\n\nThe village had one shop and one church."
    assert spans["The Market"] == "The Market.\n\nOn Saturdays the square filled with stalls."


def test_without_a_toc_the_spine_is_the_structure(tmp_path: Path) -> None:
    book = read(make_epub(tmp_path / "plain.epub", toc=False, cover=False))
    assert [c.title for c in book.chapters] == [title for title, _, _ in EPUB_CHAPTERS]
    assert book.meta is not None and "cover" not in book.meta


def test_font_obfuscation_is_not_drm_but_encrypted_pages_are(tmp_path: Path) -> None:
    def encryption(algorithm: str, uri: str) -> bytes:
        return (f'<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container" '
                f'xmlns:enc="http://www.w3.org/2001/04/xmlenc#"><enc:EncryptedData><enc:EncryptionMethod '
                f'Algorithm="{algorithm}"/><enc:CipherData><enc:CipherReference URI="{uri}"/></enc:CipherData>'
                "</enc:EncryptedData></encryption>").encode()

    fonts = {**epub_parts(), "OEBPS/font.otf": b"\x00" * 64,
             "META-INF/encryption.xml": encryption("http://www.idpf.org/2008/embedding", "OEBPS/font.otf")}
    assert read(write_zip(tmp_path / "fonts.epub", fonts)).chapters
    locked = {**epub_parts(), "META-INF/encryption.xml": encryption("http://www.w3.org/2001/04/xmlenc#aes128-cbc",
                                                                    "OEBPS/c1.xhtml")}
    with pytest.raises(DocumentError, match=r"DRM-protected \(OEBPS/c1\.xhtml is encrypted\)"):
        epub.epub_text(write_zip(tmp_path / "locked.epub", locked).read_bytes())


def test_tag_soup_pages_and_entities_of_html(tmp_path: Path) -> None:
    # Some books carry HTML entities XML does not know (&nbsp;) and unclosed tags: read as HTML, as readers do.
    parts = epub_parts(toc=False)
    parts["OEBPS/c1.xhtml"] = b"<html><body><h1>Soup</h1><p>Caf&eacute; and&nbsp;bread<p>Second paragraph</body>"
    book = read(write_zip(tmp_path / "soup.epub", parts))
    assert book.text.startswith("Soup.\n\nCafé and bread\n\nSecond paragraph")


def test_a_book_of_images_only_fails(tmp_path: Path) -> None:
    parts = epub_parts(toc=False)
    for _, name, _ in EPUB_CHAPTERS:
        parts[f"OEBPS/{name}"] = b'<html xmlns="http://www.w3.org/1999/xhtml"><body><img src="images/cover.png"/>' \
                                 b"</body></html>"
    parts["OEBPS/images/cover.png"] = png_bytes()
    with pytest.raises(DocumentError, match=r"no text in the EPUB"):
        epub.epub_text(write_zip(tmp_path / "images.epub", parts).read_bytes())
