"""Word, PowerPoint, OpenDocument and RTF files become text a voice reads, with their metadata and chapters."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from made_documents import FURNITURE, NOTE_TEXT, make_docx, make_odt, make_pptx

from pipeline import sources
from pipeline.models import Document
from pipeline.sources import extract

MARKUP = re.compile(r"^\s*(#|[-*•]\s)|\|", re.M)  # Markdown headings, bullets, table bars: never spoken


def read(path: Path) -> Document:
    item = sources.document_from_path(path)
    assert isinstance(item, Document), getattr(item, "reason", item)
    return item


def chapter_texts(document: Document) -> dict[str, str]:
    return {c.title: document.text[c.start:c.end] for c in document.chapters}


def test_docx_headings_lists_tables_and_metadata(tmp_path: Path) -> None:
    document = read(make_docx(tmp_path / "harbour.docx", title="The Harbour Book", author="Ada Lovelace"))
    assert document.title == "The Harbour Book"
    assert document.meta is not None
    assert (document.meta["author"], document.meta["language"], document.meta["kind"]) == (
        "Ada Lovelace", "en-GB", "docx")
    text = document.text
    assert FURNITURE not in text  # the header and footer are page furniture
    assert not MARKUP.search(text)
    assert "Chapter One.\n\nThe ferry left at dawn." in text  # a heading is a sentence of its own
    assert "Bring a coat.\n\nBring a map." in text  # bullets: sentences, no bullet symbol
    assert "1. Board the ferry.\n\n2. Find a seat." in text  # numbered items keep their numbers
    assert "Port: Ardrossan; Time: Eight." in text  # a table row read against its header
    # Heading 1 starts a chapter; Heading 3 stays inside its chapter; the foreword is its own opening part.
    assert [c.title for c in document.chapters] == ["The Harbour Book", "Chapter One", "Chapter Two"]
    parts = chapter_texts(document)
    assert parts["The Harbour Book"] == "A short foreword before the first chapter."
    assert parts["Chapter One"].startswith("Chapter One.") and parts["Chapter One"].endswith("Time: Eight.")
    assert parts["Chapter Two"].endswith("A smaller part inside chapter two.")


def test_pptx_slides_then_notes_in_order(tmp_path: Path) -> None:
    document = read(make_pptx(tmp_path / "deck.pptx", title="Quarterly Ferries", author="Grace Hopper"))
    assert document.title == "Quarterly Ferries" and document.meta is not None
    assert document.meta["author"] == "Grace Hopper" and document.meta["slides"] == "2"
    expected = ["Slide 1: Routes.", "Ardrossan to Brodick.", "Largs to Cumbrae.",
                "Speaker notes: Mention the winter timetable.", "Slide 2: Fares.", "Adults four pounds.",
                "Speaker notes: Children travel free."]
    assert document.text.split("\n\n") == expected


def test_odt_outline_levels_notes_lists_tables_and_metadata(tmp_path: Path) -> None:
    document = read(make_odt(tmp_path / "island.odt", title="Island Notes", author="Mary Somerville"))
    assert document.title == "Island Notes" and document.meta is not None
    assert (document.meta["author"], document.meta["language"]) == ("Mary Somerville", "en")
    text = document.text
    # The footnote does not interrupt its sentence: it is read after its section.
    assert "The lighthouse keeper wrote every night and slept by day." in text
    assert f"Notes.\n\nNote 1: {NOTE_TEXT}." in text
    assert "1. Light the lamp.\n\n2. Wind the clock." in text
    assert "Tide: High; Hour: Six." in text
    assert not MARKUP.search(text)
    assert [c.title for c in document.chapters] == ["Island Notes", "First Part", "Second Part"]
    parts = chapter_texts(document)
    assert parts["First Part"].endswith(f"Note 1: {NOTE_TEXT}.")  # the note stays in the chapter that cites it
    assert parts["Second Part"] == "Second Part.\n\nThe supply boat came on Thursdays."


def test_rtf_text_info_and_no_footnote_or_header(tmp_path: Path) -> None:
    path = tmp_path / "letter.rtf"
    path.write_bytes(b"{\\rtf1\\ansi\\ansicpg1252{\\fonttbl{\\f0 Times;}}{\\info{\\title Caf\\'e9 Letter}"
                     b"{\\author Jo March}}{\\header Page header words}\\pard Dear caf\\'e9 owner,\\par "
                     b"The tables were full{\\footnote Footnote words} all summer.\\par}")
    document = read(path)
    assert document.title == "Café Letter" and document.meta is not None and document.meta["author"] == "Jo March"
    assert document.text == "Dear café owner,\n\nThe tables were full all summer."


def test_markdown_and_html_headings_are_chapters(tmp_path: Path) -> None:
    markdown = ("\n\n# Harbour\n\nThe ferry runs twice a day.\n\n```\n# not a heading\n```\n\nSetext part\n"
                "-----------\n\nThe island is small.\n\n### Detail\n\nStill the island.\n")
    (tmp_path / "notes.md").write_text(markdown)
    document = read(tmp_path / "notes.md")
    # The leading blank lines are stripped from the text; the spans moved with it.
    assert [c.title for c in document.chapters] == ["Harbour", "Setext part"]
    parts = chapter_texts(document)
    assert parts["Harbour"].startswith("# Harbour\n") and parts["Harbour"].endswith("```")
    assert parts["Setext part"].startswith("Setext part\n---") and parts["Setext part"].endswith("Still the island.")

    page = ("<html><body><nav><h2>Menu</h2></nav><article><h1>Harbour news</h1>"
            + "<p>The ferry runs twice a day this winter, and tickets cost four pounds each way.</p>" * 3
            + "<h2>The island</h2>"
            + "<p>The island is small, and the shop opens only on Saturday mornings in winter.</p>" * 3
            + "</article></body></html>")
    found = extract.document_text(page.encode(), suffix=".html")
    # The navigation's heading is not in the main text, so it is no chapter.
    assert [(c.title, found.text[c.start:c.end].split("\n")[0]) for c in found.chapters] == [
        ("Harbour news", "Harbour news"), ("The island", "The island")]
    assert found.text[found.chapters[-1].start:found.chapters[-1].end].endswith("mornings in winter.")


@pytest.mark.parametrize("suffix", [".docx", ".pptx", ".odt", ".rtf", ".epub"])
def test_every_format_is_one_suffix_of_the_one_list(suffix: str, tmp_path: Path) -> None:
    assert suffix in sources.DOCUMENT_SUFFIXES and suffix not in sources.AUDIO_SUFFIXES
    (tmp_path / f"x{suffix}").write_bytes(b"junk")
    assert sources.input_kind(str(tmp_path / f"x{suffix}")) == "document"
    assert [p.name for p in sources.folders.walk_document_files(tmp_path, None)] == [f"x{suffix}"]
