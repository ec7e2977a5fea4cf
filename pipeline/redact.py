"""What of a URL may be shown in reports, sidecars and logs: keys hide in user:password parts and query strings.

Pure string functions; the only place that decides how a URL is cut down for display.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def url_without_credentials(url: str) -> str:
    """scheme://host[:port]/path: no user:password part, no query string, no fragment."""
    parsed = urlsplit(url)
    host = parsed.hostname or ""
    netloc = f"{host}:{parsed.port}" if parsed.port else host
    return urlunsplit((parsed.scheme, netloc, parsed.path, "", ""))
