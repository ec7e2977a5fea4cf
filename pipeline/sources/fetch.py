"""One http(s) body fetched safely: bounded in time, bytes (decompressed) and redirects, and reaching public
addresses only unless the user named the host or opted in (--allow-private-links).

It must not interpret what it fetches (feeds.py and extract.py do), use a proxy from the environment, let a hop
reach an address that was not checked (the host's addresses before connecting, the connected peer before a byte is
sent), or put a URL's credentials or query in an error. Nothing is written.
"""

from __future__ import annotations

import base64
import ipaddress
import re
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

from pipeline import __version__
from pipeline.errors import AddressRefused, FetchError, UsageError, first_line
from pipeline.redact import url_without_credentials

USER_AGENT = f"audiosum/{__version__} (+feed narration)"
_CHUNK = 64 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]
"""(host, port) → the IP addresses a connection to it may reach; an OSError or no answer means it does not resolve."""

# Said in every refusal, so the user knows the way out when the private address is one they mean.
_OPT_IN = "--allow-private-links allows it"


def system_resolver(host: str, port: int) -> list[str]:
    """The addresses the operating system gives for host (getaddrinfo), as the connection itself will look them up."""
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


@dataclass(frozen=True, slots=True)
class FetchLimits:
    """How every feed and page fetch is bounded and routed; the defaults suit a nightly run, tests shrink them."""

    connect_timeout_s: float = 10.0
    read_timeout_s: float = 10.0
    deadline_s: float = 30.0  # whole fetch, redirects included (checked between reads)
    max_page_bytes: int = 5 * 1024 * 1024  # after decompression
    max_feed_bytes: int = 10 * 1024 * 1024
    max_redirects: int = 5
    # Article links, and redirect hops away from the feed's own host, reach public addresses only unless this is
    # set: any feed (a local file or a LAN aggregator too) republishes third-party links, which must not make
    # audiosum read, narrate and publish an intranet page or a cloud metadata endpoint.
    allow_private_links: bool = False
    # The only proxy ever used: the environment's (HTTP_PROXY, ALL_PROXY, …) never are. Left out of repr because
    # it can hold a password.
    proxy: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Fetched:
    url: str  # after redirects
    content_type: str
    body: bytes


def check_proxy(proxy: str) -> None:
    """UsageError unless proxy is a URL httpx can use as a proxy (http, https, socks5 with socksio installed)."""
    if "://" not in proxy:  # said without quoting the value: it may be user:password@host
        raise UsageError("--proxy must be a URL with its scheme, such as http://proxy.example:3128")
    try:
        httpx.Client(proxy=proxy, trust_env=False).close()
    except (ValueError, TypeError, ImportError, httpx.InvalidURL) as exc:
        # Not chained (from None): the error can quote the proxy URL, password and all.
        raise UsageError(f"--proxy {_shown_url(proxy)!r} is not a usable proxy URL "
                         f"({_without_secrets(first_line(exc), proxy)})") from None


class PageFetcher:
    """One pooled httpx client for a feed's fetches, each bounded by FetchLimits; close() when done.

    Redirects are followed here, not by httpx, because httpx reads a redirect's whole body before following it,
    and because every hop's address is checked (see fetch). The body is decompressed here too, in bounded steps,
    so a gzip bomb stops at the cap, not in memory.
    resolve: how a host's addresses are found for the check before connecting (tests inject one).
    transport: replaces httpx's network transport (tests); the peer check needs one that opens TCP connections.
    """

    def __init__(self, limits: FetchLimits | None = None, *, resolve: Resolver | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.limits = limits or FetchLimits()
        self._resolve = resolve or system_resolver
        timeout = httpx.Timeout(connect=self.limits.connect_timeout_s, read=self.limits.read_timeout_s,
                                write=self.limits.read_timeout_s, pool=self.limits.connect_timeout_s)
        self._client = httpx.Client(
            timeout=timeout, follow_redirects=False, transport=transport,
            # A proxy set in the environment would see (and could answer for) every address checked here.
            trust_env=False, proxy=self.limits.proxy,
            # No keep-alive: every fetch opens its own connection, which is what lets the deadline watchdog cut it
            # and the peer check see every hop's address.
            limits=httpx.Limits(max_connections=4, max_keepalive_connections=0),
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "gzip, deflate",
                     "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"})

    def close(self) -> None:
        self._client.close()

    def fetch(self, url: str, *, max_bytes: int | None = None, trusted_host: str | None = None) -> Fetched:
        """The body at url (redirects followed), or FetchError with a one-line reason that holds no credentials.

        Unless limits.allow_private_links, every hop must reach a public address: its host is resolved and checked
        before connecting (an unresolvable one is refused), and the address the connection actually reached is
        checked again before a byte is sent, so DNS that changes between the two (rebinding) gains nothing.
        trusted_host: the host the user named (the feed URL's own). Hops to it skip the first check and may
        reach the address its first connection reached, private or not (a feed on localhost or the LAN);
        any other non-public address is refused for it as well.
        """
        limits = self.limits
        cap = limits.max_page_bytes if max_bytes is None else max_bytes
        deadline = time.monotonic() + limits.deadline_s
        pinned: Address | None = None  # the trusted host's first peer
        current = url
        for _ in range(limits.max_redirects + 1):
            _, host, port = _hop_target(current, secrets=(url, current))
            trusted = trusted_host is not None and host == trusted_host.lower()
            if not limits.allow_private_links and not trusted:
                self._require_public(host, port)
            if time.monotonic() > deadline:
                raise FetchError(f"took longer than the {limits.deadline_s:g} s deadline")
            # Behind a proxy the connected peer is the proxy: only the check above applies.
            peers = _PeerCheck(host, permit=_permit(limits, trusted, pinned), active=limits.proxy is None)
            response_url, location, fetched = self._hop(current, peers, cap, deadline, secrets=(url, current))
            if trusted and pinned is None:
                pinned = peers.peer
            if fetched is not None:
                return fetched
            try:
                current = str(response_url.join(location))
            except httpx.InvalidURL as exc:  # not chained (from None): it quotes the URL, token and all
                raise FetchError(f"bad redirect: {_without_secrets(first_line(exc), url, location)}") from None
        raise FetchError(f"more than {limits.max_redirects} redirects")

    def _hop(self, url: str, peers: _PeerCheck, cap: int, deadline: float,
             secrets: tuple[str, ...]) -> tuple[httpx.URL, str, Fetched | None]:
        """One request: (its URL, the redirect's Location, None) or (its URL, '', the body). Maps httpx's errors."""
        limits = self.limits
        watchdog = _DeadlineWatchdog(deadline)

        def trace(event: str, info: dict[str, Any]) -> None:
            peers.trace(event, info)  # first: a refused connection never gets a timer
            watchdog.trace(event, info)

        try:
            with self._client.stream("GET", url, extensions={"trace": trace}) as response:
                if response.status_code in _REDIRECTS and "location" in response.headers:
                    # Leaving the block closes the connection without reading the redirect's body.
                    return response.url, response.headers["location"], None
                if not 200 <= response.status_code < 300:
                    status = f"HTTP {response.status_code} {response.reason_phrase}".strip()
                    raise FetchError(_without_secrets(status, *secrets))  # a server may echo the query back
                body = _read_capped(response, cap, deadline, limits.deadline_s)
                if watchdog.fired:  # the cut can look like the body's end: what came is not the whole body
                    raise FetchError(f"took longer than the {limits.deadline_s:g} s deadline")
                return response.url, "", Fetched(url=str(response.url),
                                                 content_type=response.headers.get("content-type", ""), body=body)
        # httpx's errors carry the request, and with it the URL's token: they are not chained (from None).
        except httpx.TimeoutException as exc:
            raise FetchError(f"timed out ({_timeout_kind(exc, limits)})") from None
        except httpx.InvalidURL as exc:
            raise FetchError(f"bad URL: {_without_secrets(first_line(exc), *secrets)}") from None
        except httpx.HTTPError as exc:
            if watchdog.fired:
                raise FetchError(f"took longer than the {limits.deadline_s:g} s deadline") from None
            raise FetchError(f"cannot fetch: {type(exc).__name__}: {_without_secrets(first_line(exc), *secrets)}"
                             ) from None
        finally:
            watchdog.cancel()

    def _require_public(self, host: str, port: int) -> None:
        """AddressRefused unless host is, or resolves only to, public addresses."""
        try:
            addresses = host_addresses(host, port, self._resolve)
        except LookupError as exc:
            raise AddressRefused(f"refusing to fetch from {host}: the name does not resolve") from exc
        for address in addresses:
            if not is_public_address(address):
                said = "" if str(address) == host.strip("[]") else f"it resolves to {address}, "
                raise AddressRefused(f"refusing to fetch from {host}: {said}{_address_kind(address)}, not a public "
                                     f"one ({_OPT_IN})")


def _hop_target(url: str, *, secrets: tuple[str, ...]) -> tuple[str, str, int]:
    """(scheme, host, port) of one hop, or FetchError for a URL that is not http(s) or does not parse."""
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError as exc:  # "http://[x", a port out of range
        # Not chained (from None): urlsplit's errors can quote the netloc, user:password@ included.
        raise FetchError(f"bad URL: {_without_secrets(str(exc), *secrets)}") from None
    if scheme not in ("http", "https"):
        raise FetchError(f"refusing to fetch {_shown_url(url)[:80]!r}: only http and https URLs are fetched")
    return scheme, parts.hostname or "", port


def _permit(limits: FetchLimits, trusted: bool, pinned: Address | None) -> Callable[[Address], bool] | None:
    """Which peer addresses one hop may connect to; None: any (the peer is still recorded)."""
    if limits.allow_private_links or (trusted and pinned is None):
        return None
    if trusted:
        return lambda address: address == pinned or is_public_address(address)
    return is_public_address


class _PeerCheck:
    """Refuses a connection by the address it reached (the socket's peer), from httpx's trace hook.

    httpcore reports connection.connect_tcp.complete once TCP is up and before TLS or any byte of the request,
    so a refusal here sends nothing; and the peer is where the socket went, whatever DNS said to the check
    before it. Behind a proxy the peer is the proxy, so there is nothing to check (active=False).
    """

    def __init__(self, host: str, *, permit: Callable[[Address], bool] | None, active: bool) -> None:
        self.host = host
        self.permit = permit
        self.active = active
        self.peer: Address | None = None

    def trace(self, event: str, info: dict[str, Any]) -> None:
        if not self.active or event != "connection.connect_tcp.complete":
            return
        stream = info.get("return_value")
        self.peer = _peer_address(stream)
        if self.permit is None or (self.peer is not None and self.permit(self.peer)):
            return
        if stream is not None:
            stream.close()  # httpcore never gets this stream back, so closing it is ours to do
        if self.peer is None:
            raise AddressRefused(f"refusing to fetch from {self.host}: the connection's address cannot be read")
        raise AddressRefused(f"refusing to fetch from {self.host}: the connection reached {self.peer}, "
                             f"{_address_kind(self.peer)}, not a public one ({_OPT_IN})")


def _peer_address(stream: Any) -> Address | None:
    sock = stream.get_extra_info("socket") if stream is not None else None
    try:
        return _address(str(sock.getpeername()[0])) if sock is not None else None
    except (OSError, ValueError, IndexError, TypeError):
        return None


class _DeadlineWatchdog:
    """Cuts a fetch's connection at the deadline. The read timeout restarts with every byte, so a server that
    trickles its headers a byte at a time would hold a sync client for ever; the body is checked between reads,
    but nothing runs while httpx waits for the headers. httpx's trace hook hands over each new TCP connection
    (keep-alive is off, so every fetch has one), and a timer shuts it down."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.fired = False
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._sock: socket.socket | None = None

    def trace(self, event: str, info: dict[str, Any]) -> None:
        # Any layer's TCP connect ("connection", or "socks" behind a proxy) comes before a TLS wrap, which detaches
        # the socket it wraps; a duplicate of it outlives that and cuts the same connection.
        if not event.endswith(".connect_tcp.complete") or self._sock is not None:
            return
        stream = info.get("return_value")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is None:
            return
        with self._lock:
            self._sock = sock.dup()  # our own descriptor, closed only by cancel(): never someone else's number
        self._timer = threading.Timer(max(0.0, self.deadline - time.monotonic()), self._cut)
        self._timer.daemon = True
        self._timer.start()

    def _cut(self) -> None:
        with self._lock:
            if self._sock is None:
                return
            self.fired = True
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # the connection is already gone

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


def is_public_address(address: Address) -> bool:
    """True for an address on the public internet: not loopback, private, link-local, shared, reserved or multicast."""
    return address.is_global and not address.is_multicast


def host_addresses(host: str, port: int, resolve: Resolver = system_resolver) -> list[Address]:
    """The host's own address when it is an IP literal, else what resolve answers; LookupError when there is none."""
    try:
        return [_address(host)]
    except ValueError:
        pass
    try:
        addresses = [_address(answer) for answer in resolve(host, port)]
    except (OSError, ValueError) as exc:  # socket.gaierror is an OSError, an IDNA failure a ValueError
        raise LookupError(host) from exc
    if not addresses:
        raise LookupError(host)
    return addresses


def is_public_host(host: str, resolve: Resolver = system_resolver) -> bool:
    """True when the host is, or resolves only to, public addresses; False when it does not resolve."""
    try:
        return all(is_public_address(address) for address in host_addresses(host, 0, resolve))
    except LookupError:
        return False


def _address(text: str) -> Address:
    """An IP address from text: brackets and an IPv6 zone (%eth0) dropped, an IPv4-mapped IPv6 address as IPv4
    (::ffff:127.0.0.1 reaches loopback like 127.0.0.1)."""
    address = ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _address_kind(address: Address) -> str:
    if address.is_loopback:
        return "a loopback address"
    if address.is_unspecified:
        return "an unspecified address (it reaches this machine)"
    if address.is_link_local:
        return "a link-local address"
    if address.is_private:
        return "a private address"
    return "a reserved address"


_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def _without_secrets(text: str, *urls: str) -> str:
    """text with every URL in it shown without userinfo or query, and the given URLs' userinfo and query blanked
    wherever they appear on their own (an error message may quote a part of the URL rather than all of it)."""
    text = _URL_IN_TEXT.sub(lambda found: _shown_url(found[0]), text)
    for url in urls:
        for secret in _url_secrets(url):
            if len(secret) >= 4:  # shorter ones would blank ordinary words; no token is that short
                text = text.replace(secret, "[redacted]")
    return text


def _url_secrets(url: str) -> list[str]:
    """A URL's userinfo and query as written, decoded, and as the Basic credentials httpx sends for them."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    raw = [value for value in (parts.username, parts.password, parts.query) if value]
    found = raw + [unquote(value) for value in raw]
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        found.append(base64.b64encode(pair.encode("utf-8")).decode("ascii"))
    # Longest first, so that a secret containing another is blanked whole.
    return sorted(set(found), key=len, reverse=True)


def _shown_url(url: str) -> str:
    try:
        return url_without_credentials(url)
    except ValueError:  # "http://[x" and the like: nothing of it is worth showing
        return "[URL]"


def _timeout_kind(exc: httpx.TimeoutException, limits: FetchLimits) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return f"no connection within {limits.connect_timeout_s:g} s"
    if isinstance(exc, httpx.ReadTimeout):
        return f"no data for {limits.read_timeout_s:g} s"
    return type(exc).__name__


def _read_capped(response: httpx.Response, cap: int, deadline: float, deadline_s: float) -> bytes:
    declared = response.headers.get("content-length", "")
    encoding = _content_encoding(response.headers.get("content-encoding", ""))
    if declared.isdigit() and encoding is None and int(declared) > cap:
        raise FetchError(f"body is {int(declared)} bytes, over the {cap}-byte limit")
    inflater = _Inflater(encoding) if encoding else None
    kept = bytearray()
    raw_total = 0
    # No chunk size: httpx would hold pieces back until one is full, and the deadline check with them.
    for raw in response.iter_raw():
        raw_total += len(raw)
        if raw_total > cap:
            raise FetchError(f"body is over the {cap}-byte limit")
        for piece in (inflater.feed(raw) if inflater else (raw,)):
            kept += piece
            if len(kept) > cap:
                what = "decompressed body" if inflater else "body"
                raise FetchError(f"{what} is over the {cap}-byte limit")
        if time.monotonic() > deadline:
            raise FetchError(f"took longer than the {deadline_s:g} s deadline")
    return bytes(kept)


def _content_encoding(header: str) -> str | None:
    codings = [c.strip().lower() for c in header.split(",") if c.strip() and c.strip().lower() != "identity"]
    if not codings:
        return None
    if len(codings) > 1 or codings[0] not in ("gzip", "x-gzip", "deflate"):
        raise FetchError(f"unsupported Content-Encoding {header!r}")
    return codings[0]


class _Inflater:
    """gzip/deflate in steps of at most _CHUNK output bytes, so the cap is checked before memory grows."""

    def __init__(self, encoding: str) -> None:
        self._encoding = encoding
        self._inflate: Any = zlib.decompressobj(zlib.MAX_WBITS | 16) if encoding != "deflate" else None

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self._inflate is None:
            # "deflate" is zlib-wrapped by the standard, raw by some servers; the first two bytes tell which.
            wrapped = len(data) >= 2 and data[0] & 0x0F == 8 and ((data[0] << 8) | data[1]) % 31 == 0
            self._inflate = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        try:
            while not self._inflate.eof:
                out = self._inflate.decompress(data, _CHUNK)
                if out:
                    yield out
                data = self._inflate.unconsumed_tail
                if not data and len(out) < _CHUNK:
                    return
        except zlib.error as exc:
            raise FetchError(f"body is not valid {self._encoding} data ({exc})") from exc
