"""Text and HTML that is not UTF-8: decoded by its BOM, its declaration or detection, or refused under the floor."""

from __future__ import annotations

import codecs
import random
from pathlib import Path

import pytest
from made_documents import CP1252_TEXT, make_cp1252

from pipeline import sources
from pipeline.errors import DocumentError
from pipeline.models import Document, RejectedDocument
from pipeline.sources import encodings, extract

# Texts in the encodings people's old files are in, long enough (a paragraph) for a detector to judge.
LEGACY = [
    ("windows-1252", "cp1252", CP1252_TEXT),
    ("windows-1252", "latin-1", "Il était une fois une fée qui habitait près d'une forêt. Où étiez-vous ? " * 4),
    ("windows-1252", "cp1252", "He said “hello” and she said ‘goodbye’ – then left… The end — really. " * 6),
    ("windows-1250", "cp1250", "Příliš žluťoučký kůň úpěl ďábelské ódy. Dnes půjdeme do města na náměstí. " * 4),
    ("windows-1251", "cp1251", "Привет, как дела? Сегодня хорошая погода, и мы идём гулять в парк.\n" * 3),
    ("koi8-r", "koi8-r", "Привет, как дела? Сегодня хорошая погода, и мы идём гулять в парк.\n" * 3),
    ("windows-1253", "cp1253", "Καλημέρα σας. Σήμερα ο καιρός είναι πολύ καλός και θα πάμε στη θάλασσα.\n" * 3),
    ("shift_jis", "shift_jis", "今日は良い天気ですね。公園に散歩に行きましょう。\n" * 3),
    ("gb18030", "gbk", "今天天气很好，我们去公园散步吧。这是一个测试文件。\n" * 3),
]


@pytest.mark.parametrize("label, codec, text", LEGACY, ids=[f"{c}-{i}" for i, (_, c, _) in enumerate(LEGACY)])
def test_legacy_text_is_decoded_by_detection(label: str, codec: str, text: str) -> None:
    decoded = encodings.decode(text.encode(codec))
    assert decoded.text == text
    assert (decoded.encoding, decoded.method) == (label, "detected")
    assert decoded.confidence is not None and decoded.confidence >= encodings.CONFIDENCE_FLOOR
    meta = decoded.meta()
    assert meta["encoding"] == label and float(meta["encoding_confidence"]) == decoded.confidence


@pytest.mark.parametrize("bom, codec", [(codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
                                        (codecs.BOM_UTF16_BE, "utf-16-be"), (codecs.BOM_UTF32_LE, "utf-32-le")])
def test_a_bom_is_obeyed(bom: bytes, codec: str) -> None:
    text = "Grüße aus Köln, with a byte order mark."
    decoded = encodings.decode(bom + text.encode(codec))
    assert (decoded.text, decoded.encoding, decoded.method) == (text, codec, "bom")
    assert decoded.meta() == {"encoding": codec, "encoding_source": "bom", "encoding_confidence": "1.00"}


def test_a_bom_wins_over_what_the_bytes_look_like() -> None:
    # Without the mark these bytes are valid UTF-8 too; the mark says they are UTF-16, and that is obeyed.
    text = "Ascii words only"
    assert encodings.decode(codecs.BOM_UTF16_LE + text.encode("utf-16-le")).text == text


def test_utf8_is_taken_as_it_is_and_records_nothing() -> None:
    decoded = encodings.decode("Crème brûlée".encode())
    assert (decoded.text, decoded.method, decoded.meta()) == ("Crème brûlée", "utf-8", {})


@pytest.mark.parametrize("data", [
    "café au lait".encode("latin-1"),  # 12 bytes: every Western code page reads it, none can be preferred
    "Zażółć gęślą".encode("iso8859_2"),
])
def test_too_little_to_tell_fails_with_a_reason(data: bytes) -> None:
    with pytest.raises(DocumentError, match=r"not valid UTF-8 \(byte 0x.. at offset \d+\), and its encoding "
                                            r"cannot be told: .* under the 0\.75 floor"):
        encodings.decode(data)


def test_noise_is_not_read_as_text() -> None:
    noise = bytes(byte | 0x80 for byte in random.Random(3).randbytes(3000))  # high bytes only, no NUL
    with pytest.raises(DocumentError, match=r"not valid UTF-8"):
        encodings.decode(noise)


def test_html_declared_charset_is_used_and_recorded() -> None:
    page = ('<html><head><meta charset="windows-1252"><title>Café</title></head><body><article><p>'
            + "The café’s owner — a naïve man — poured coffee for everyone in the square. " * 6
            + "</p></article></body></html>").encode("cp1252")
    found = extract.document_text(page, suffix=".html")
    assert "The café’s owner — a naïve man" in found.text
    assert found.meta["encoding"] == "windows-1252" and found.meta["encoding_source"] == "declared"


def test_html_without_a_declaration_is_detected() -> None:
    page = ("<html><body><article><p>" + CP1252_TEXT * 2 + "</p></article></body></html>").encode("cp1252")
    found = extract.document_text(page, suffix=".html")
    assert "naïve señor from Zürich" in found.text
    assert (found.meta["encoding"], found.meta["encoding_source"]) == ("windows-1252", "detected")


def test_a_wrong_declaration_gives_way_to_the_bytes() -> None:
    page = ('<html><head><meta charset="utf-8"></head><body><article><p>' + CP1252_TEXT * 2
            + "</p></article></body></html>").encode("cp1252")
    found = extract.document_text(page, suffix=".html")
    assert "naïve señor" in found.text and found.meta["encoding_source"] == "detected"


def test_folder_document_carries_encoding_in_meta_and_short_file_fails_alone(tmp_path: Path) -> None:
    make_cp1252(tmp_path / "old.txt")
    (tmp_path / "tiny.txt").write_bytes("café".encode("latin-1"))
    (tmp_path / "fine.txt").write_text("Plain UTF-8 text.")
    items = {item.id: item for item in sources.iter_folder(tmp_path)}
    old = items["old"]
    assert isinstance(old, Document) and old.text == CP1252_TEXT.strip()
    assert old.meta is not None and old.meta["encoding"] == "windows-1252"
    assert float(old.meta["encoding_confidence"]) >= encodings.CONFIDENCE_FLOOR
    assert isinstance(items["tiny"], RejectedDocument) and "UTF-8" in items["tiny"].reason
    assert isinstance(items["fine"], Document) and items["fine"].meta is None


def test_detection_reads_a_sample_and_the_whole_file_must_agree() -> None:
    # The first 64 KiB are Windows-1252; a byte cp1252 cannot decode (0x81) comes after them.
    data = CP1252_TEXT.encode("cp1252") * (encodings.MAX_DETECTION_BYTES // 300) + b" \x81 tail"
    with pytest.raises(DocumentError, match=r"not windows-1252 either \(byte 0x81"):
        encodings.decode(data)
