"""Hostile office documents and books, written into a folder: each must fail alone, fast, in little memory.

Shared by tests/sources/test_office_hostile.py and the hostile corpus (tests/hostile/build_corpus.py); nothing here
reads them back.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from made_documents import epub_parts, make_docx, make_odt, write_zip

GIB = 1024 ** 3

# file name -> the reason its failure must match (a regex, searched case-insensitively)
EXPECTED: dict[str, str] = {
    "drm-rights.epub": r"DRM-protected \(META-INF/rights\.xml\)",
    "drm-encrypted.epub": r"DRM-protected \(OEBPS/c1\.xhtml is encrypted\)",
    "corrupt-truncated.epub": r"not a zip file, or a damaged one",
    "corrupt-no-container.epub": r"no META-INF/container\.xml",
    "bomb-300mb.docx": r"unpacks to \d+ bytes, over the \d+-byte limit \(a zip bomb\?\)",
    "bomb-ratio.docx": r"compressed \d+:1, over the 100:1 limit",
    "entries-6000.docx": r"6000 zip entries, over the 5000 limit",
    "not-a-zip.docx": r"not a zip file",
    "external-entity.odt": r"external entity 'xxe' \(file:///etc/passwd\)",
    "billion-laughs.odt": r"declares an XML entity 'lol'",
    "control-words-only.rtf": r"no text in the RTF document \(only control words\)",
    "control-words-18mb.rtf": r"no text in the RTF document \(only control words\)",
    "huge-200mb.pptx": r"is \d+ bytes, over the \d+-byte limit",
}


def _zeros_member(path: Path, name: str, size: int, extra: dict[str, bytes]) -> None:
    """A zip whose member `name` is `size` zero bytes, deflated (1000:1), streamed so the builder stays small."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, data in extra.items():
            archive.writestr(member, data)
        with archive.open(name, "w", force_zip64=True) as handle:
            block = b"\0" * (1 << 20)
            for _ in range(size // len(block)):
                handle.write(block)


def _parts(docx: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(docx) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


# Cases that cost real memory to refuse (striprtf holds a few copies of the text): left out of the whole-corpus
# run, whose memory bound is for the run, and checked on their own by tests/sources/test_office_hostile.py.
LARGE = frozenset({"control-words-18mb.rtf"})


def build(folder: Path, *, large: bool = True) -> dict[str, str]:
    """Write the hostile files into folder (which must exist), LARGE ones too unless told not to; returns what
    each must fail with (EXPECTED, for the files written)."""
    parts = epub_parts()
    write_zip(folder / "drm-rights.epub", {**parts, "META-INF/rights.xml": b"<rights><licenseToken/></rights>"})
    write_zip(folder / "drm-encrypted.epub", {**parts, "META-INF/encryption.xml": (
        b'<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container" '
        b'xmlns:enc="http://www.w3.org/2001/04/xmlenc#"><enc:EncryptedData><enc:EncryptionMethod '
        b'Algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc"/><enc:CipherData><enc:CipherReference '
        b'URI="OEBPS/c1.xhtml"/></enc:CipherData></enc:EncryptedData></encryption>')})
    whole = write_zip(folder / "whole.epub", parts).read_bytes()
    (folder / "whole.epub").unlink()
    (folder / "corrupt-truncated.epub").write_bytes(whole[:len(whole) // 2])
    write_zip(folder / "corrupt-no-container.epub",
              {name: data for name, data in parts.items() if name != "META-INF/container.xml"})

    template = make_docx(folder / "template.docx")
    docx_parts = _parts(template)
    template.unlink()
    _zeros_member(folder / "bomb-300mb.docx", "word/media/zeros.bin", 300 * 1024 * 1024, docx_parts)
    _zeros_member(folder / "bomb-ratio.docx", "word/media/zeros.bin", 64 * 1024 * 1024, docx_parts)
    with zipfile.ZipFile(folder / "entries-6000.docx", "w") as archive:
        for name, data in docx_parts.items():
            archive.writestr(name, data)
        for number in range(6000 - len(docx_parts)):
            archive.writestr(f"customXml/pad{number}.xml", b"")
    (folder / "not-a-zip.docx").write_text("A plain text note that only wears a .docx name.\n")

    make_odt(folder / "external-entity.odt", external_entity=True)
    lol = make_odt(folder / "billion-laughs.odt")
    odt_parts = _parts(lol)
    declaration, rest = odt_parts["content.xml"].decode().split("?>", 1)
    entities = '<!ENTITY lol "lol">' + "".join(
        f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10 if n > 1 else "&lol;" * 10}">' for n in range(1, 10))
    odt_parts["content.xml"] = (declaration + f"?><!DOCTYPE office:document-content [{entities}]>"
                                + rest.replace("The supply boat came on Thursdays.", "&lol9;")).encode()
    write_zip(lol, odt_parts)

    (folder / "control-words-only.rtf").write_bytes(
        b"{\\rtf1\\ansi\\deff0{\\fonttbl{\\f0 Times;}}{\\colortbl;\\red0\\green0\\blue0;}\\pard\\b\\i\\ul\\par\\par}")
    if large:
        (folder / "control-words-18mb.rtf").write_bytes(b"{\\rtf1" + b"\\b\\i\\ul0 " * 2_000_000 + b"}")
    with (folder / "huge-200mb.pptx").open("wb") as handle:  # sparse: no disk used
        handle.truncate(200 * 1024 * 1024)
    return {name: reason for name, reason in EXPECTED.items() if large or name not in LARGE}
