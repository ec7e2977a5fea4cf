"""A PowerPoint deck (.pptx) becomes text a voice reads (python-pptx): each slide's text, then its speaker notes.

Must not read slide numbers, dates or footers; a damaged or bomb-like file raises DocumentError.
"""

from __future__ import annotations

import io
from typing import Any

from pipeline.errors import DocumentError, first_line
from pipeline.sources.blocks import SpokenText
from pipeline.sources.office import Read, core_meta
from pipeline.sources.packages import Package

WHAT = "PowerPoint deck (.pptx)"
SUFFIXES = frozenset({".pptx"})


def pptx_text(data: bytes) -> Read:
    Package(data, WHAT).check_xml()
    from pptx import Presentation
    from pptx.enum.shapes import PP_PLACEHOLDER

    furniture = {PP_PLACEHOLDER.SLIDE_NUMBER, PP_PLACEHOLDER.DATE, PP_PLACEHOLDER.FOOTER, PP_PLACEHOLDER.HEADER}
    titles = {PP_PLACEHOLDER.TITLE, PP_PLACEHOLDER.CENTER_TITLE}
    try:
        deck = Presentation(io.BytesIO(data))
        out = SpokenText(chapter_levels=0)
        for number, slide in enumerate(deck.slides, start=1):
            shapes = list(_flat(slide.shapes))
            kinds = {id(shape): _placeholder_kind(shape) for shape in shapes}
            title_shape = next((s for s in shapes if kinds[id(s)] in titles and s.has_text_frame), None)
            title = title_shape.text_frame.text if title_shape is not None else ""
            out.heading(f"Slide {number}: {title}" if title.strip() else f"Slide {number}", 3)
            for shape in shapes:
                if shape is title_shape or kinds[id(shape)] in furniture:
                    continue
                if getattr(shape, "has_table", False) and shape.has_table:
                    out.table([[cell.text for cell in row.cells] for row in shape.table.rows])
                elif shape.has_text_frame:
                    for paragraph in shape.text_frame.paragraphs:  # a slide's lines are points: each a sentence
                        out.item("".join(run.text for run in paragraph.runs))
            if slide.has_notes_slide:
                notes = slide.notes_slide.notes_text_frame
                if notes is not None and notes.text.strip():
                    out.paragraph(f"Speaker notes: {notes.text}")
        core = deck.core_properties
        meta = core_meta(title=core.title, author=core.author, language=core.language)
    except DocumentError:
        raise
    except Exception as exc:  # python-pptx raises KeyError, ValueError, lxml errors for damaged packages
        raise DocumentError(f"damaged {WHAT} ({type(exc).__name__}: {first_line(exc)})") from exc
    title = meta.pop("title", None)
    text, chapters = out.result(title)
    return Read(text=text, chapters=chapters, title=title, meta={"kind": "pptx", "extraction": "python-pptx",
                                                                  "slides": str(len(deck.slides)), **meta})


def _flat(shapes: Any) -> Any:
    """Shapes in their order on the slide, the shapes of a group in place of the group."""
    for shape in shapes:
        if getattr(shape, "shape_type", None) is not None and hasattr(shape, "shapes"):
            yield from _flat(shape.shapes)
        else:
            yield shape


def _placeholder_kind(shape: Any) -> Any:
    if not getattr(shape, "is_placeholder", False):
        return None
    try:
        return shape.placeholder_format.type
    except ValueError:
        return None
