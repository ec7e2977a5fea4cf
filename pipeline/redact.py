"""What may be shown in reports, sidecars and logs: URLs without their credentials, text without control characters,
server strings without the key.

Pure string functions; the one boundary every string from a server or a URL passes before it is stored or shown.
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
# escapes (ESC, BEL) or a CR that would hide what precedes it; they are invalid in HTML text too. Lone surrogates
# (a JSON "\ud800" decodes to one) cannot be encoded as UTF-8: written to state, a file or stderr they crash the
# writer, so they are shown as \udXXX like the controls.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def well_formed(text: str) -> bool:
    """Whether text can be written as UTF-8: no lone surrogate (a server's JSON can carry one)."""
    return _SURROGATE.search(text) is None


def visible(text: str, *, one_line: bool = False) -> str:
    """text with every control character shown as \\xNN (\\uNNNN), so nothing is hidden or acted on;
    one_line: newlines become spaces as well (a failure's reason)."""
    if one_line:
        text = text.replace("\n", " ")
    return _CONTROLS.sub(lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}", text)


MAX_QUOTED_CHARS = 200
# Secrets a server (or a proxy in front of it) may echo back: OpenAI-style keys and bearer tokens, whatever the key
# this run sent (a server can echo another client's key, or a key the user rotated).
_SECRET_SHAPES = re.compile(r"(?i)\b(?:sk|rk|pk|sess)-[A-Za-z0-9_\-]{8,}|\bbearer\s+[^\s\"',;]+")
REDACTED = "[redacted]"


def without_secrets(text: str, secret: str | None = None) -> str:
    """text with the given secret and anything shaped like an API key or bearer token replaced by [redacted]."""
    if secret:
        text = text.replace(secret, REDACTED)
    return _SECRET_SHAPES.sub(REDACTED, text)


def quoted(text: str, limit: int = MAX_QUOTED_CHARS) -> str:
    """At most `limit` characters of text, marked with an ellipsis when cut (an error message quoting a value)."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def from_server(value: object, secret: str | None = None, *, limit: int = MAX_QUOTED_CHARS) -> str | None:
    """A string a server sent (error message, code, type, param, request id, cause label) made safe to store and show:
    no secret, no control characters, one line, at most `limit` characters. None stays None; other types become text.
    """
    if value is None:
        return None
    return quoted(visible(without_secrets(str(value), secret), one_line=True), limit)


def shown_input(raw: str) -> str:
    """An input as it may be recorded or logged: a URL without credentials, query or fragment; a path as given."""
    return url_without_credentials(raw) if "://" in raw else raw


def for_log(text: str, secret: str | None = None) -> str:
    """A message or traceback as it may go into a JSON log line on stderr: no secret, control characters shown
    (newlines kept: JSON escapes them), however it was made."""
    return visible(without_secrets(text, secret))
