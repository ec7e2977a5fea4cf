"""One reusable test web server: stdlib `http.server` on 127.0.0.1 in a daemon thread, answering from a function.

Tests that need a peer other than `audiosum serve` (a feed site, a server that echoes the key, one that sends rate-limit
hints, a relay that holds requests) give it an `answer(request) -> Reply` and read back what it saw. Nothing here
listens anywhere but loopback.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Request:
    method: str
    target: str  # the request line's target as sent: a path with its query, or an absolute URL through a proxy
    headers: Message
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.target).path


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    reason: str | None = None  # the status line's reason phrase (some tests echo secrets into it)
    chunks: Iterable[bytes] | None = None  # streamed without Content-Length, flushed chunk by chunk


Answer = Callable[[Request], "Reply | None"]  # None: close the connection without answering


class LoopbackSite:
    """`answer` decides every reply; `requests` keeps every request, in arrival order."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.port = int(self.httpd.server_address[1])
        self.base = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True, name=f"loopback-{self.port}").start()

    def url(self, path: str) -> str:
        return self.base + path

    def count(self, prefix: str = "/") -> int:
        """How many requests whose path starts with `prefix` arrived."""
        with self._lock:
            return sum(1 for request in self.requests if request.path.startswith(prefix))

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> LoopbackSite:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # keep the test output clean
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(self.command, self.path, self.headers, self.rfile.read(length) if length else b"")
                with site._lock:
                    site.requests.append(request)
                reply = site.answer(request)
                if reply is None:
                    self.close_connection = True
                    return
                self._send(reply)

            do_GET = do_POST = do_HEAD = _serve  # noqa: N815 - http.server's names

            def _send(self, reply: Reply) -> None:
                try:
                    self.send_response(reply.status, reply.reason)
                    self.send_header("Content-Type", reply.content_type)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    if reply.chunks is None:
                        self.send_header("Content-Length", str(len(reply.body)))
                        self.end_headers()
                        if self.command != "HEAD":
                            self.wfile.write(reply.body)
                        return
                    self.send_header("Connection", "close")
                    self.close_connection = True
                    self.end_headers()
                    for chunk in reply.chunks:
                        self.wfile.write(chunk)
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout or size-cap test), as it should

        return Handler


def serving(answer: Answer) -> Iterator[LoopbackSite]:
    """For fixtures: `yield from serving(answer)` starts a site and closes it however the test ends."""
    with LoopbackSite(answer) as site:
        yield site
