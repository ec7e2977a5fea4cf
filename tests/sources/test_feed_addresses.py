"""Feed fetching cannot be turned against the user's network: private links, redirect hops, DNS rebinding, proxies.

Nothing here leaves loopback, nor tries to: every socket connect outside 127.0.0.0/8 fails the test, and the
operating system's name lookup is replaced by a table that maps the test's made-up names onto loopback
listeners. A public-looking address appears only as a resolver's answer to the pre-connect check; the
connect guard makes sure no connection is ever attempted to it. A raw listener stands in for each private
host and counts the connections and the bytes it receives.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from loopback import LoopbackSite, Reply, Request

from pipeline.errors import AddressRefused, FetchError, UsageError
from pipeline.models import Document, RejectedDocument
from pipeline.sources import feeds, fetch
from pipeline.sources.fetch import FetchLimits, PageFetcher

PUBLIC = "93.184.215.14"  # only ever a resolver's answer: the connect guard refuses any attempt to reach it
QUICK = FetchLimits(connect_timeout_s=2.0, read_timeout_s=2.0, deadline_s=5.0)


# ---------------------------------------------------------------------------------------------------------------
# Loopback only: the guard and the name table


@dataclass
class NameTable:
    """What the operating system's getaddrinfo answers during a test: name → answers, one per call, the last
    one repeating. Unknown names do not resolve; nothing is ever asked of real DNS."""

    answers: dict[str, list[str]] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    def lookup(self, host: str) -> str:
        self.asked.append(host)
        queue = self.answers.get(host.lower())
        if not queue:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return queue.pop(0) if len(queue) > 1 else queue[0]


@pytest.fixture(autouse=True)
def names(monkeypatch: pytest.MonkeyPatch) -> NameTable:
    table = NameTable()
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def getaddrinfo(host: str | None, port: object, family: int = 0, type: int = 0, proto: int = 0,
                    flags: int = 0) -> list:
        try:
            ipaddress.ip_address(str(host))
        except ValueError:
            host = table.lookup(str(host))
        # A numeric host only: the real call then never asks DNS.
        return real_getaddrinfo(host, port, family, type, proto, flags | socket.AI_NUMERICHOST)

    def check(address: object) -> None:
        host = address[0] if isinstance(address, tuple) else None
        if host is None or ipaddress.ip_address(str(host).split("%", 1)[0]) not in ipaddress.ip_network("127.0.0.0/8"):
            raise AssertionError(f"a connection outside loopback was attempted: {address!r}")

    def connect(self: socket.socket, address: object) -> None:
        check(address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: object) -> int:
        check(address)
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    return table


def resolver(answers: dict[str, list[str]]) -> Callable[[str, int], list[str]]:
    """The fetcher's resolver seam: what the pre-connect check is told; unknown names do not resolve."""

    def resolve(host: str, port: int) -> list[str]:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return answers[host]

    return resolve


# ---------------------------------------------------------------------------------------------------------------
# Servers: a listener that must stay silent, and a small web


# The silent listener's address: not 127.0.0.1, where the servers of tests running in parallel had their ephemeral
# ports, so a client of theirs reconnecting to a port the listener now has cannot land in its count.
QUIET = "127.0.0.3"


class Listener:
    """A loopback TCP port that never answers; drain() counts the connections made to it and the bytes sent.

    No thread accepts: a client's connect completes in the kernel's backlog, so draining it afterwards (without
    blocking) finds every connection that was made, with no waiting or sleeping in the test.
    """

    def __init__(self, host: str = QUIET) -> None:
        self.sock = socket.socket()
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.host, self.port = self.sock.getsockname()[:2]
        self.connections = 0
        self.received = b""

    def drain(self) -> tuple[int, bytes]:
        self.sock.setblocking(False)
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return self.connections, self.received
            self.connections += 1
            with conn:
                conn.settimeout(1.0)  # only if the client left the connection open, which is itself a failure
                try:
                    while chunk := conn.recv(65536):
                        self.received += chunk
                except (TimeoutError, ConnectionResetError):
                    pass

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    silent = Listener()
    yield silent
    silent.close()


class Web(LoopbackSite):
    """A loopback web site: /feed.xml serves `feed`, /redirect?to=X redirects, anything else is an article page;
    `paths` are the request targets in order (a proxy sees absolute URLs in them)."""

    def __init__(self) -> None:
        self.feed = b""
        super().__init__(self._answer)

    @property
    def paths(self) -> list[str]:
        return [request.target for request in self.requests]

    def _answer(self, request: Request) -> Reply:
        if request.path == "/redirect":
            return Reply(302, headers={"Location": parse_qs(urlsplit(request.target).query)["to"][0]})
        if request.path.endswith("/feed.xml"):
            return Reply(200, self.feed, "application/rss+xml")
        return Reply(200, b"<html><body><article><p>" + b"The proxied article has a lot to say. " * 20
                     + b"</p></article></body></html>", "text/html")


@pytest.fixture
def web() -> Iterator[Web]:
    with Web() as server:
        yield server


def rss(*items: tuple[str, str | None, str | None]) -> bytes:
    """An RSS 2.0 feed of (guid, link, description) items."""
    body = "".join(f"<item><title>{guid}</title><guid isPermaLink=\"false\">{guid}</guid>"
                   + (f"<link>{link}</link>" if link else "")
                   + (f"<description>{text}</description>" if text else "") + "</item>"
                   for guid, link, text in items)
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>{body}</channel></rss>'.encode()


def by_guid(items: list[Document | RejectedDocument]) -> dict[str, Document | RejectedDocument]:
    return {item.title or "": item for item in items}


# ---------------------------------------------------------------------------------------------------------------
# The connected peer is checked, before a byte is sent


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_dns_rebinding_is_caught_at_the_connected_peer(scheme: str, names: NameTable, listener: Listener) -> None:
    # The check is told a public address; the connection's own lookup, a moment later, lands on loopback.
    names.answers["news.example.com"] = [QUIET]
    fetcher = PageFetcher(QUICK, resolve=resolver({"news.example.com": [PUBLIC]}))
    try:
        with pytest.raises(AddressRefused, match=r"^refusing to fetch from news\.example\.com: the connection "
                                                 rf"reached {re.escape(QUIET)}, a loopback address, not a public one"):
            fetcher.fetch(f"{scheme}://news.example.com:{listener.port}/story")
    finally:
        fetcher.close()
    # Connected (so the peer could be read), then closed before the request or a TLS hello was written.
    assert listener.drain() == (1, b"")
    assert names.asked == ["news.example.com"]


def test_rebinding_through_the_system_resolver(names: NameTable, listener: Listener) -> None:
    # The default resolver is the system's: the first lookup (the check) says public, the second (the connect)
    # says loopback.
    names.answers["news.example.com"] = [PUBLIC, QUIET]
    fetcher = PageFetcher(QUICK)
    try:
        with pytest.raises(AddressRefused, match=f"the connection reached {QUIET}"):
            fetcher.fetch(f"http://news.example.com:{listener.port}/story")
    finally:
        fetcher.close()
    assert listener.drain() == (1, b"")
    assert names.asked == ["news.example.com", "news.example.com"]


def test_the_opt_in_lets_private_links_through(web: Web) -> None:
    fetcher = PageFetcher(FetchLimits(allow_private_links=True), resolve=resolver({}))
    try:
        assert b"proxied article" in fetcher.fetch(web.base + "/article/1").body
    finally:
        fetcher.close()


# ---------------------------------------------------------------------------------------------------------------
# Article links


def test_an_article_link_to_a_private_host_fails_alone(web: Web, names: NameTable, listener: Listener) -> None:
    # The feed itself is on loopback (the user typed it); the hosts its links name stand in for an intranet, a
    # cloud metadata endpoint and this machine. Were any check missing, the connection would reach the listener.
    names.answers.update({"intranet.corp": [QUIET], "metadata.cloud": [QUIET]})
    where = f":{listener.port}"
    web.feed = rss(("intranet", f"http://intranet.corp{where}/payroll", None),
                   ("metadata", f"http://metadata.cloud{where}/latest/meta-data/", "Feed text for metadata."),
                   ("loopback", f"http://{QUIET}{where}/admin", "Feed text for loopback."),
                   ("mapped", f"http://[::ffff:{QUIET}]{where}/admin", "Feed text for mapped."),
                   ("nowhere", "http://nowhere.invalid/story", "Feed text for nowhere."),
                   ("plain", None, "An entry with no link is narrated from the feed."))
    resolve = resolver({"intranet.corp": ["10.20.30.40"], "metadata.cloud": ["169.254.169.254"]})
    fetcher = PageFetcher(QUICK, resolve=resolve)
    try:
        items = by_guid(list(feeds.iter_feed(web.base + "/feed.xml", fetcher=fetcher)))
    finally:
        fetcher.close()
    intranet = items["intranet"]
    assert isinstance(intranet, RejectedDocument)
    assert intranet.reason == ("feed entry has no text: page refusing to fetch from intranet.corp: it resolves to "
                               "10.20.30.40, a private address, not a public one (--allow-private-links allows it); "
                               "the feed gives no content or summary")
    pages = {guid: item.meta["extraction"] for guid, item in items.items() if isinstance(item, Document)}
    assert pages == {
        "metadata": "feed-content (page: refusing to fetch from metadata.cloud: it resolves to 169.254.169.254, "
                    "a link-local address, not a public one (--allow-private-links allows it))",
        "loopback": f"feed-content (page: refusing to fetch from {QUIET}: a loopback address, not a public one "
                    "(--allow-private-links allows it))",
        "mapped": f"feed-content (page: refusing to fetch from ::ffff:{QUIET}: it resolves to {QUIET}, "
                  "a loopback address, not a public one (--allow-private-links allows it))",
        "nowhere": "feed-content (page: refusing to fetch from nowhere.invalid: the name does not resolve)",
        "plain": "feed-content (page: no link)",
    }
    assert listener.drain() == (0, b"")
    assert names.asked == []  # every refusal came from the check, before any connection's own lookup


# ---------------------------------------------------------------------------------------------------------------
# The feed's own redirects


def test_a_feed_redirect_hop_to_a_private_host_is_refused(web: Web, names: NameTable, listener: Listener) -> None:
    names.answers["intranet.corp"] = [QUIET]
    target = f"http://intranet.corp:{listener.port}/feed.xml"
    fetcher = PageFetcher(QUICK, resolve=resolver({"intranet.corp": ["10.20.30.40"]}))
    try:
        (item,) = feeds.iter_feed(f"{web.base}/redirect?to={target}", fetcher=fetcher)
    finally:
        fetcher.close()
    assert isinstance(item, RejectedDocument)
    assert item.reason == ("feed cannot be fetched: refusing to fetch from intranet.corp: it resolves to "
                           "10.20.30.40, a private address, not a public one (--allow-private-links allows it)")
    assert listener.drain() == (0, b"")


def test_a_feed_redirect_hop_that_rebinds_is_refused(web: Web, names: NameTable, listener: Listener) -> None:
    names.answers["cdn.example.com"] = [QUIET]
    target = f"http://cdn.example.com:{listener.port}/feed.xml"
    fetcher = PageFetcher(QUICK, resolve=resolver({"cdn.example.com": [PUBLIC]}))
    try:
        (item,) = feeds.iter_feed(f"{web.base}/redirect?to={target}", fetcher=fetcher)
    finally:
        fetcher.close()
    assert isinstance(item, RejectedDocument) and f"the connection reached {QUIET}" in item.reason
    assert listener.drain() == (1, b"")


def test_the_typed_feed_host_may_redirect_to_itself(web: Web, names: NameTable) -> None:
    # A LAN feed server redirecting within itself (a trailing slash, http to https) keeps working without the
    # opt-in, also under a name: the hop lands on the address the first connection reached.
    names.answers["feeds.lan"] = ["127.0.0.1"]
    web.feed = rss(("only", None, "Narrated from the feed's own text."))
    source = f"http://feeds.lan:{web.port}/redirect?to=/feed.xml"
    fetcher = PageFetcher(QUICK, resolve=resolver({}))
    try:
        (item,) = feeds.iter_feed(source, fetcher=fetcher)
    finally:
        fetcher.close()
    assert isinstance(item, Document) and item.text == "Narrated from the feed's own text."
    assert web.paths == ["/redirect?to=/feed.xml", "/feed.xml"]


def test_the_typed_feed_host_cannot_rebind_to_another_private_address(web: Web, names: NameTable) -> None:
    # The typed host's first connection reached 127.0.0.1; a redirect to the same name that now resolves to
    # another non-public address (127.0.0.2 stands in for the user's router) is refused after connecting.
    other = Listener("127.0.0.2")
    try:
        names.answers["feeds.lan"] = ["127.0.0.1", "127.0.0.2"]
        source = f"http://feeds.lan:{web.port}/redirect?to=http://feeds.lan:{other.port}/admin"
        fetcher = PageFetcher(QUICK, resolve=resolver({}))
        try:
            (item,) = feeds.iter_feed(source, fetcher=fetcher)
        finally:
            fetcher.close()
        assert isinstance(item, RejectedDocument)
        assert item.reason == ("feed cannot be fetched: refusing to fetch from feeds.lan: the connection reached "
                               "127.0.0.2, a loopback address, not a public one (--allow-private-links allows it)")
        assert other.drain() == (1, b"")
    finally:
        other.close()


# ---------------------------------------------------------------------------------------------------------------
# Proxies


def test_proxies_from_the_environment_are_not_used(web: Web, listener: Listener,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = f"http://{QUIET}:{listener.port}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, proxy)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    def proxied() -> int:
        """Requests for the feed the proxy was asked to forward. Counted by what was sent, not by connections: the
        listener's port is an ephemeral one, and a client of a test running in parallel may still be reconnecting
        to a server that had it before."""
        listener.drain()
        return listener.received.count(f"GET {web.base}/feed.xml HTTP/1.1".encode())

    # The control: a client that trusts the environment does go to the proxy here.
    with pytest.raises(httpx.ReadTimeout), httpx.Client(timeout=0.3) as trusting:
        trusting.get(web.base + "/feed.xml")
    assert proxied() == 1, listener.received[:200]

    web.feed = rss(("only", None, "Fetched directly, not through the environment's proxy."))
    (item,) = feeds.iter_feed(web.base + "/feed.xml", limits=QUICK)
    assert isinstance(item, Document) and item.text.startswith("Fetched directly")
    assert proxied() == 1  # still only the control's request
    assert web.paths == ["/feed.xml"]


def test_an_explicit_proxy_is_used_and_links_are_still_checked(web: Web, names: NameTable) -> None:
    # The web server plays the proxy: it answers the absolute-form requests a client sends to a proxy.
    web.feed = rss(("public", "http://news.example.com/story", None),
                   ("private", "http://intranet.corp/payroll", "Feed text for private."))
    limits = FetchLimits(connect_timeout_s=2.0, read_timeout_s=2.0, deadline_s=5.0, proxy=web.base)
    resolve = resolver({"news.example.com": [PUBLIC], "intranet.corp": ["10.20.30.40"]})
    fetcher = PageFetcher(limits, resolve=resolve)
    try:
        items = by_guid(list(feeds.iter_feed("http://feeds.example.com/feed.xml", fetcher=fetcher)))
    finally:
        fetcher.close()
    assert web.paths == ["http://feeds.example.com/feed.xml", "http://news.example.com/story"]
    public = items["public"]
    assert isinstance(public, Document) and "proxied article" in public.text
    assert items["private"].meta["extraction"].startswith(
        "feed-content (page: refusing to fetch from intranet.corp: it resolves to 10.20.30.40")
    assert names.asked == []  # the proxy did every lookup for the connections


def test_a_proxy_password_is_not_shown() -> None:
    limits = FetchLimits(proxy="http://user:hunter22@127.0.0.1:3128")
    assert "hunter22" not in repr(limits)
    fetch.check_proxy("http://user:hunter22@127.0.0.1:3128")
    with pytest.raises(UsageError) as refused:
        fetch.check_proxy("ftp://user:hunter22@127.0.0.1:21")
    assert "hunter22" not in str(refused.value) and "ftp://127.0.0.1:21" in str(refused.value)
    with pytest.raises(UsageError, match="with its scheme") as bare:
        fetch.check_proxy("user:hunter22@127.0.0.1:3128")
    assert "hunter22" not in str(bare.value)


def test_a_redirect_to_a_url_that_does_not_parse_fails_the_fetch(web: Web) -> None:
    fetcher = PageFetcher(FetchLimits(allow_private_links=True))
    try:
        with pytest.raises(FetchError):  # httpx makes a host name "%5bx" of it, which does not resolve
            fetcher.fetch(f"{web.base}/redirect?to=http://[x/")
        with pytest.raises(FetchError, match=r"^bad URL: Port out of range"):
            fetcher.fetch(f"{web.base}/redirect?to=http://127.0.0.1:99999/")
    finally:
        fetcher.close()
