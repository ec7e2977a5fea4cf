"""An RTF file becomes plain text (striprtf), its \\info title and author kept for the sidecar.

Must not read footnotes, headers or footers; a file that is not RTF, or only control words, raises DocumentError.
"""

from __future__ import annotations

import re

from pipeline.errors import DocumentError, first_line
from pipeline.sources.blocks import SpokenText
from pipeline.sources.office import Read, core_meta

WHAT = "RTF document"
SUFFIXES = frozenset({".rtf"})
_CODEPAGE = re.compile(rb"\\ansicpg(\d{3,5})")
_INFO = {"title": re.compile(r"\{\\title\s?((?:[^{}\\]|\\.)*)\}"),
         "author": re.compile(r"\{\\author\s?((?:[^{}\\]|\\.)*)\}")}
_CELLS = re.compile(r"\s*\|\s*")


def rtf_text(data: bytes) -> Read:
    from striprtf.striprtf import rtf_to_text

    if not data.lstrip().startswith(b"{\\rtf"):
        raise DocumentError(f"not an {WHAT}: no {{\\rtf header")
    codepage = _CODEPAGE.search(data[:4096])
    encoding = f"cp{codepage.group(1).decode()}" if codepage else "cp1252"
    try:
        "".encode(encoding)
    except LookupError:
        encoding = "cp1252"
    # RTF is 7-bit text with escapes; latin-1 maps each byte to one character, so nothing is lost on the way.
    raw = data.decode("latin-1")
    try:
        plain = rtf_to_text(raw, encoding=encoding, errors="replace")
        info = {key: rtf_to_text("{\\rtf1 " + found.group(1) + "}", encoding=encoding, errors="replace")
                for key, pattern in _INFO.items() if (found := pattern.search(raw[:65536])) is not None}
    except (ValueError, IndexError, RecursionError) as exc:
        raise DocumentError(f"damaged {WHAT} ({type(exc).__name__}: {first_line(exc)})") from exc
    out = SpokenText(chapter_levels=0)
    for line in plain.splitlines():
        # striprtf writes a table row as cells between bars; a voice reads them as a list of items.
        out.paragraph(_CELLS.sub("; ", line.strip().strip("|")) if "|" in line else line)
    meta = core_meta(**info)
    title = meta.pop("title", None)
    text, _ = out.result(title)
    if not text.strip():
        raise DocumentError(f"no text in the {WHAT} (only control words)")
    return Read(text=text, title=title, meta={"kind": "rtf", "extraction": "striprtf", **meta})
