"""Feed inputs (RSS 0.9x/1.0/2.0, Atom; a URL or a local file) become one Document per entry, with its article's text.

The feed and its article pages are fetched through fetch.PageFetcher (bounded; article links and redirect hops
reach public addresses only unless the user opts in, and only the feed URL the user typed may be on loopback or the
LAN), and the XML is checked for bombs before feedparser sees it; a bad feed or entry becomes a RejectedDocument,
never an exception. Nothing is written. A feed URL's credentials and query never appear in what is yielded, except
in the request itself.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import httpx

from pipeline.errors import DocumentError, FetchError, first_line
from pipeline.models import Document, RejectedDocument
from pipeline.redact import url_without_credentials, visible
from pipeline.sources import extract, xmlguard
from pipeline.sources.fetch import Fetched, FetchLimits, PageFetcher, _without_secrets

FEED_FILE_SUFFIXES = frozenset({".xml", ".rss", ".atom"})  # a local file named so is read as a feed
MAX_SLUG_LENGTH = 40
_FEED_ROOTS = frozenset({"rss", "rdf", "feed", "channel"})  # local names; RSS 1.0's root is rdf:RDF
_SNIFF_FEED = re.compile(rb"<(?:rss|feed|rdf:rdf)[\s>]")

SourceItem = Document | RejectedDocument
AlreadyDone = Callable[[str], bool]


# ---------------------------------------------------------------------------------------------------------------
# Recognising feed inputs


def is_url(raw: str) -> bool:
    return raw.strip().lower().startswith(("http://", "https://"))


def is_feed_input(raw: str) -> bool:
    """True for an http(s) URL, a file named .xml/.rss/.atom, or a file whose first bytes read as RSS/Atom."""
    if is_url(raw):
        return True
    path = Path(raw)
    if path.suffix.lower() in FEED_FILE_SUFFIXES:
        return True
    try:
        if not path.is_file():
            return False
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return False
        return looks_like_feed(handle.read(4096))


def looks_like_feed(head: bytes) -> bool:
    """True when the first bytes open an RSS or Atom document (and not an HTML page)."""
    lowered = head.lower()
    found = _SNIFF_FEED.search(lowered)
    return found is not None and b"<html" not in lowered[:found.start()]


def shown_source(source: str) -> str:
    """How a feed is named wherever it is recorded or shown: a URL without userinfo, query or fragment (they can
    hold a token), a file as given."""
    return url_without_credentials(source) if is_url(source) else source


# ---------------------------------------------------------------------------------------------------------------
# Ids and hashes: stable across runs for the same entry, whatever the article page says today


def _slug(text: str, limit: int = MAX_SLUG_LENGTH) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-")


def feed_slug(source: str) -> str:
    """A short safe name for a feed: host and path of a URL (a hash added for a query), or a file's stem."""
    if is_url(source):
        parts = urlsplit(source.strip())
        host = (parts.hostname or "").removeprefix("www.")
        port = f"-{parts.port}" if parts.port else ""
        path = re.sub(r"\.(xml|rss|atom|rdf|php|aspx?)$", "", parts.path, flags=re.I)
        readable = _slug(f"{host}{port}-{path}", 10 * MAX_SLUG_LENGTH)
        if parts.query or len(readable) > MAX_SLUG_LENGTH:
            # The scheme is left out here too, so that an http → https move keeps every id.
            unique = f"{host}{port}{parts.path}?{parts.query}"
            digest = hashlib.sha256(unique.encode("utf-8")).hexdigest()[:6]
            return f"{readable[:MAX_SLUG_LENGTH - 7].strip('-')}-{digest}"
        return readable or "feed"
    return _slug(Path(source).stem) or "feed"


def entry_key(entry: dict[str, Any]) -> str | None:
    """What identifies an entry across runs: its id (guid), else its link, else title and date."""
    for name in ("id", "link"):
        value = str(entry.get(name) or "").strip()
        if value:
            return value
    title = str(entry.get("title") or "").strip()
    dated = str(entry.get("published") or entry.get("updated") or "").strip()
    return f"{title}|{dated}" if title else None


def entry_slug(key: str) -> str:
    """Readable part of the key (last path segment of a URL, last part of a URN) plus 8 hex of its sha256."""
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:8]
    parts = urlsplit(key)
    if parts.scheme in ("http", "https") and parts.netloc:
        segments = [s for s in parts.path.split("/") if s]
        tail = re.sub(r"\.[A-Za-z0-9]{1,5}$", "", segments[-1]) if segments else ""
        readable = _slug(tail or parts.query)
    else:
        readable = _slug(re.split(r"[:/#|]", key.rstrip(":/#|"))[-1])
    return f"{readable}-{digest}" if readable else f"entry-{digest}"


def entry_sha256(slug: str, key: str) -> str:
    """The Document's input hash: the feed's slug and the entry's key only, never the fetched page.

    An entry narrated once stays skipped even when its page changes; the slug (not the full URL) keeps an
    http → https move of the feed from re-narrating everything.
    """
    return hashlib.sha256(f"audiosum-feed-entry\n{slug}\n{key}".encode()).hexdigest()


# ---------------------------------------------------------------------------------------------------------------
# Reading and checking the feed


def read_feed_bytes(source: str, fetcher: PageFetcher) -> bytes:
    """The feed's bytes from its URL or file, at most limits.max_feed_bytes; FetchError/DocumentError otherwise."""
    cap = fetcher.limits.max_feed_bytes
    if is_url(source):
        try:
            # The user named this host, so it may be on loopback or the LAN; its redirects elsewhere may not.
            return fetcher.fetch(source, max_bytes=cap, trusted_host=urlsplit(source).hostname).body
        except FetchError as exc:
            raise FetchError(f"feed cannot be fetched: {_without_secrets(str(exc), source)}") from exc
    return extract.read_capped(source, cap, f"feed {source}")


def check_feed_xml(data: bytes) -> None:
    """Raise DocumentError unless data is well-formed XML with an RSS/Atom root and no entity declarations.

    Entities are what billion-laughs bombs and external-entity reads (file:///etc/passwd) are made of; a feed
    needs none, so any declaration is refused before feedparser sees the bytes. The check streams (SAX).
    """
    import xml.sax
    from xml.sax.handler import ContentHandler

    class _Root(ContentHandler):
        root: str | None = None

        def startElementNS(self, name: tuple[str | None, str], qname: str | None, attrs: object) -> None:
            if self.root is None:
                self.root = name[1]

        def startElement(self, name: str, attrs: object) -> None:
            if self.root is None:
                self.root = name.rsplit(":", 1)[-1]

    handler = _Root()
    try:
        xmlguard.parse_guarded(data, "the feed", handler)
    except xml.sax.SAXParseException as exc:
        raise DocumentError(f"not an RSS/Atom feed: not well-formed XML ({exc.getMessage()} at line "
                            f"{exc.getLineNumber()}, column {exc.getColumnNumber()})") from exc
    except (xml.sax.SAXException, ValueError) as exc:
        raise DocumentError(f"not an RSS/Atom feed: {first_line(exc)}") from exc
    if (handler.root or "").lower() not in _FEED_ROOTS:
        raise DocumentError(f"not an RSS/Atom feed: the root element is <{handler.root}>")


# ---------------------------------------------------------------------------------------------------------------
# The feed source


def iter_feed(source: str, *, since: datetime | None = None, max_items: int | None = None,
              already_done: AlreadyDone | None = None, limits: FetchLimits | None = None,
              fetcher: PageFetcher | None = None) -> Iterator[SourceItem]:
    """One Document per entry of the feed at source (a URL or a file), newest first.

    since: leave out entries published (or updated) before it; undated entries are kept. A naive datetime is UTC.
    max_items: only the newest N entries (after `since`); undated entries count as older than dated ones.
    already_done(doc_id): when True, the entry's Document is yielded without fetching its page (its text is
        then the feed's own content); pass it only for entries the plan will skip, never with --force.
    limits / fetcher: bounds and address rules for every fetch (article links reach public addresses only
        unless limits.allow_private_links); a fetcher passed in is shared and not closed here.
    A feed that cannot be read or checked is one RejectedDocument; a bad entry is one RejectedDocument.
    A feed URL's userinfo and query (tokens) appear in no source, id or reason yielded here.
    """
    slug = feed_slug(source)
    shown = shown_source(source)
    owned = fetcher is None
    active = fetcher or PageFetcher(limits)
    try:
        try:
            data = read_feed_bytes(source, active)
            check_feed_xml(data)
            parsed = _parse(data, source)
        except DocumentError as exc:
            yield RejectedDocument(id=slug, source=shown, reason=_without_secrets(str(exc), source))
            return
        feed_title = _title(parsed.feed)
        entries = _select(parsed.entries, since=since, max_items=max_items)
        for number, entry in enumerate(entries, start=1):
            try:
                item = _entry_item(entry, source=source, slug=slug, feed_title=feed_title, fetcher=active,
                                   already_done=already_done)
            except (ValueError, UnicodeError, httpx.HTTPError) as exc:
                # e.g. a guid/link such as "http://[x" or a host label IDNA refuses: that entry fails alone
                reason = _without_secrets(f"feed entry {number} is unusable: {type(exc).__name__}: {exc}", source)
                item = RejectedDocument(id=f"{slug}__entry-{number}", source=shown, reason=reason)
            yield item
    finally:
        if owned:
            active.close()


def _parse(data: bytes, source: str) -> Any:
    import feedparser

    # Relative links resolve against the feed's URL without its credentials: urljoin keeps a base's user:password@,
    # which would then sit in every such entry's link, source and report row.
    headers = {"content-location": shown_source(source)} if is_url(source) else {}
    # A file object, never bytes or str: feedparser treats a string as a URL or a path and would open it.
    parsed = feedparser.parse(io.BytesIO(data), response_headers=headers)
    if not parsed.get("version") and not parsed.entries:
        raise DocumentError("not an RSS/Atom feed: feedparser recognised no feed format in it")
    return parsed


def _entry_date(entry: dict[str, Any]) -> datetime | None:
    for name in ("published_parsed", "updated_parsed", "created_parsed"):
        value = entry.get(name)
        if value:
            return datetime(*value[:6], tzinfo=UTC)  # type: ignore[misc]  # a struct_time's first six fields
    return None


def _select(entries: list[Any], *, since: datetime | None, max_items: int | None) -> list[Any]:
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    kept = []
    for position, entry in enumerate(entries):
        dated = _entry_date(entry)
        if since is not None and dated is not None and dated < since:
            continue
        kept.append((dated, position, entry))
    # Newest first; undated entries after the dated ones, in the feed's order.
    kept.sort(key=lambda item: (item[0] is None, -(item[0].timestamp() if item[0] else 0), item[1]))
    if max_items is not None:
        kept = kept[:max(0, max_items)]
    return [entry for _, _, entry in kept]


def _entry_item(entry: Any, *, source: str, slug: str, feed_title: str | None, fetcher: PageFetcher,
                already_done: AlreadyDone | None) -> SourceItem:
    key = entry_key(entry)
    title = _title(entry)
    link = _clean(entry.get("link"))
    feed_text = _feed_text(entry)
    if key is None:
        key = hashlib.sha256(feed_text.encode("utf-8")).hexdigest() if feed_text else None
    if key is None:
        return RejectedDocument(id=f"{slug}__entry-unnamed", source=shown_source(source), title=title,
                                reason="feed entry has no id, link, title or content")
    doc_id = f"{slug}__{entry_slug(key)}"
    where = link or f"{shown_source(source)}#{key}"
    meta = _entry_meta(entry, title=title, link=link, feed_title=feed_title, source=source, key=key)
    sha = entry_sha256(slug, key)

    if already_done is not None and already_done(doc_id):
        meta["extraction"] = "not fetched (already narrated)"
        text = feed_text or title or link or key
        return Document(id=doc_id, source=where, text=text, sha256=sha, title=title, meta=meta)

    page = _page_text(link, fetcher)
    problem = page.problem
    degraded = None
    if page.text and len(page.text) >= len(feed_text):
        meta["extraction"] = page.extractor
        text = page.text
    elif feed_text:
        if page.text:
            problem = "shorter than the feed's own content"
        elif link and is_url(link):
            # The article was asked for and not had (refused, unreachable, no text in it): the episode is the feed's
            # own summary, thinner than asked, and the next run tries the article again.
            # The problem quotes what the site and the feed said: shown, never acted on (a terminal escape).
            degraded = visible(f"spoken from the feed's own text: the article could not be read ({problem})",
                               one_line=True)
        meta["extraction"] = f"feed-content (page: {problem})"
        text = feed_text
    else:
        return RejectedDocument(id=doc_id, source=where, title=title, meta=meta,
                                reason=f"feed entry has no text: page {problem}; the feed gives no content or summary")
    return Document(id=doc_id, source=where, text=text, sha256=sha, title=title, meta=meta, degraded=degraded)


class PageText(NamedTuple):
    """An entry's article page as text: its main text and the extractor that found it, or why there is none."""

    text: str = ""
    extractor: str = ""
    problem: str = ""  # why there is no text ("no link", the fetch or extraction error); "" when there is


def _page_text(link: str | None, fetcher: PageFetcher) -> PageText:
    """The main text of the entry's article page, fetched within the fetcher's limits; never raises."""
    if not link:
        return PageText(problem="no link")
    if not is_url(link):
        return PageText(problem=f"link {link[:80]!r} is not http(s)")
    try:
        fetched = fetcher.fetch(link)
        kind = _page_kind(fetched)
        if kind == "pdf":
            text, extractor = extract.pdf_text(fetched.body).text, "pypdf"
        elif kind == "text":
            text, extractor = extract.decode_text(fetched.body), "plain text"
        else:
            text, extractor = extract.html_text(fetched.body, url=fetched.url).text, "trafilatura"
    except DocumentError as exc:
        return PageText(problem=str(exc))
    return PageText(text.replace("\x00", "").strip(), extractor)


def _page_kind(fetched: Fetched) -> str:
    content_type = fetched.content_type.split(";", 1)[0].strip().lower()
    head = fetched.body[:extract.SNIFF_BYTES]
    if head.startswith(b"%PDF-") or content_type == "application/pdf":
        return "pdf"
    if content_type == "text/plain" and not extract.looks_like_html(head):
        extract.reject_binary(head)
        return "text"
    if content_type in ("text/html", "application/xhtml+xml", "") or extract.looks_like_html(head):
        extract.reject_binary(head)
        return "html"
    raise DocumentError(f"not an article page (Content-Type {content_type})")


def _feed_text(entry: Any) -> str:
    """The entry's longest own text (full content, else summary) as plain text."""
    best = ""
    candidates = [(c.get("value"), c.get("type")) for c in entry.get("content") or ()]
    detail = entry.get("summary_detail") or {}
    candidates.append((entry.get("summary"), detail.get("type", "text/html")))
    for value, kind in candidates:
        if not value:
            continue
        text = extract.html_fragment_text(value) if "html" in (kind or "html") else str(value).strip()
        if len(text) > len(best):
            best = text
    return best


def _entry_meta(entry: Any, *, title: str | None, link: str | None, feed_title: str | None, source: str,
                key: str) -> dict[str, str]:
    author = _author(entry.get("author"))
    dated = _entry_date(entry)
    values = {
        "title": title, "author": author, "link": link,
        "published": dated.isoformat() if dated else None,
        # A feed URL can carry a token (?key=..., user:password@): the sidecar and report show it without one.
        "feed_title": feed_title, "feed": shown_source(source),
        "entry_id": key,
    }
    return {k: v for k, v in values.items() if v}


def _author(raw: object) -> str | None:
    """The name in RSS's "email (Name)" or Atom's "Name (email)"; feedparser's own split trips on long TLDs."""
    text = _clean(raw)
    if text is None:
        return None
    for pattern in (r"[^\s@()]+@[^\s()]+\s*\((.+)\)", r"(.+?)\s*\([^\s@()]+@[^\s()]+\)"):
        found = re.fullmatch(pattern, text)
        if found:
            return found.group(1).strip() or None
    return text


def _title(item: Any) -> str | None:
    """A feed's or entry's title as plain text (Atom allows type="html" titles)."""
    title = item.get("title")
    if title and "html" in (item.get("title_detail") or {}).get("type", ""):
        title = extract.html_fragment_text(title)
    return _clean(title)


def _clean(value: object) -> str | None:
    text = re.sub(r"\s+", " ", str(value)).strip() if value is not None else ""
    return text or None
