"""Markdown and HTML headings (levels 1 and 2) become chapters: titled spans into the document's text.

Reads only strings it is given and never changes the text; a heading it cannot place gives no chapter.
"""

from __future__ import annotations

import re

from pipeline.models import Chapter
from pipeline.sources.blocks import chapters_from_starts, one_line

_NEWLINE = re.compile(r"\r\n?|\n")  # markdown-it's own line ends, so its line numbers match these offsets


def markdown_chapters(text: str) -> tuple[Chapter, ...]:
    """Chapters at each # and ## heading (ATX or setext; none inside code blocks), by markdown-it's parse."""
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").parse(text)
    line_starts = [0] + [match.end() for match in _NEWLINE.finditer(text)]
    starts: list[tuple[str, int]] = []
    for index, token in enumerate(tokens):
        if token.type == "heading_open" and token.tag in ("h1", "h2") and token.map:
            inline = tokens[index + 1] if index + 1 < len(tokens) else None
            words = "".join(child.content for child in (inline.children or ()) if child.type in
                            ("text", "code_inline", "softbreak")) if inline is not None else ""
            if one_line(words) and token.map[0] < len(line_starts):
                starts.append((one_line(words), line_starts[token.map[0]]))
    return chapters_from_starts(text, starts)


def html_chapters(html: str | bytes, text: str) -> tuple[Chapter, ...]:
    """Chapters at the page's <h1> and <h2> headings, found (in order, each at a line start) in `text`, the
    page's extracted main text; headings the extraction left out (navigation, boilerplate) are skipped."""
    from lxml import etree
    from lxml import html as lxml_html

    try:
        root = lxml_html.fromstring(html, parser=lxml_html.HTMLParser(no_network=True, remove_comments=True))
    except (etree.ParserError, ValueError, TypeError):
        return ()
    starts: list[tuple[str, int]] = []
    position = 0
    for element in root.iter("h1", "h2"):
        title = one_line(element.text_content())
        if not title:
            continue
        found = text.find(title, position)
        while found > 0 and text[found - 1] != "\n":
            found = text.find(title, found + 1)
        if found >= 0:
            starts.append((title, found))
            position = found + len(title)
    return chapters_from_starts(text, starts)
