"""What may be shown in reports, sidecars and logs: URLs without their credentials, text without control characters.

Pure string functions; the one place that decides how outside text is made safe to display.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit


def url_without_credentials(url: str) -> str:
    """scheme://host[:port]/path: no user:password part, no query string, no fragment."""
    parsed = urlsplit(url)
    host = parsed.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address keeps its brackets
    try:
        port = parsed.port
    except ValueError:  # out of range or not a number: shown without it rather than failing the caller
        port = None
    netloc = f"{host}:{port}" if port else host
    return urlunsplit((parsed.scheme, netloc, parsed.path, "", ""))


# C0 and C1 controls but tab and newline, and the Unicode line separators: a file name or a title can carry terminal
# escapes (ESC, BEL) or a CR that would hide what precedes it; they are invalid in HTML text too.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def visible(text: str, *, one_line: bool = False) -> str:
    """text with every control character shown as \\xNN (\\uNNNN), so nothing is hidden or acted on;
    one_line: newlines become spaces as well (a failure's reason)."""
    if one_line:
        text = text.replace("\n", " ")
    return _CONTROLS.sub(lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}", text)
