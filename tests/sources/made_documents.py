"""Office documents and books made for tests from their parts (python-docx, python-pptx, odfpy, zipfile).

Nothing here reads them back: every expected word and span comes from what these builders wrote.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from PIL import Image

# The words a reader must keep out of the sentences (page furniture, note markers) and the ones it must keep.
FURNITURE = "Confidential draft page"
NOTE_TEXT = "The harbour master kept the logbook"
CP1252_TEXT = ("The café’s “special” costs 5 €, said the naïve señor from Zürich — and nobody argued. "
               "Crème brûlée followed, then coffee.\n") * 3


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def make_docx(path: Path, *, title: str = "The Harbour Book", author: str = "Ada Lovelace",
              language: str = "en-GB") -> Path:
    import docx

    document = docx.Document()
    document.core_properties.title = title
    document.core_properties.author = author
    document.core_properties.language = language
    document.sections[0].header.paragraphs[0].text = FURNITURE
    document.sections[0].footer.paragraphs[0].text = FURNITURE
    document.add_paragraph("A short foreword before the first chapter.")
    document.add_heading("Chapter One", level=1)
    document.add_paragraph("The ferry left at dawn. The gulls followed it out of the bay.")
    document.add_paragraph("Bring a coat", style="List Bullet")
    document.add_paragraph("Bring a map", style="List Bullet")
    document.add_paragraph("Board the ferry", style="List Number")
    document.add_paragraph("Find a seat", style="List Number")
    table = document.add_table(rows=2, cols=2)
    for cell, text in zip(table.rows[0].cells + table.rows[1].cells, ("Port", "Time", "Ardrossan", "Eight")):
        cell.text = text
    document.add_heading("Chapter Two", level=1)
    document.add_paragraph("The island was quiet. Nobody had expected the storm.")
    document.add_heading("A Section", level=3)
    document.add_paragraph("A smaller part inside chapter two.")
    document.save(str(path))
    return path


def make_pptx(path: Path, *, title: str = "Quarterly Ferries", author: str = "Grace Hopper") -> Path:
    from pptx import Presentation

    deck = Presentation()
    deck.core_properties.title = title
    deck.core_properties.author = author
    for number, (heading, points, notes) in enumerate((
            ("Routes", ["Ardrossan to Brodick", "Largs to Cumbrae"], "Mention the winter timetable."),
            ("Fares", ["Adults four pounds"], "Children travel free.")), start=1):
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = heading
        body = slide.placeholders[1].text_frame
        body.text = points[0]
        for point in points[1:]:
            body.add_paragraph().text = point
        slide.notes_slide.notes_text_frame.text = notes
    deck.save(str(path))
    return path


def make_odt(path: Path, *, title: str = "Island Notes", author: str = "Mary Somerville",
             external_entity: bool = False) -> Path:
    from odf import dc, meta, table, text
    from odf.opendocument import OpenDocumentText
    from odf.style import ListLevelProperties
    from odf.text import ListLevelStyleNumber, ListStyle

    document = OpenDocumentText()
    document.meta.addElement(dc.Title(text=title))
    document.meta.addElement(dc.Creator(text=author))
    document.meta.addElement(dc.Language(text="en"))
    document.meta.addElement(meta.InitialCreator(text=author))
    numbered = ListStyle(name="Numbered")
    level = ListLevelStyleNumber(level=1, numformat="1")
    level.addElement(ListLevelProperties())
    numbered.addElement(level)
    document.automaticstyles.addElement(numbered)
    body = document.text
    body.addElement(text.P(text="An opening line before any heading."))
    body.addElement(text.H(outlinelevel=1, text="First Part"))
    paragraph = text.P(text="The lighthouse keeper wrote every night")
    note = text.Note(id="ftn1", noteclass="footnote")
    note.addElement(text.NoteCitation(text="1"))
    note_body = text.NoteBody()
    note_body.addElement(text.P(text=NOTE_TEXT))
    note.addElement(note_body)
    paragraph.addElement(note)
    paragraph.addText(" and slept by day.")
    body.addElement(paragraph)
    listing = text.List(stylename=numbered)
    for words in ("Light the lamp", "Wind the clock"):
        item = text.ListItem()
        item.addElement(text.P(text=words))
        listing.addElement(item)
    body.addElement(listing)
    grid = table.Table(name="Tides")
    grid.addElement(table.TableColumn(numbercolumnsrepeated=2))
    for cells in (("Tide", "Hour"), ("High", "Six")):
        row = table.TableRow()
        for value in cells:
            cell = table.TableCell()
            cell.addElement(text.P(text=value))
            row.addElement(cell)
        grid.addElement(row)
    body.addElement(grid)
    body.addElement(text.H(outlinelevel=2, text="Second Part"))
    body.addElement(text.P(text="The supply boat came on Thursdays."))
    document.save(str(path))
    if external_entity:
        _with_entity(path)
    return path


def _with_entity(path: Path) -> None:
    """Rewrite content.xml with a DOCTYPE declaring an external entity that reads /etc/passwd, and use it."""
    with zipfile.ZipFile(path) as source:
        parts = {info.filename: source.read(info) for info in source.infolist()}
    content = parts["content.xml"].decode("utf-8")
    declaration, rest = content.split("?>", 1)
    rest = rest.replace("The supply boat came on Thursdays.", "&xxe;")
    parts["content.xml"] = (declaration + '?>\n<!DOCTYPE office:document-content [ <!ENTITY xxe SYSTEM '
                            '"file:///etc/passwd"> ]>' + rest).encode("utf-8")
    write_zip(path, parts)


def write_zip(path: Path, parts: dict[str, bytes], *, stored: tuple[str, ...] = ("mimetype",)) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in parts.items():
            archive.writestr(name, data, compress_type=zipfile.ZIP_STORED if name in stored else zipfile.ZIP_DEFLATED)
    return path


def _page(title: str, body: str) -> bytes:
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE html>\n<html xmlns="http://www.w3.org/1999/xhtml" '
            f'xmlns:epub="http://www.idpf.org/2007/ops"><head><title>{title}</title></head><body>{body}</body>'
            "</html>").encode()


EPUB_CHAPTERS = (
    ("Chapter 1: The Crossing", "c1.xhtml",
     '<section><h1 id="c1">Chapter 1: The Crossing</h1><p>The ferry left at dawn<a epub:type="noteref" '
     'href="#n1">1</a> and the sea was calm.<span epub:type="pagebreak" id="p7" title="7"/> By noon they saw the '
     'island.</p><ul><li>Rope</li><li>Lantern</li></ul><table><tr><th>Port</th><th>Hour</th></tr><tr><td>Brodick'
     f'</td><td>Nine</td></tr></table><aside epub:type="footnote" id="n1"><p>{NOTE_TEXT}.</p></aside></section>'),
    ("Chapter 2: The Island", "c2.xhtml",
     '<h1>Chapter 2: The Island</h1><p>The village had one shop and one church.</p>'
     '<h2 id="market">The Market</h2><p>On Saturdays the square filled with stalls.</p>'),
)


def epub_parts(*, version: int = 3, toc: bool = True, cover: bool = True, title: str = "The Crossing",
               author: str = "Mary Shelley", language: str = "en") -> dict[str, bytes]:
    """The members of an EPUB 2 or 3: mimetype, container, package file, TOC (nav or NCX), pages, a cover."""
    manifest = [f'<item id="c{n}" href="{name}" media-type="application/xhtml+xml"/>'
                for n, (_, name, _) in enumerate(EPUB_CHAPTERS, start=1)]
    spine = "".join(f'<itemref idref="c{n}"/>' for n in range(1, len(EPUB_CHAPTERS) + 1))
    parts: dict[str, bytes] = {
        "mimetype": b"application/epub+zip",
        "META-INF/container.xml": b'<?xml version="1.0"?><container version="1.0" xmlns="urn:oasis:names:tc:'
                                  b'opendocument:xmlns:container"><rootfiles><rootfile full-path="OEBPS/content.opf"'
                                  b' media-type="application/oebps-package+xml"/></rootfiles></container>',
    }
    for chapter_title, name, body in EPUB_CHAPTERS:
        parts[f"OEBPS/{name}"] = _page(chapter_title, body)
    meta_cover = ""
    if cover:
        parts["OEBPS/images/cover.png"] = png_bytes()
        manifest.append('<item id="cover" href="images/cover.png" media-type="image/png"'
                        + (' properties="cover-image"/>' if version == 3 else "/>"))
        meta_cover = '<meta name="cover" content="cover"/>' if version == 2 else ""
    spine_toc = ""
    if toc and version == 3:
        entries = ('<li><a href="c1.xhtml">Chapter 1: The Crossing</a></li><li><a href="c2.xhtml">Chapter 2: The '
                   'Island</a><ol><li><a href="c2.xhtml#market">The Market</a></li></ol></li>')
        parts["OEBPS/nav.xhtml"] = _page("Contents", f'<nav epub:type="toc"><h1>Contents</h1><ol>{entries}</ol></nav>')
        manifest.append('<item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>')
    elif toc:
        points = "".join(
            f'<navPoint id="p{n}" playOrder="{n}"><navLabel><text>{label}</text></navLabel><content src="{src}"/>'
            "</navPoint>" for n, (label, src) in enumerate((("Chapter 1: The Crossing", "c1.xhtml"),
                                                            ("Chapter 2: The Island", "c2.xhtml"),
                                                            ("The Market", "c2.xhtml#market")), start=1))
        parts["OEBPS/toc.ncx"] = ('<?xml version="1.0"?><ncx xmlns="http://www.daisy.org/z3986/2005/ncx/" '
                                  f'version="2005-1"><navMap>{points}</navMap></ncx>').encode()
        manifest.append('<item id="ncx" href="toc.ncx" media-type="application/x-dtbncx+xml"/>')
        spine_toc = ' toc="ncx"'
    parts["OEBPS/content.opf"] = (
        f'<?xml version="1.0" encoding="utf-8"?><package xmlns="http://www.idpf.org/2007/opf" version="{version}.0" '
        'unique-identifier="id"><metadata xmlns:dc="http://purl.org/dc/elements/1.1/">'
        f'<dc:identifier id="id">urn:uuid:1</dc:identifier><dc:title>{title}</dc:title>'
        f'<dc:creator>{author}</dc:creator><dc:language>{language}</dc:language>{meta_cover}</metadata>'
        f'<manifest>{"".join(manifest)}</manifest><spine{spine_toc}>{spine}</spine></package>').encode()
    return parts


def make_epub(path: Path, **options: object) -> Path:
    return write_zip(path, epub_parts(**options))  # type: ignore[arg-type]


def make_cp1252(path: Path) -> Path:
    path.write_bytes(CP1252_TEXT.encode("cp1252"))
    return path
