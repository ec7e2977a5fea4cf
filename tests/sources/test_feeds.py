"""Feed inputs over loopback: RSS/Atom entries become Documents, and every hostile feed or page fails alone, fast.

A stdlib HTTP server in a thread serves the fixture feeds and article pages, plus endpoints that misbehave
(redirect loops, endless and gzip-bombed bodies, silence, trickles); it counts what was fetched.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import re
import socket
import threading
import time
import tracemalloc
import wave
import zlib
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from peers import RunningServer, api_env, free_port
from runs import run_cli

from pipeline import sources
from pipeline.errors import DocumentError, FetchError, UsageError
from pipeline.models import Document, RejectedDocument
from pipeline.sources import feeds, fetch
from pipeline.sources.fetch import FetchLimits

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "feeds"
# The fixture server stands in for public sites from loopback, so these tests opt in to private article links;
# what happens without the opt-in is tested here and in test_feed_addresses.py.
LOCAL = FetchLimits(allow_private_links=True)
# Small byte and redirect caps with timeouts no loaded machine reaches: a fetch these limits end, they end by a cap,
# never by a clock. Each timeout is tested alone, with the other one out of reach (READ_TIMEOUT_ONLY, DEADLINE_ONLY).
CAPS = FetchLimits(connect_timeout_s=60.0, read_timeout_s=60.0, deadline_s=60.0, max_page_bytes=1024 * 1024,
                   max_feed_bytes=256 * 1024, max_redirects=5, allow_private_links=True)
READ_TIMEOUT_ONLY = dataclasses.replace(CAPS, read_timeout_s=0.3)
DEADLINE_ONLY = dataclasses.replace(CAPS, deadline_s=1.0)
STALL_S = 60.0  # how long the silent and trickling endpoints keep it up: longer than any limit that should end them
CHUNK = b"<p>" + b"all work and no play " * 3000 + b"</p>\n"


def _gzip_bomb() -> bytes:
    """200 MB of zeros, gzip-compressed to about 200 KB."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1 << 20)
    return b"".join(packer.compress(zeros) for _ in range(200)) + packer.flush()


class FeedServer:
    """The test's web: fixture feeds and pages with {{BASE}} filled in, and misbehaving endpoints."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.page_suffix = ""  # appended to every article page, to show a changed page changes nothing
        self.hostile_links: list[str] = []
        self.bomb = _gzip_bomb()
        self.trickle_started = threading.Event()  # set when a trickle has begun: the deadline cut a live fetch
        self.stop = threading.Event()  # set at close: the silent and trickling endpoints give up
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there: connection refused
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return self.base + path

    def fetched(self, prefix: str) -> int:
        with self.lock:
            return sum(n for path, n in self.requests.items() if path.startswith(prefix))

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def fill(self, text: str) -> str:
        return text.replace("{{BASE}}", self.base).replace("{{DEAD}}", self.dead)

    def hostile_feed(self) -> bytes:
        items = "".join(f"<item><title>Hostile {n}</title><link>{link}</link><guid>hostile-{n}</guid></item>"
                        for n, link in enumerate(self.hostile_links))
        return f'<rss version="2.0"><channel><title>Hostile pages</title>{items}</channel></rss>'.encode()

    def trickle(self, first: bytes) -> Iterator[bytes]:
        """first, then a byte every 50 ms until the client leaves or the test ends (the pace decides nothing)."""
        yield first
        self.trickle_started.set()
        gives_up = time.monotonic() + STALL_S  # a guard against a hang, should the client never cut it
        while not self.stop.wait(0.05) and time.monotonic() < gives_up:
            yield b"x"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def send(self, status: int, body: bytes, content_type: str = "text/html; charset=utf-8",
                     **headers: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers.items():
                    self.send_header(name.replace("_", "-"), value)
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test), as it should

            def stream(self, chunks: Iterator[bytes], content_type: str = "text/html") -> None:
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.end_headers()
                try:
                    for chunk in chunks:
                        self.wfile.write(chunk)
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up, as it should

            def do_GET(self) -> None:  # noqa: C901 - one route table
                path = urlsplit(self.path).path
                with owner.lock:
                    owner.requests[path] += 1
                if path.startswith("/feeds/"):
                    name = path.removeprefix("/feeds/")
                    if name == "hostile.xml":
                        return self.send(200, owner.hostile_feed(), "application/rss+xml")
                    for folder in (FIXTURES, FIXTURES / "bad"):
                        if (folder / name).is_file():
                            body = owner.fill((folder / name).read_text(encoding="latin-1")).encode("latin-1")
                            return self.send(200, body, "application/rss+xml")
                    return self.send(404, b"no such feed")
                if path.startswith("/articles/"):
                    page = FIXTURES / "articles" / path.removeprefix("/articles/")
                    if page.is_file():
                        html = page.read_text().replace("</article>", owner.page_suffix + "</article>")
                        return self.send(200, html.encode("utf-8"))
                    return self.send(404, b"<html><body><h1>Not found</h1></body></html>")
                if path.startswith("/redirect-loop/"):
                    step = int(path.rsplit("/", 1)[1])
                    return self.send(302, b"", Location=f"/redirect-loop/{step + 1}")
                if path == "/redirect-with-endless-body":
                    self.send_response(302)
                    self.send_header("Location", "/articles/night-market.html")
                    self.end_headers()
                    try:
                        for _ in range(2000):  # 100+ MB if anyone reads it
                            self.wfile.write(CHUNK)
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    return None
                if path == "/endless":
                    return self.stream(CHUNK for _ in range(2000))
                if path == "/gzip-bomb":
                    return self.send(200, owner.bomb, Content_Encoding="gzip")
                if path == "/gzip-article":
                    article = (FIXTURES / "articles" / "solar-coop.html").read_bytes()
                    return self.send(200, gzip.compress(article), Content_Encoding="gzip")
                if path == "/slow":  # says nothing until the test is over: only a read timeout can end it
                    owner.stop.wait(STALL_S)
                    return self.send(200, b"<html><body><p>Too late.</p></body></html>")
                if path == "/trickle":
                    return self.stream(owner.trickle(b"<html><body><p>"))
                if path == "/trickle-headers":
                    try:  # a header line that never ends, a byte at a time: only the deadline can end it
                        for chunk in owner.trickle(b"HTTP/1.1 200 OK\r\nX-Slow: "):
                            self.wfile.write(chunk)
                            self.wfile.flush()
                    except (BrokenPipeError, ConnectionResetError):
                        pass  # cut at the deadline, as it should be
                    self.close_connection = True
                    return None
                if path == "/huge-declared":
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", "5000000000")
                    self.end_headers()
                    return None
                if path == "/image":
                    return self.send(200, b"\x89PNG\r\n\x1a\n" + bytes(64), "image/png")
                return self.send(404, b"not found")

        return Handler




@pytest.fixture(scope="module")
def web() -> Iterator[FeedServer]:
    server = FeedServer()
    yield server
    server.close()


def _items(source: str, **options: object) -> list[Document | RejectedDocument]:
    options.setdefault("limits", LOCAL)
    return list(feeds.iter_feed(source, **options))  # type: ignore[arg-type]


def _h8(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def test_rss2_entries_become_documents_with_metadata(web: FeedServer) -> None:
    items = _items(web.url("/feeds/rss2.xml"))
    port = urlsplit(web.base).port
    slug = f"127-0-0-1-{port}-feeds-rss2"
    assert feeds.feed_slug(web.url("/feeds/rss2.xml")) == slug
    bridge_link = web.url("/articles/harbour-bridge.html")
    assert [item.id for item in items] == [
        f"{slug}__harbour-bridge-{_h8(bridge_link)}",
        f"{slug}__gazette-2026-0502-night-market-{_h8('gazette-2026-0502-night-market')}",
        f"{slug}__gazette-2026-0428-library-{_h8('gazette-2026-0428-library')}",
        f"{slug}__gazette-2026-0415-rail-{_h8('gazette-2026-0415-rail')}",
    ]
    assert all(isinstance(item, Document) for item in items)
    bridge, market = items[0], items[1]
    assert isinstance(bridge, Document) and isinstance(market, Document)
    assert bridge.title == "Harbour bridge reopens after two years of repairs"
    assert bridge.source == bridge_link
    assert "forty-two million euros" in bridge.text and "cookies" not in bridge.text
    # The input hash is the entry's identity (its feed and key), never its page: every entry has its own, and a
    # page that changes later leaves it as it was (checked by reading the feed again, not by recomputing it).
    assert len({item.sha256 for item in items}) == len(items)
    web.page_suffix = "<p>An update added to the page later changes the page, not the entry.</p>"
    try:
        again = {item.id: item for item in _items(web.url("/feeds/rss2.xml"))}
    finally:
        web.page_suffix = ""
    changed = again[bridge.id]
    assert isinstance(changed, Document) and "An update added" in changed.text and changed.text != bridge.text
    assert changed.sha256 == bridge.sha256
    assert bridge.meta == {
        "title": "Harbour bridge reopens after two years of repairs", "author": "Mara Lindqvist",
        "link": bridge_link, "published": "2026-05-04T07:30:00+00:00", "feed_title": "The Harbour Gazette",
        "feed": web.url("/feeds/rss2.xml"), "entry_id": bridge_link, "extraction": "trafilatura",
    }
    assert market.meta is not None and market.meta["author"] == "Tomasz Reyes"
    assert market.meta["link"] == web.url("/articles/night-market.html?utm_source=rss")
    assert "sixty stalls" in market.text and len(market.id) <= sources.MAX_ID_LENGTH


def test_a_feed_url_token_stays_out_of_the_metadata(web: FeedServer) -> None:
    items = _items(web.url("/feeds/rss2.xml") + "?token=SECRET123")
    assert items and all(isinstance(item, Document) for item in items)
    for item in items:
        assert item.meta is not None and item.meta["feed"] == web.url("/feeds/rss2.xml")
        assert "SECRET123" not in repr(item.meta)


def test_atom_and_rss1_entries(web: FeedServer) -> None:
    atom = _items(web.url("/feeds/atom.xml"))
    assert all(isinstance(item, Document) for item in atom)
    costs, solar = atom  # newest first
    assert costs.title == "Harbour bridge: what the repairs cost"
    assert costs.id.endswith(f"__60a76c80-d399-11d9-b93c-0003939e0af6-{_h8(costs.meta['entry_id'])}")
    assert costs.meta["published"] == "2026-05-04T07:00:00+00:00"
    assert solar.id.endswith(f"__solar-coop-{_h8('tag:harbourgazette.example,2026:energy/solar-coop')}")
    # A relative link resolves against the feed's URL.
    assert solar.meta["link"] == web.url("/articles/solar-coop.html")
    assert solar.meta["author"] == "Jonas Berg" and solar.meta["feed_title"] == "Harbour Energy Notes"
    assert "thousandth household" in solar.text and solar.meta["extraction"] == "trafilatura"

    rss1 = _items(web.url("/feeds/rss1.xml"))
    assert [item.title for item in rss1] == ["Night market returns to the old fish hall",
                                             "Central library extends its opening hours"]
    market = rss1[0]
    assert isinstance(market, Document) and market.meta["author"] == "Tomasz Reyes"
    assert market.meta["published"] == "2026-05-02T18:00:00+00:00" and "fish hall" in market.text


def test_failing_pages_fall_back_to_the_feed_and_say_so(web: FeedServer) -> None:
    before = web.fetched("/redirect-loop/")
    items = {item.title: item for item in _items(web.url("/feeds/failing.xml"), limits=CAPS)}
    notes = {title: item.meta["extraction"] for title, item in items.items() if isinstance(item, Document)}
    assert notes == {
        "Ferry strike ends after four days": "feed-content (page: no main text found in the HTML page)",
        "Ferry fares frozen for another year": "feed-content (page: shorter than the feed's own content)",
        "Timetable page that was taken down": "feed-content (page: HTTP 404 Not Found)",
        "A story that redirects for ever": "feed-content (page: more than 5 redirects)",
        "A story on a server that is down": notes["A story on a server that is down"],
    }
    assert notes["A story on a server that is down"].startswith("feed-content (page: cannot fetch: ConnectError")
    assert web.fetched("/redirect-loop/") - before == 6  # the first request and five redirects, no more
    strike = items["Ferry strike ends after four days"]
    assert "new rota" in strike.text and "enable JavaScript" not in strike.text
    assert "Season tickets for islanders" in items["Ferry fares frozen for another year"].text
    silent = items["A story with nothing to say"]
    assert isinstance(silent, RejectedDocument)
    assert silent.reason == "feed entry has no text: page HTTP 404 Not Found; the feed gives no content or summary"
    assert silent.meta is not None and silent.meta["link"] == web.url("/articles/also-gone.html")


def test_article_links_to_private_addresses_are_refused_by_default(web: FeedServer) -> None:
    # The feed URL the user typed may be on loopback; the links it republishes may not, even to the same host.
    fetched = web.fetched("/articles/")
    items = _items(web.url("/feeds/rss2.xml"), limits=FetchLimits())
    assert web.fetched("/articles/") == fetched
    assert {item.meta["extraction"] for item in items} == {
        "feed-content (page: refusing to fetch from 127.0.0.1: a loopback address, not a public one "
        "(--allow-private-links allows it))"}
    assert items[0].text == "Buses and bikes are back on the bridge."
    assert fetch.is_public_host("8.8.8.8")
    assert not any(fetch.is_public_host(h) for h in ("127.0.0.1", "localhost", "10.0.0.8", "169.254.169.254",
                                                      "[::1]", "::ffff:127.0.0.1", "0.0.0.0"))


def test_since_and_max_items(web: FeedServer) -> None:
    url = web.url("/feeds/rss2.xml")
    titles = lambda **kw: [item.title.split()[0] for item in _items(url, **kw)]  # noqa: E731
    assert titles(since=datetime(2026, 4, 30, tzinfo=UTC)) == ["Harbour", "Night"]
    assert titles(since=datetime(2026, 5, 2, 18, 0)) == ["Harbour", "Night"]  # naive means UTC; inclusive
    assert titles(max_items=1) == ["Harbour"]
    assert titles(since=datetime(2026, 4, 1), max_items=3) == ["Harbour", "Night", "Central"]
    assert titles(max_items=0) == [] and titles(since=datetime(2027, 1, 1)) == []


def test_already_done_entries_are_not_fetched_again(web: FeedServer) -> None:
    url = web.url("/feeds/rss2.xml")
    first = _items(url)
    fetched = web.fetched("/articles/")
    web.page_suffix = "<p>An update added after the first run changes the page, not the entry.</p>"
    try:
        again = _items(url, already_done=lambda doc_id: True)
        assert web.fetched("/articles/") == fetched
        assert [(d.id, d.sha256, d.title) for d in again] == [(d.id, d.sha256, d.title) for d in first]
        assert {d.meta["extraction"] for d in again} == {"not fetched (already narrated)"}
        assert again[0].text == "Buses and bikes are back on the bridge."
        # Only the entry not done yet is fetched, and its changed page does not change its hash.
        done = {d.id for d in first[1:]}
        third = _items(url, already_done=done.__contains__)
        assert web.fetched("/articles/") == fetched + 1
        assert third[0].sha256 == first[0].sha256 and "An update added" in third[0].text
    finally:
        web.page_suffix = ""


def test_local_feed_files_and_sniffing(web: FeedServer, tmp_path: Path) -> None:
    old = tmp_path / "rss091.xml"
    old.write_text(web.fill((FIXTURES / "rss091.xml").read_text()), encoding="latin-1")
    sniffed = tmp_path / "bulletin"  # no suffix: recognised from its content
    sniffed.write_bytes(old.read_bytes())
    not_feed = tmp_path / "notes.dat"
    not_feed.write_text("<p>just html</p>")
    sources.check_inputs((str(old), str(sniffed), web.url("/feeds/rss2.xml")))
    with pytest.raises(UsageError, match="not a folder"):
        sources.check_inputs((str(not_feed),))
    with pytest.raises(UsageError, match="no host"):
        sources.check_inputs(("https:///feed.xml",))
    with pytest.raises(UsageError, match="Port out of range"):
        sources.check_inputs(("http://example.com:99999/feed.xml",))
    items = list(sources.iter_inputs((str(old), str(sniffed)), fetch_limits=LOCAL))
    assert [item.id.split("__")[0] for item in items] == ["rss091", "bulletin"]
    cafe = items[0]
    assert isinstance(cafe, Document) and cafe.title == "Caf\u00e9 on Quay Street wins a prize"
    assert cafe.meta["feed_title"] == "Quay Street Bulletin" and cafe.meta["feed"] == str(old)
    assert cafe.meta["extraction"] == "trafilatura" and "late trains" in cafe.text
    assert sources.count_items((str(old),)) is None and sources.count_items((web.url("/feeds/x.xml"),)) is None


def test_checking_and_parsing_a_feed_touch_no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: socket.socket, address: object) -> None:
        raise AssertionError(f"tried to connect to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    # RSS 0.91 names the Netscape DTD by URL; it is neither fetched nor a reason to refuse the feed.
    data = (FIXTURES / "rss091.xml").read_bytes().replace(b"{{BASE}}", b"http://192.0.2.1")
    feeds.check_feed_xml(data)
    parsed = feeds._parse(data, "http://192.0.2.1/feed.xml")
    assert parsed.feed.title == "Quay Street Bulletin" and len(parsed.entries) == 1
    leaky = data.replace(b"<rss", b'<!DOCTYPE x [<!ENTITY e SYSTEM "http://192.0.2.1/e">]><rss', 1)
    leaky = leaky.replace(b"<!DOCTYPE rss PUBLIC", b"<!-- PUBLIC", 1).replace(b'0.91.dtd">', b'0.91.dtd" -->', 1)
    with pytest.raises(DocumentError, match="external entity 'e'"):
        feeds.check_feed_xml(leaky)


def test_bad_feeds_fail_alone(web: FeedServer, tmp_path: Path) -> None:
    xhtml = tmp_path / "page.xml"
    xhtml.write_text('<html xmlns="http://www.w3.org/1999/xhtml"><body><p>hello</p></body></html>')
    cases = {
        web.url("/feeds/not-a-feed.html"): "not an RSS/Atom feed: not well-formed XML (mismatched tag at line 3",
        str(xhtml): "not an RSS/Atom feed: the root element is <html>",
        web.url("/feeds/billion-laughs.xml"):
            "refused: the feed declares an XML entity 'lol' (entities are how XML bombs such as billion laughs "
            "are built)",
        web.url("/feeds/external-entity.xml"):
            "refused: the feed declares an external entity 'secret' (file:///etc/passwd); such entities read "
            "local files or URLs",
        web.url("/feeds/missing.xml"): "feed cannot be fetched: HTTP 404 Not Found",
        web.url("/endless"): "feed cannot be fetched: body is over the 262144-byte limit",
        web.url("/redirect-loop/1"): "feed cannot be fetched: more than 5 redirects",
        web.dead + "/feed.xml": "feed cannot be fetched: cannot fetch: ConnectError",
    }
    pages = web.fetched("/articles/")
    for source, reason in cases.items():
        items = _items(source, limits=CAPS)
        assert len(items) == 1 and isinstance(items[0], RejectedDocument), source
        assert items[0].id == feeds.feed_slug(source)
        assert items[0].reason.startswith(reason), (source, items[0].reason)
        assert "root:" not in items[0].reason and "\n" not in items[0].reason
    assert web.fetched("/articles/") == pages  # the refused feeds' entries never got as far as their links


def _hostile(web: FeedServer, paths: list[str], limits: FetchLimits) -> dict[str, Document | RejectedDocument]:
    web.hostile_links = [web.url(path) for path in paths]
    return {item.meta["link"].removeprefix(web.base): item for item in _items(web.url("/feeds/hostile.xml"),
                                                                               limits=limits)}


def _page_reasons(items: dict[str, Document | RejectedDocument]) -> dict[str, str]:
    prefix, suffix = "feed entry has no text: page ", "; the feed gives no content or summary"
    reasons = {link: item.reason for link, item in items.items() if isinstance(item, RejectedDocument)}
    assert all(r.startswith(prefix) and r.endswith(suffix) for r in reasons.values())
    return {link: r.removeprefix(prefix).removesuffix(suffix) for link, r in reasons.items()}


def test_hostile_article_pages_fail_alone_and_small(web: FeedServer) -> None:
    tracemalloc.start()
    try:
        by_link = _hostile(web, ["/redirect-loop/1", "/endless", "/gzip-bomb", "/huge-declared", "/image",
                                 "/redirect-with-endless-body", "/gzip-article"], CAPS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 40 * 1024 * 1024  # the bomb alone is 200 MB inflated, the endless body 100 MB
    assert _page_reasons(by_link) == {
        "/redirect-loop/1": "more than 5 redirects",
        "/endless": "body is over the 1048576-byte limit",
        "/gzip-bomb": "decompressed body is over the 1048576-byte limit",
        "/huge-declared": "body is 5000000000 bytes, over the 1048576-byte limit",
        "/image": "not an article page (Content-Type image/png)",
    }
    # A redirect's own (endless) body is never read; the page it points to is.
    assert "fish hall" in by_link["/redirect-with-endless-body"].text
    assert "thousandth household" in by_link["/gzip-article"].text


def test_a_silent_page_ends_by_the_read_timeout(web: FeedServer) -> None:
    # The page never answers and the deadline is out of reach: the read timeout is the only way out.
    assert _page_reasons(_hostile(web, ["/slow"], READ_TIMEOUT_ONLY)) == {"/slow": "timed out (no data for 0.3 s)"}


def test_a_trickle_ends_by_the_deadline(web: FeedServer) -> None:
    # A byte every 50 ms for as long as the client listens, and a read timeout out of reach: only the deadline,
    # which the watchdog enforces even while the header line is still coming, can end these.
    web.trickle_started.clear()
    assert _page_reasons(_hostile(web, ["/trickle", "/trickle-headers"], DEADLINE_ONLY)) == {
        "/trickle": "took longer than the 1 s deadline",
        "/trickle-headers": "took longer than the 1 s deadline",
    }
    assert web.trickle_started.is_set()


def test_gzip_bomb_stops_at_the_default_cap(web: FeedServer) -> None:
    fetcher = fetch.PageFetcher(FetchLimits(allow_private_links=True))  # the default cap, on loopback
    tracemalloc.start()
    try:
        with pytest.raises(FetchError, match=r"^decompressed body is over the 5242880-byte limit$"):
            fetcher.fetch(web.url("/gzip-bomb"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        fetcher.close()
    assert peak < 16 * 1024 * 1024


def test_ids_and_hashes_are_stable_and_safe() -> None:
    assert feeds.feed_slug("https://www.example.org/blog/feed.xml") == "example-org-blog-feed"
    assert feeds.feed_slug("http://example.org/blog/feed.xml") == "example-org-blog-feed"
    query = feeds.feed_slug("https://example.org/index.php?feed=rss2&cat=5")
    assert re.fullmatch(r"example-org-index-[0-9a-f]{6}", query)
    assert query != feeds.feed_slug("https://example.org/index.php?feed=rss2&cat=6")
    assert query == feeds.feed_slug("http://www.example.org/index.php?feed=rss2&cat=5")
    assert len(feeds.feed_slug("https://example.org/" + "very-long-section/" * 20)) <= feeds.MAX_SLUG_LENGTH
    assert feeds.feed_slug("/srv/feeds/Quay Street.rss") == "quay-street"
    post = "https://example.org/2026/05/04/bridge-reopens/"
    assert feeds.entry_slug(post) == f"bridge-reopens-{_h8(post)}"
    assert feeds.entry_slug("../../etc/passwd") == f"passwd-{_h8('../../etc/passwd')}"
    assert feeds.entry_slug("???") == f"entry-{_h8('???')}"
    for key in ("x" * 500, "tag:a,2026:" + "é" * 300, "/" * 50):
        slug = feeds.entry_slug(key)
        assert re.fullmatch(r"[a-z0-9-]{1,49}", slug) and sources.safe_doc_id(f"feed__{slug}") == f"feed__{slug}"
    sha = feeds.entry_sha256  # a pure function of (feed, key): equal for equal pairs, different otherwise
    assert sha("feed", "id-1") == sha("feed", "id-1")
    assert len({sha("feed", "id-1"), sha("feed", "id-2"), sha("other", "id-1"), sha("other", "id-2")}) == 4


def test_run_narrates_a_feed_and_a_rerun_fetches_nothing(web: FeedServer, tone_server: RunningServer,
                                                         tmp_path: Path) -> None:
    out = tmp_path / "out"
    feed = web.url("/feeds/rss2.xml")
    pages_before = web.fetched("/articles/")
    ok_before = tone_server.stats()["counts"].get("ok", 0)
    result = run_cli("run", feed, "-o", str(out), "--allow-private-links", env=api_env(tone_server))
    assert result.exit_code == 0, result.stderr
    assert web.fetched("/articles/") - pages_before == 4
    assert tone_server.stats()["counts"].get("ok", 0) - ok_before == 4

    report = json.loads((out / "report.json").read_text())
    assert [row["status"] for row in report["documents"]] == ["done"] * 4
    for row in report["documents"]:
        sidecar = json.loads((out / row["sidecar_name"]).read_text())
        with wave.open(str(out / row["main_name"]), "rb") as reader:
            assert reader.getnframes() > 0
        meta = sidecar["meta"]
        assert sidecar["title"] == meta["title"] and meta["feed_title"] == "The Harbour Gazette"
        assert meta["extraction"] == "trafilatura" and meta["link"].startswith(web.base + "/articles/")
        assert datetime.fromisoformat(meta["published"]).year == 2026 and meta["author"]
        assert sidecar["source"] == meta["link"]
    assert sorted(p.name for p in out.glob("*.wav")) == sorted(f"{row['doc_id']}.wav" for row in report["documents"])
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # nothing written outside OUT/

    pages_before = web.fetched("/articles/")
    ok_before = tone_server.stats()["counts"].get("ok", 0)
    again = run_cli("run", feed, "-o", str(out), "--allow-private-links", env=api_env(tone_server))
    assert again.exit_code == 0, again.stderr
    report = json.loads((out / "report.json").read_text())
    assert [row["status"] for row in report["documents"]] == ["skipped"] * 4
    assert tone_server.stats()["counts"].get("ok", 0) == ok_before
    refetched = web.fetched("/articles/") - pages_before
    assert refetched == 0


def _local_feed(path: Path, web: FeedServer, pages: list[str]) -> None:
    items = "".join(
        f"<item><title>{name}</title><link>{web.url('/articles/' + name + '.html')}</link>"
        f"<guid>urn:test:{name}</guid><pubDate>Tue, 03 Nov 2026 0{i}:00:00 GMT</pubDate>"
        f"<description>Short summary of {name}.</description></item>"
        for i, name in enumerate(pages))
    path.write_text(f'<?xml version="1.0"?><rss version="2.0"><channel><title>Local</title>'
                    f"<link>{web.base}</link><description>d</description>{items}</channel></rss>")


def test_only_a_newly_appearing_entry_is_narrated(web: FeedServer, tone_server: RunningServer,
                                                  tmp_path: Path) -> None:
    feed = tmp_path / "local.xml"
    out = tmp_path / "out"
    _local_feed(feed, web, ["harbour-bridge", "library-hours"])
    # The local feed's links point at the loopback fixture server: only with the opt-in are they fetched.
    assert run_cli("run", str(feed), "-o", str(out), "--allow-private-links", env=api_env(tone_server)).exit_code == 0
    _local_feed(feed, web, ["harbour-bridge", "library-hours", "solar-coop"])
    pages_before = web.fetched("/articles/")
    ok_before = tone_server.stats()["counts"].get("ok", 0)
    again = run_cli("run", str(feed), "-o", str(out), "--allow-private-links", env=api_env(tone_server))
    assert again.exit_code == 0, again.stderr
    assert "1 done, 2 skipped" in again.stdout
    assert web.fetched("/articles/") - pages_before == 1
    assert tone_server.stats()["counts"].get("ok", 0) - ok_before == 1
    report = json.loads((out / "report.json").read_text())
    assert all(row["meta"]["link"].startswith(web.base) for row in report["documents"])
    assert (out / "report.html").read_text().count('rel="noopener noreferrer">article</a>') == 3


def test_urls_are_shown_without_credentials() -> None:
    from pipeline.redact import url_without_credentials

    assert url_without_credentials("http://user:pw@[::1]:8080/feed?key=1#top") == "http://[::1]:8080/feed"
    assert url_without_credentials("https://example.com:99999/feed.xml") == "https://example.com/feed.xml"


def test_since_is_recorded_and_a_bad_entry_url_fails_alone(tone_server: RunningServer, tmp_path: Path) -> None:
    feed = tmp_path / "f.xml"
    feed.write_text('<?xml version="1.0"?><rss version="2.0"><channel><title>T</title><link>http://x</link>'
                    "<description>d</description>"
                    "<item><title>Bad one</title><link>http://[x</link><guid>http://[x</guid>"
                    "<description>A summary that is long enough to narrate about the harbour.</description></item>"
                    "<item><title>Good</title><guid>urn:ok</guid><pubDate>Tue, 03 Nov 2026 08:00:00 GMT</pubDate>"
                    "<description>The ferry timetable changes on Monday for the winter season.</description>"
                    "</item></channel></rss>")
    out = tmp_path / "out"
    result = run_cli("run", str(feed), "-o", str(out), "--since", "2026-01-01", env=api_env(tone_server))
    assert result.exit_code in (0, 1), result.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["since"].startswith("2026-01-01") and report["status"] == "finished"
    assert "done" in {d["status"] for d in report["documents"]}
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "ctl", "title": "Bell\u0007 and tab\u000b",
                                    "text": "The pier reopens after repairs on Friday morning."}) + "\n")
    assert run_cli("run", str(manifest), "-o", str(out), env=api_env(tone_server)).exit_code == 0
    import xml.etree.ElementTree as ET
    titles = [t.text for t in ET.parse(out / "podcast.xml").getroot().iter("title")]  # stays valid XML
    assert "Bell and tab" in titles
