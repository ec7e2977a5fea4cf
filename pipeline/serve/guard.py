"""What stands in front of every `audiosum serve` route: the Host allow-list, no cross-site requests (a browser's
foreign Origin on anything but GET/HEAD), JSON-only POSTs (multipart uploads only when there is a key), a body cap
counted while the body streams in, a cap on the body bytes held by all requests at once, read deadlines for headers and
body, a connection limit that answers instead of stalling, and no WebSocket at all.

Decides whether a request may reach the app and how much of it may be read; it never parses a body and knows no
route. Every refusal is an OpenAI-shaped error.
"""

from __future__ import annotations

import asyncio
import ipaddress
import resource
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline.serve.errors import CLOSE, ApiFailure, error_response, quoted, raw_error
from pipeline.serve.limits import retry_after_headers

MB = 1024 * 1024
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")
HEADER_BYTES = 16 * 1024       # h11 refuses a request line plus headers larger than this (400)
_HOST_OK = "audiosum.host_allowed"
# What a page on any site may make a browser send here without asking (a link, an image, a podcast player's fetch).
# No GET or HEAD route changes anything or runs work worth a refusal, and no answer carries CORS headers, so such a
# page cannot read what comes back; most of these requests carry no Origin to check anyway.
CROSS_SITE_METHODS = frozenset({"GET", "HEAD"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class GuardLimits:
    max_body_bytes: int = 25 * MB
    header_timeout_s: float = 10.0   # from connecting (or the previous answer) to the end of the headers
    body_timeout_s: float = 60.0     # from the end of the headers to the end of the body
    keep_alive_s: int = 5            # an idle kept-alive connection is closed after this
    max_connections: int = 0         # uvicorn's limit_concurrency; 0: half the open-file limit (see connection_limit)
    linger_s: float = 2.0            # after refusing a body mid-upload, how long its remainder is read and dropped
    bodies_in_flight_bytes: int = 0  # body bytes held by all requests at once; 0: twice max_body_bytes
    busy_retry_after_s: float = 1.0  # what a 503 for too many body bytes in flight asks the client to wait

    @property
    def in_flight_bytes(self) -> int:
        return self.bodies_in_flight_bytes or 2 * self.max_body_bytes


def is_loopback(host: str) -> bool:
    """True for names and addresses that only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def allowed_hosts(bound: str, extra: Sequence[str] = ()) -> tuple[str, ...]:
    """The Host header values accepted: the loopback names, the bound address (unless it is a wildcard such as
    0.0.0.0, which no client writes), and `extra` (exact names, `*.example.com`, or `*`). ValueError for a bad one."""
    names = list(LOOPBACK_NAMES)
    bare = bound.strip().strip("[]")
    try:
        address = ipaddress.ip_address(bare)
        if not address.is_unspecified:
            names.append(f"[{bare}]" if address.version == 6 else bare)
    except ValueError:
        names.append(bare)
    for pattern in extra:
        pattern = pattern.strip().lower()
        if not pattern or "*" in pattern[1:] or (pattern.startswith("*") and pattern != "*"
                                                 and not pattern.startswith("*.")):
            raise ValueError(f"{pattern!r} is not a host name, an address, '*.domain' or '*'")
        names.append(pattern)
    return tuple(dict.fromkeys(name.lower() for name in names))


def connection_limit(limits: GuardLimits) -> int:
    """The connection limit to give uvicorn: as configured, else half the open-file limit (at most 1024), so that a
    flood of connections is answered 503 while descriptors remain for the pool, the files served and new accepts."""
    if limits.max_connections > 0:
        return limits.max_connections
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1024
    return max(8, min(1024, soft // 2))


# -- the ASGI layer ---------------------------------------------------------------------------------------------

async def _host_allowed(scope: Scope, receive: Receive, send: Send) -> None:
    scope[_HOST_OK] = True


async def _discard(message: Message) -> None:
    pass


class BodyBudget:
    """The request-body bytes all requests hold at once (from arrival until their answer is sent), so that a few
    large bodies parsed and answered together cannot take the server's memory; past it, a 503 with retry-after."""

    def __init__(self, limit: int, retry_after_s: float) -> None:
        self.limit = limit
        self.held = 0
        self._retry_after_s = retry_after_s

    def refusal(self, size: int) -> ApiFailure | None:
        """The 503 for a body of `size` more bytes, if they do not fit now."""
        if self.held + size <= self.limit:
            return None
        return ApiFailure(503, f"The server is holding too many request bodies ({self.limit // MB} MB in flight); "
                          "retry shortly.", error_type="server_error", code="server_overloaded",
                          headers={**retry_after_headers(self._retry_after_s), **CLOSE}, kind="bodies_in_flight")

    def take(self, size: int) -> None:
        refusal = self.refusal(size)
        if refusal is not None:
            raise refusal
        self.held += size

    def release(self, size: int) -> None:
        self.held -= size


class RequestGuard:
    """ASGI middleware: Host, Content-Type and body checks, then the app with a receive that enforces the body cap,
    the bytes-in-flight budget and the deadline (raising ApiFailure 413/503/408 into the app, which answers it like
    any other refusal). WebSocket scopes are refused outright: the server speaks no WebSocket."""

    def __init__(self, app: ASGIApp, limits: GuardLimits, hosts: Sequence[str],
                 multipart_paths: Sequence[str] = (), keyed: bool = False) -> None:
        self.app = app
        self.multipart_paths = frozenset(multipart_paths)  # the uploads (POST /v1/files) that are multipart
        self.keyed = keyed  # the server has an API key: only then is multipart taken (a form cannot carry the key)
        self.limits = limits
        self.budget = BodyBudget(limits.in_flight_bytes, limits.busy_retry_after_s)
        # Starlette's own middleware decides; its plain-text refusal is dropped and answered in OpenAI's shape.
        self._host_check = TrustedHostMiddleware(_host_allowed, allowed_hosts=list(hosts), www_redirect=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            # Closing before accepting makes the server answer the handshake with a 403.
            await send({"type": "websocket.close", "code": 1008, "reason": "no WebSocket here"})
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        gate = BodyGate(headers, receive, send, self.limits, self.budget)
        refusal = await self._refusal(scope, headers)
        if refusal is not None:
            await refusal.response()(scope, gate.receive, gate.send)
            return
        try:
            await self.app(scope, gate.receive, gate.send)
        finally:
            gate.release()

    async def _refusal(self, scope: Scope, headers: Headers) -> ApiFailure | None:
        await self._host_check(scope, _no_receive, _discard)
        if not scope.pop(_HOST_OK, False):
            return ApiFailure(400, f"Invalid Host header {quoted(headers.get('host'))}: this server answers only "
                              "for its allowed host names (start it with --allowed-host NAME to add one).",
                              code="invalid_host")
        refusal = _cross_site_refusal(scope, headers)
        if refusal is not None:
            return refusal
        if scope["method"] == "POST":
            refusal = _content_type_refusal(headers, scope["path"] in self.multipart_paths, self.keyed)
            if refusal is not None:
                return refusal
        declared = _declared_length(headers)
        if declared is not None and declared > self.limits.max_body_bytes:
            return _too_large(self.limits.max_body_bytes)
        if declared:
            return self.budget.refusal(declared)  # refused before a byte is read; still counted as it arrives
        return None


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


def _cross_site_refusal(scope: Scope, headers: Headers) -> ApiFailure | None:
    """The 403 for a request a browser sent from a page that is not this server's own (its Origin header names that
    page's site), on every method but CROSS_SITE_METHODS. A request with no Origin is not a browser's cross-site one:
    browsers send it on every such method, from a form and from fetch() alike."""
    if scope["method"] in CROSS_SITE_METHODS:
        return None
    for origin in headers.getlist("origin"):
        if not _own_origin(origin, scope, headers.get("host", "")):
            return ApiFailure(403, f"Cross-site request refused: Origin {quoted(origin)} is not this server's own. "
                              "A web page on another site may not send this server requests.",
                              code="cross_site_request")
    return None


def _own_origin(origin: str, scope: Scope, host: str) -> bool:
    """Whether `origin` is the site this request was sent to: the scheme it came in on with the host and port of its
    Host header (which the allow-list has already accepted), or, for a request that came in on a loopback socket,
    another loopback name with that socket's port (http://localhost:8000 for http://127.0.0.1:8000)."""
    scheme = scope.get("scheme", "http")
    try:
        given, sent_to = urlsplit(origin), urlsplit("//" + host)
        given_port, sent_to_port = given.port, sent_to.port
    except ValueError:
        return False
    if (given.scheme != scheme or not given.hostname or given.path or given.query or given.fragment
            or given.username is not None):
        return False  # "null" (a sandboxed or file: page), another scheme, anything that is not scheme://host:port
    port = given_port or _DEFAULT_PORTS.get(scheme)
    if given.hostname == sent_to.hostname and port == (sent_to_port or _DEFAULT_PORTS.get(scheme)):
        return True
    server = scope.get("server")  # (address, port) of the socket the request came in on
    return server is not None and is_loopback(str(server[0])) and is_loopback(given.hostname) and port == server[1]


def _content_type_refusal(headers: Headers, multipart: bool = False, keyed: bool = False) -> ApiFailure | None:
    """POST bodies must say they are JSON: a browser's cross-site form (urlencoded, multipart, text/plain) cannot.
    The upload routes take multipart/form-data instead (and only it), and only when the server has a key: a form on
    any page can send multipart, but not the key."""
    given = headers.get("content-type")
    if given is None and not _has_body(headers):
        return None  # a bare POST (/stats/reset) carries nothing to misread
    media = (given or "").split(";", 1)[0].strip().lower()
    expected = "multipart/form-data" if multipart else "application/json"
    if media == expected == "multipart/form-data" and not keyed:
        return ApiFailure(403, "File uploads are off: this server has no API key, and a web page on any site can send "
                          "a multipart form. Start it with --api-key KEY (or AUDIOSUM_SERVE_API_KEY) to take them.",
                          code="api_key_required")
    if media == expected:
        return None
    return ApiFailure(415, f"Unsupported Content-Type {quoted(given)}: request bodies must be '{expected}'.",
                      code="unsupported_media_type")


def _declared_length(headers: Headers) -> int | None:
    value = headers.get("content-length")
    return int(value) if value is not None and value.strip().isdigit() else None


def _has_body(headers: Headers) -> bool:
    return "transfer-encoding" in headers or (_declared_length(headers) or 0) > 0


def _too_large(limit: int) -> ApiFailure:
    return ApiFailure(413, f"The request body is larger than this server accepts ({limit // MB} MB; see "
                      "--max-body-mb).", code="request_too_large", headers=CLOSE, kind="body_too_large")


class BodyGate:
    """The request's receive and send, as the app sees them: the body is counted as it arrives and must be complete
    within the deadline; an answer given before the whole body was read closes the connection."""

    def __init__(self, headers: Headers, receive: Receive, send: Send, limits: GuardLimits,
                 budget: BodyBudget) -> None:
        self._receive, self._send = receive, send
        self._budget = budget
        self._held = 0
        self._limit = limits.max_body_bytes
        self._timeout_s = limits.body_timeout_s
        self._deadline = asyncio.get_running_loop().time() + limits.body_timeout_s
        self._received = 0
        self.complete = not _has_body(headers)

    async def receive(self) -> Message:
        if self.complete:
            return await self._receive()  # after the body only the disconnect is left: no deadline on waiting for it
        try:
            async with asyncio.timeout_at(self._deadline):
                message = await self._receive()
        except TimeoutError as exc:
            raise ApiFailure(408, f"The request body did not arrive within {self._timeout_s:g} seconds.",
                             code="request_timeout", headers=CLOSE, kind="body_timeout") from exc
        if message["type"] != "http.request":
            self.complete = True
            return message
        size = len(message.get("body", b""))
        self._received += size
        if self._received > self._limit:
            raise _too_large(self._limit)
        self._budget.take(size)
        self._held += size
        self.complete = not message.get("more_body", False)
        return message

    def release(self) -> None:
        """Give back what this request's body held in the bytes-in-flight budget (once its answer is sent)."""
        self._budget.release(self._held)
        self._held = 0

    async def send(self, message: Message) -> None:
        headers = message.get("headers", []) if message["type"] == "http.response.start" else None
        if headers is not None and not self.complete and (b"connection", b"close") not in headers:
            # The unread rest of the body would be taken for the next request: this connection ends with the answer.
            message = {**message, "headers": [*headers, (b"connection", b"close")]}
        await self._send(message)


# -- the protocol layer -----------------------------------------------------------------------------------------

class LingeringTransport:
    """uvicorn's view of the socket. Closing while the client is still sending a body half-closes instead, drops
    what still arrives for a moment, then closes: a close with unread bytes makes the kernel send a reset, which can
    destroy the 413/408 answer before the client has read it."""

    def __init__(self, transport: asyncio.Transport, client_is_sending: Callable[[], bool], linger_s: float) -> None:
        self._transport = transport
        self._client_is_sending = client_is_sending
        self._linger_s = linger_s
        self._closing = False
        self.lingering = False

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if not self._client_is_sending() or not self._transport.can_write_eof() or self._transport.is_closing():
            self._transport.close()
            return
        self.lingering = True
        self._transport.write_eof()
        self._transport.resume_reading()
        asyncio.get_running_loop().call_later(self._linger_s, self._transport.close)

    def is_closing(self) -> bool:
        return self._closing or self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def guarded_protocol(base: type, limits: GuardLimits) -> type:
    """`base` (uvicorn's HTTP protocol, or a subclass) with a header deadline, lingering close, and uvicorn's
    connection limit answered as an OpenAI 503 instead of uvicorn's plain text."""

    class GuardedProtocol(base):  # type: ignore[misc,valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # uvicorn would answer over-limit requests itself, in plain text; the same rule is applied below.
            self.connection_limit, self.limit_concurrency = self.limit_concurrency, None
            self._header_timer: asyncio.TimerHandle | None = None
            inner = self.app

            async def app(scope: Scope, receive: Receive, send: Send) -> None:
                self._disarm()
                if self._over_limit():
                    await error_response(503, "The server is overloaded (too many connections); retry shortly.",
                                         error_type="server_error", code="server_overloaded",
                                         headers=CLOSE)(scope, receive, send)
                    return
                await inner(scope, receive, send)

            self.app = app

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            wrapped = LingeringTransport(transport, self._client_is_sending, limits.linger_s)  # type: ignore[arg-type]
            super().connection_made(wrapped)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if getattr(self.transport, "lingering", False):
                return  # the rest of a refused body: dropped unread
            super().data_received(data)

        def on_response_complete(self) -> None:
            # Armed first: a pipelined request that super() starts disarms it again when its headers are in.
            self._arm()
            super().on_response_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _client_is_sending(self) -> bool:
            return self.cycle is not None and self.cycle.more_body

        def _over_limit(self) -> bool:
            limit = self.connection_limit
            return limit is not None and (len(self.connections) > limit or len(self.tasks) > limit)

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(limits.header_timeout_s, self._headers_late)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_late(self) -> None:
            self._header_timer = None
            if self.transport.is_closing() or (self.cycle is not None and not self.cycle.response_complete):
                return
            # No request exists to answer through ASGI (or h11): the bytes are written as they are.
            self.transport.write(raw_error(408, "Request Timeout", "The request headers did not arrive within "
                                           f"{limits.header_timeout_s:g} seconds.", "request_timeout"))
            self.transport.close()

    return GuardedProtocol
