"""Sources stream documents and turn every bad item into a RejectedDocument with a reason."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline import sources
from pipeline.errors import DocumentError, UsageError
from pipeline.models import Document, RejectedDocument


@pytest.mark.parametrize("raw, expected", [
    ("notes/2026 plan", "notes__2026_plan"),
    ("../../etc/passwd", "etc__passwd"),
    ("/abs/path", "abs__path"),
    ("..\\..\\win", "win"),
    (".hidden", "hidden"),
    ("ok-name_1.v2", "ok-name_1.v2"),
])
def test_safe_doc_id_never_escapes(raw: str, expected: str) -> None:
    assert sources.safe_doc_id(raw) == expected


def test_safe_doc_id_rejects_empty_and_shortens_long() -> None:
    with pytest.raises(DocumentError):
        sources.safe_doc_id("../..")
    long_id = sources.safe_doc_id("x" * 500)
    assert len(long_id) <= sources.MAX_ID_LENGTH
    assert long_id != sources.safe_doc_id("x" * 501)


def test_folder_is_streamed_in_order_and_skips_hidden_and_output(tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_text("Second document here.")
    (tmp_path / "a.md").write_text("# Title\n\nFirst document here.")
    (tmp_path / "skip.pages").write_bytes(b"PK\x03\x04")  # a format audiosum does not read
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "x.txt").write_text("hidden")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("previous output")
    items = sources.iter_inputs((str(tmp_path),), skip_dir=tmp_path / "out")
    assert not isinstance(items, list)
    docs = list(items)
    assert [d.id for d in docs] == ["a", "b"]
    assert isinstance(docs[0], Document) and docs[0].title == "Title"


def test_symlink_escape_fifo_and_csv_columns(tmp_path: Path) -> None:
    root = tmp_path / "in"
    root.mkdir()
    (tmp_path / "outside.txt").write_text("Secret text that must not be read.")
    os.symlink(tmp_path / "outside.txt", root / "link.txt")
    os.mkfifo(root / "pipe.txt")
    items = {d.id: d for d in sources.iter_folder(root)}
    assert isinstance(items["link"], RejectedDocument) and "outside" in items["link"].reason
    assert isinstance(items["pipe"], RejectedDocument) and "regular file" in items["pipe"].reason

    manifest = root / "list.csv"
    manifest.write_text('id,text,title\nok,"A fine line of text.",Fine\nextra,"Text",T,surplus\nshort\n')
    rows = list(sources.iter_manifest(manifest))
    assert isinstance(rows[0], Document) and rows[0].title == "Fine"
    assert isinstance(rows[1], RejectedDocument) and "more columns" in rows[1].reason
    assert isinstance(rows[2], RejectedDocument) and "fewer columns" in rows[2].reason


def test_encodings(tmp_path: Path) -> None:
    (tmp_path / "bom.txt").write_bytes("\ufeffHello with a byte order mark.".encode("utf-8"))
    (tmp_path / "utf16.txt").write_bytes("Hello in UTF-16.".encode("utf-16"))
    docs = {d.id: d for d in sources.iter_folder(tmp_path)}
    assert docs["bom"].text == "Hello with a byte order mark."
    assert docs["utf16"].text == "Hello in UTF-16."


def test_unknown_input_kind_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "doc.pages").write_bytes(b"PK\x03\x04")
    with pytest.raises(UsageError, match=r"\.docx.*\.epub"):  # the message lists what is read, from the table
        sources.check_inputs((str(tmp_path / "doc.pages"),))
    with pytest.raises(UsageError):
        sources.check_inputs(())


def test_report_is_a_reserved_id() -> None:
    assert sources.safe_doc_id("report") == "report_"
    assert sources.safe_doc_id("Report") == "Report_"
    assert sources.safe_doc_id("notes/report") == "notes__report"
    assert sources.safe_doc_id("dry-run") == "dry-run_"  # OUT/dry-run.json is the dry run's plan


def test_a_csv_field_bigger_than_the_csv_default_is_read(tmp_path: Path) -> None:
    manifest = tmp_path / "big.csv"
    text = "The tide tables were updated. " * 6000  # 180,000 characters
    manifest.write_text(f'id,text\nbig,"{text}"\nsmall,"Short and fine."\n')
    items = list(sources.iter_manifest(manifest))
    assert [type(i).__name__ for i in items] == ["Document", "Document"]
