"""HTML, PDF and junk documents in folders and manifests: the kind is told from content, bad ones fail alone."""

from __future__ import annotations

import io
import json
import socket
from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter

from pipeline import sources
from pipeline.errors import DocumentError
from pipeline.models import Document, RejectedDocument
from pipeline.sources import extract

ARTICLES = Path(__file__).resolve().parent.parent / "fixtures" / "feeds" / "articles"


def text_pdf(lines: list[str]) -> bytes:
    """A minimal valid one-page PDF whose content stream draws the lines in Helvetica (pypdf cannot typeset)."""
    def escape(line: str) -> str:
        return line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    operators = ["BT", "/F1 12 Tf", "72 720 Td", "14 TL", *(f"({escape(line)}) Tj T*" for line in lines), "ET"]
    stream = "\n".join(operators).encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 5 0 R >> >> "
        b"/Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


REPORT_LINES = ["Harbour authority quarterly report", "Cargo volumes rose by six percent in the spring quarter.",
                "Two new cranes entered service at the container terminal."]


def _rewritten(data: bytes, **encrypt: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    if encrypt:
        writer.encrypt(algorithm="RC4-128", **encrypt)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def _blank_pdf() -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(612, 792)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Extraction must never reach for the network; any connect attempt fails the test."""
    def refuse(self: socket.socket, address: object) -> None:
        raise AssertionError(f"extraction tried to connect to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


def test_kind_is_told_from_content_as_well_as_name() -> None:
    assert extract.sniff_kind(b"%PDF-1.7\n...", ".txt") == "pdf"
    assert extract.sniff_kind(b"junk\n%PDF-1.7\n...", ".pdf") == "pdf"
    assert extract.sniff_kind(b"Note: PDFs start with %PDF-1.x, then objects.", ".txt") == "text"
    assert extract.sniff_kind(b"\xef\xbb\xbf  \n<!DOCTYPE html><html>", ".txt") == "html"
    assert extract.sniff_kind(b"<?xml version='1.0'?>\n<!-- x -->\n<html xmlns='x'>", ".md") == "html"
    assert extract.sniff_kind("<html><body>hi".encode("utf-16"), "") == "html"
    assert extract.sniff_kind(b"<p>a fragment</p>", ".htm") == "html"
    assert extract.sniff_kind(b"# Notes\n\nplain <b>markdown</b>", ".md") == "text"
    with pytest.raises(DocumentError, match="not a PDF"):
        extract.sniff_kind(b"<html>Access denied</html>", ".pdf")
    with pytest.raises(DocumentError, match=r"^binary data, not text \(contains NUL bytes\)"):
        extract.sniff_kind(b"PK\x03\x04\x00\x00zip", ".txt")
    with pytest.raises(DocumentError, match=r"^binary data, not text \(\d+ control bytes"):
        extract.sniff_kind(bytes(range(1, 32)) * 50, ".txt")


def test_html_main_text_leaves_boilerplate_out(no_network: None) -> None:
    found = extract.document_text((ARTICLES / "harbour-bridge.html").read_bytes(), suffix=".html")
    assert found.kind == "html" and found.title == "Harbour bridge reopens after two years of repairs"
    assert "forty-two million euros" in found.text
    for boilerplate in ("cookies", "Subscribe for 1 euro", "Advertisement", "All rights reserved", "harbourfan",
                        "Related stories", "Share this story", "dataLayer"):
        assert boilerplate not in found.text
    assert found.meta == {"kind": "html", "extraction": "trafilatura", "author": "Mara Lindqvist",
                          "date": "2026-05-04"}
    with pytest.raises(DocumentError, match="no main text found"):
        extract.document_text((ARTICLES / "js-only.html").read_bytes(), suffix=".html")


def test_pdf_text_layer_and_every_bad_pdf(no_network: None) -> None:
    good = text_pdf(REPORT_LINES)
    found = extract.document_text(good, suffix=".pdf")
    assert found.kind == "pdf" and found.text.splitlines() == REPORT_LINES
    assert found.meta == {"kind": "pdf", "extraction": "pypdf", "pages": "1"}
    # Encrypted with only an owner password (copy/print restrictions): the empty user password opens it.
    assert extract.pdf_text(_rewritten(good, user_password="", owner_password="owner")).text.startswith("Harbour")

    cases = {
        "blank page": (_blank_pdf(), "no text layer (scanned PDF?)"),
        "user password": (_rewritten(good, user_password="secret", owner_password="owner"),
                          "encrypted PDF (a password is needed to read it)"),
        "garbage after the header": (b"%PDF-1.4\n" + bytes(range(256)) * 20, "malformed PDF (PdfStreamError: "),
        "cut in half": (good[: len(good) // 2], "malformed PDF ("),
        "no xref": (b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\n%%EOF", "malformed PDF ("),
    }
    for name, (data, reason) in cases.items():
        with pytest.raises(DocumentError) as caught:
            extract.pdf_text(data)
        assert str(caught.value).startswith(reason), (name, str(caught.value))
        assert "\n" not in str(caught.value)
    with pytest.raises(DocumentError, match=r"PDF has 1 pages, over the 0-page limit"):
        extract.pdf_text(good, max_pages=0)


def test_folder_and_manifest_take_html_and_pdf(tmp_path: Path, no_network: None) -> None:
    root = tmp_path / "in"
    (root / "web").mkdir(parents=True)
    (root / "web" / "bridge.html").write_bytes((ARTICLES / "harbour-bridge.html").read_bytes())
    (root / "web" / "market.HTM").write_bytes((ARTICLES / "night-market.html").read_bytes())
    (root / "web" / "app.html").write_bytes((ARTICLES / "js-only.html").read_bytes())
    (root / "harbour-report.pdf").write_bytes(text_pdf(REPORT_LINES))
    (root / "scan.pdf").write_bytes(_blank_pdf())
    (root / "locked.pdf").write_bytes(_rewritten(text_pdf(REPORT_LINES), user_password="pw", owner_password="o"))
    (root / "broken.pdf").write_bytes(b"%PDF-1.4\nnot really")
    (root / "junk.txt").write_bytes(bytes(range(1, 9)) * 400)
    (root / "saved-page.txt").write_bytes(b"  <!doctype html><html><body><article><p>" + b"Saved as text. " * 30
                                          + b"</p></article></body></html>")
    (root / "plain.md").write_text("# Plain notes\n\nNothing to extract here.")
    items = {item.id: item for item in sources.iter_inputs((str(root),))}
    assert set(items) == {"web__bridge", "web__market", "web__app", "harbour-report", "scan", "locked", "broken",
                          "junk", "saved-page", "plain"}

    bridge = items["web__bridge"]
    assert isinstance(bridge, Document) and bridge.title == "Harbour bridge reopens after two years of repairs"
    assert "cable" in bridge.text and "Privacy" not in bridge.text
    assert bridge.meta is not None and bridge.meta["extraction"] == "trafilatura"
    assert isinstance(items["web__market"], Document) and "fish hall" in items["web__market"].text
    report = items["harbour-report"]
    assert isinstance(report, Document) and report.title == "Harbour authority quarterly report"
    assert report.meta == {"kind": "pdf", "extraction": "pypdf", "pages": "1"}
    assert isinstance(items["saved-page"], Document) and items["saved-page"].meta["kind"] == "html"
    plain = items["plain"]
    assert isinstance(plain, Document) and plain.meta is None and plain.title == "Plain notes"

    reasons = {doc_id: item.reason for doc_id, item in items.items() if isinstance(item, RejectedDocument)}
    assert reasons == {
        "web__app": "no main text found in the HTML page",
        "scan": "no text layer (scanned PDF?)",
        "locked": "encrypted PDF (a password is needed to read it)",
        "broken": reasons["broken"],
        "junk": reasons["junk"],
    }
    assert reasons["broken"].startswith("malformed PDF (")
    assert reasons["junk"].startswith("binary data, not text (")

    manifest = root / "list.jsonl"
    manifest.write_text("\n".join(json.dumps(row) for row in [
        {"id": "m-bridge", "path": "web/bridge.html", "title": "Given title"},
        {"id": "m-report", "path": "harbour-report.pdf"},
        {"id": "m-scan", "path": "scan.pdf"},
    ]) + "\n")
    rows = {item.id: item for item in sources.iter_manifest(manifest)}
    assert isinstance(rows["m-bridge"], Document) and rows["m-bridge"].title == "Given title"
    assert isinstance(rows["m-report"], Document) and "cranes" in rows["m-report"].text
    assert isinstance(rows["m-scan"], RejectedDocument) and rows["m-scan"].reason == "no text layer (scanned PDF?)"

    assert sources.count_items((str(root),)) == 10
    sources.check_inputs((str(root / "harbour-report.pdf"), str(root / "web" / "bridge.html")))
    single = list(sources.iter_inputs((str(root / "harbour-report.pdf"),)))
    assert [item.id for item in single] == ["harbour-report"] and isinstance(single[0], Document)
