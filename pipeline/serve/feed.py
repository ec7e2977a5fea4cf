"""`audiosum serve --feed OUT`: GET /feed/NAME for podcast.xml and the files it links to, nothing else.

The published set is read from podcast.xml itself (enclosure and transcript URLs); a name is served only if it is a
regular file directly in OUT, not a symlink, and resolves inside OUT. Never writes, never lists the folder.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from defusedxml import ElementTree as SafeTree
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from pipeline.serve.errors import error_response, quoted

# The feed audiosum run writes, read here as any podcast client would read it (tests/serve checks the names match).
FEED_NAME = "podcast.xml"
PODCAST = "https://podcastindex.org/namespace/1.0"
MAX_FEED_BYTES = 16 * 1024 * 1024  # a podcast.xml larger than this is not read (keep=100 episodes is ~1 MB)
_LINKS = ("enclosure", f"{{{PODCAST}}}transcript")


@dataclass(frozen=True, slots=True)
class _Published:
    signature: tuple[int, int, int]   # podcast.xml's (inode, size, mtime_ns) when it was read
    names: frozenset[str]


def linked_names(feed_xml: bytes) -> frozenset[str]:
    """The file names podcast.xml links to: the last path segment of each enclosure and transcript URL."""
    try:
        root = SafeTree.fromstring(feed_xml)
    except (SafeTree.ParseError, ValueError):  # defusedxml's refusals (entities, DTDs) are ValueErrors
        return frozenset()
    names = set()
    for tag in _LINKS:
        for element in root.iter(tag):
            name = unquote(urlsplit(element.get("url", "")).path.rsplit("/", 1)[-1])
            if name and "/" not in name and "\\" not in name and not name.startswith("."):
                names.add(name)
    return frozenset(names)


class FeedFolder:
    """One output folder's published files; podcast.xml is re-read whenever it changes."""

    def __init__(self, folder: Path) -> None:
        self.root = folder.resolve()
        self._published = _Published((0, 0, 0), frozenset())

    def published(self) -> frozenset[str]:
        feed = self._regular_file(FEED_NAME)
        if feed is None:
            return frozenset()
        info = feed.stat()
        signature = (info.st_ino, info.st_size, info.st_mtime_ns)
        if signature != self._published.signature:
            names = linked_names(feed.read_bytes()) if info.st_size <= MAX_FEED_BYTES else frozenset()
            self._published = _Published(signature, names | {FEED_NAME})
        return self._published.names

    def _regular_file(self, name: str) -> Path | None:
        """OUT/name if it is a regular file there: not a symlink, and resolving inside OUT."""
        if not name or "/" in name or "\\" in name or "\0" in name or name.startswith("."):
            return None
        path = self.root / name
        try:
            info = os.lstat(path)
        except (OSError, ValueError):
            return None
        if not stat.S_ISREG(info.st_mode) or path.resolve().parent != self.root:
            return None
        return path

    def file(self, name: str) -> Path | None:
        return self._regular_file(name) if name in self.published() else None

    async def handler(self, request: Request) -> Response:
        name = request.path_params["name"]
        path = self.file(name)
        if path is None:
            return error_response(404, f"No such file: {quoted(name)}.", code="unknown_url")
        media = "application/rss+xml" if name == FEED_NAME else None
        return FileResponse(path, media_type=media)
