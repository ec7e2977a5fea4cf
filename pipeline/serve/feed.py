"""`audiosum serve --feed OUT`: GET /feed/NAME for podcast.xml and the files it links to, nothing else.

The published set is read from podcast.xml itself (enclosure and transcript URLs); a name is served only if it is a
regular file directly in OUT, not a symlink, and resolves inside OUT, and what is sent is the file that was checked:
it is opened without following symlinks and served from that descriptor, never reopened by name. File-system work
and parsing run in a thread, off the event loop. Never writes, never lists the folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote, urlsplit

import anyio
from defusedxml import ElementTree as SafeTree
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.types import Receive, Scope, Send

from pipeline.serve.errors import error_response, quoted

# The feed audiosum run writes, read here as any podcast client would read it (tests/serve checks the names match).
FEED_NAME = "podcast.xml"
PODCAST = "https://podcastindex.org/namespace/1.0"
MAX_FEED_BYTES = 16 * 1024 * 1024  # a podcast.xml larger than this is not read (keep=100 episodes is ~1 MB)
ITUNES = "http://www.itunes.com/dtds/podcast-1.0.dtd"
# The elements (and the attribute holding the URL) whose files the feed publishes: episodes, transcripts, chapters,
# cover art.
_LINKS = (("enclosure", "url"), (f"{{{PODCAST}}}transcript", "url"), (f"{{{PODCAST}}}chapters", "url"),
          (f"{{{ITUNES}}}image", "href"))


@dataclass(frozen=True, slots=True)
class _Published:
    signature: tuple[int, int, int]   # podcast.xml's (inode, size, mtime_ns) when it was read
    names: frozenset[str]


def linked_names(feed_xml: bytes) -> frozenset[str]:
    """The file names podcast.xml links to: the last path segment of each enclosure, transcript and cover URL."""
    try:
        root = SafeTree.fromstring(feed_xml)
    except (SafeTree.ParseError, ValueError):  # defusedxml's refusals (entities, DTDs) are ValueErrors
        return frozenset()
    names = set()
    for tag, attribute in _LINKS:
        for element in root.iter(tag):
            name = unquote(urlsplit(element.get(attribute, "")).path.rsplit("/", 1)[-1])
            if name and "/" not in name and "\\" not in name and not name.startswith("."):
                names.add(name)
    return frozenset(names)


class FeedFolder:
    """One output folder's published files; podcast.xml is re-read whenever it changes."""

    def __init__(self, folder: Path) -> None:
        self.root = folder.resolve()
        self._published = _Published((0, 0, 0), frozenset())

    def published(self) -> frozenset[str]:
        opened = self._open_regular(FEED_NAME)
        if opened is None:
            return frozenset()
        with opened as feed:
            info = os.fstat(feed.fileno())
            signature = (info.st_ino, info.st_size, info.st_mtime_ns)
            if signature != self._published.signature:
                names = linked_names(feed.read(MAX_FEED_BYTES)) if info.st_size <= MAX_FEED_BYTES else frozenset()
                self._published = _Published(signature, names | {FEED_NAME})
        return self._published.names

    def _open_regular(self, name: str) -> BinaryIO | None:
        """OUT/name, opened, if it is a regular file there: not a symlink, resolving inside OUT, and the very file
        that was checked (O_NOFOLLOW, and the descriptor's device and inode are those lstat saw)."""
        if not name or "/" in name or "\\" in name or "\0" in name or name.startswith("."):
            return None
        path = self.root / name
        try:
            info = os.lstat(path)
            if not stat.S_ISREG(info.st_mode) or path.resolve().parent != self.root:
                return None
            # O_NONBLOCK: a FIFO swapped in after the lstat must not block the open.
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except (OSError, ValueError):
            return None
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode) or (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
            os.close(fd)
            return None
        return os.fdopen(fd, "rb")

    def open(self, name: str) -> BinaryIO | None:
        """The published file `name`, opened (see _open_regular); None if it is not one."""
        return self._open_regular(name) if name in self.published() else None

    async def handler(self, request: Request) -> Response:
        name = request.path_params["name"]
        opened = await asyncio.to_thread(self.open, name)
        if opened is None:
            return error_response(404, f"No such file: {quoted(name)}.", code="unknown_url")
        media = "application/rss+xml" if name == FEED_NAME else None
        response = OpenedFileResponse(opened, name, media_type=media)
        if _unchanged(request, response):
            # Apps poll podcast.xml: a copy they already hold costs a 304 and no body (RFC 9110 13.1.1, 13.1.3).
            opened.close()
            return Response(status_code=304, headers={k: response.headers[k] for k in ("etag", "last-modified")})
        return response


def _unchanged(request: Request, response: Response) -> bool:
    """Whether the client's conditional GET/HEAD says it holds this version: If-None-Match naming the ETag (weak
    comparison), else an If-Modified-Since not before Last-Modified."""
    if request.method not in ("GET", "HEAD"):
        return False
    etag = response.headers.get("etag", "")
    if (match := request.headers.get("if-none-match")) is not None:
        held = {tag.strip().removeprefix("W/") for tag in match.split(",")}
        return "*" in held or etag.removeprefix("W/") in held
    since, modified = request.headers.get("if-modified-since"), response.headers.get("last-modified")
    if since is None or modified is None:
        return False
    try:
        return parsedate_to_datetime(since) >= parsedate_to_datetime(modified)
    except (TypeError, ValueError):
        return False


class OpenedFileResponse(FileResponse):
    """Starlette's FileResponse (ranges, HEAD, ETag) over a file already opened and checked, instead of a path that
    it would open again by name. The file is closed when the answer is sent."""

    def __init__(self, file: BinaryIO, name: str, media_type: str | None = None) -> None:
        super().__init__(name, media_type=media_type, stat_result=os.fstat(file.fileno()))
        self._file = file

    @contextlib.asynccontextmanager
    async def _open_file(self) -> AsyncIterator[Any]:
        yield anyio.wrap_file(self._file)  # reads run in a thread; each handler seeks before reading a range

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        extensions = {k: v for k, v in scope.get("extensions", {}).items() if k != "http.response.pathsend"}
        try:
            # Without pathsend: it would hand the server the name to open, not this file.
            await super().__call__({**scope, "extensions": extensions}, receive, send)
        finally:
            self._file.close()
