"""A feed URL's user:password@ and query (where tokens live) reach no id, source or reason that feeds yields.

The feed is served over loopback from a URL carrying both; the server echoes its request line back in the
status line, so a reason quoting the server would carry the token if nothing stripped it.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from loopback import LoopbackSite, Reply, Request

from pipeline.models import Document, RejectedDocument
from pipeline.sources import feeds, fetch
from pipeline.sources.fetch import FetchLimits

SECRETS = ("hunter22", "SECRET123", "audiouser", base64.b64encode(b"audiouser:hunter22").decode())
LIMITS = FetchLimits(connect_timeout_s=2.0, read_timeout_s=2.0, deadline_s=5.0)
FEED = (b'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>'
        b'<item><title>Keyed</title><guid isPermaLink="false">urn:entry:1</guid>'
        b"<description>An entry without a link is named by its feed and key.</description></item>"
        b"<item><title>Relative</title><link>/articles/relative.html</link><guid>urn:entry:2</guid>"
        b"<description>An entry whose link is relative to the feed's URL.</description></item>"
        b"</channel></rss>")


def _echoing_web(request: Request) -> Reply:
    """/feed.xml is a feed; /bad.xml is not XML; /ftp redirects to an ftp URL with credentials; anything else answers
    403 with the request line and the Authorization header in the reason phrase."""
    if request.path == "/feed.xml":
        return Reply(200, FEED, "application/rss+xml")
    if request.path == "/bad.xml":
        return Reply(200, b"<rss><channel>", "application/rss+xml")
    if request.path == "/ftp":
        return Reply(302, headers={"Location": "ftp://audiouser:hunter22@127.0.0.1/feed.xml?token=SECRET123"})
    return Reply(403, reason=f"Forbidden: {request.target} for {request.headers.get('Authorization')}")


class EchoingWeb(LoopbackSite):
    def __init__(self) -> None:
        super().__init__(_echoing_web)

    def url(self, path: str) -> str:
        return f"http://audiouser:hunter22@127.0.0.1:{self.port}{path}?token=SECRET123"

    def shown(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture(scope="module")
def web() -> Iterator[EchoingWeb]:
    with EchoingWeb() as server:
        yield server


def _assert_clean(item: Document | RejectedDocument) -> None:
    shown = repr(item)
    for secret in SECRETS:
        assert secret not in shown, (secret, shown)


@pytest.mark.parametrize(("path", "reason"), [
    # The server echoes the query and the Basic credentials httpx built from user:password@.
    ("/echo/feed.xml", "feed cannot be fetched: HTTP 403 Forbidden: /echo/feed.xml?[redacted] for Basic [redacted]"),
    ("/ftp", "feed cannot be fetched: refusing to fetch 'ftp://127.0.0.1/feed.xml': only http and https URLs"),
    ("/bad.xml", "not an RSS/Atom feed: not well-formed XML"),
])
def test_a_failed_feed_shows_its_url_without_credentials(web: EchoingWeb, path: str, reason: str) -> None:
    (item,) = feeds.iter_feed(web.url(path), limits=LIMITS)
    assert isinstance(item, RejectedDocument)
    assert item.source == web.shown(path)
    assert item.id == feeds.feed_slug(web.url(path)) and item.id.startswith(f"127-0-0-1-{web.port}-")
    assert item.reason.startswith(reason), item.reason
    _assert_clean(item)


def test_entries_name_their_feed_without_credentials(web: EchoingWeb) -> None:
    keyed, relative = feeds.iter_feed(web.url("/feed.xml"), limits=LIMITS)
    assert isinstance(keyed, Document) and keyed.source == web.shown("/feed.xml") + "#urn:entry:1"
    assert keyed.meta["feed"] == web.shown("/feed.xml")
    # A relative link resolves against the feed's URL; its user:password@ must not come along.
    assert isinstance(relative, Document) and relative.source == web.shown("/articles/relative.html")
    for item in (keyed, relative):
        _assert_clean(item)


def test_the_redaction_helpers() -> None:
    text = "cannot fetch http://u:hunter22@host/feed?token=SECRET123 (token=SECRET123, user hunter22)"
    cleaned = fetch._without_secrets(text, "http://u:hunter22@host/feed?token=SECRET123")
    assert cleaned == "cannot fetch http://host/feed ([redacted], user [redacted])"
    assert fetch._without_secrets("see http://[x and more") == "see [URL] and more"
    assert feeds.shown_source("/srv/feeds/local.xml") == "/srv/feeds/local.xml"
    assert feeds.shown_source("https://a:b@example.org:8443/rss?k=v#f") == "https://example.org:8443/rss"
