"""RSS/Atom: parse a feed document into Posts (pure) and poll feeds politely (adapter).

Per feed the store keeps ``ingest:rss:<name>``: the ETag and Last-Modified for conditional
GETs, and the guids/links already published, so a restart neither refetches unchanged
documents nor resends old items. State advances only after Kafka acknowledged the items.
"""

from __future__ import annotations

import calendar
import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import feedparser
import httpx

from finsentry.config import RssFeed, Settings
from finsentry.schema import Post, SchemaError
from finsentry.store import Store
from ingest.metrics import SourceMetrics
from ingest.polling import parse_retry_after
from ingest.posts import make_post
from ingest.sink import PostSink
from ingest.tickers import TickerExtractor

log = logging.getLogger(__name__)

FEED_CONTENT_HINTS = ("xml", "rss", "atom")


class FeedError(ValueError):
    """The document is not a usable feed (HTML page, broken XML with no items)."""


@dataclass
class ParsedFeed:
    items: list[tuple[str, Post]]  # (guid or link, post)
    rejected: list[tuple[str, str]]  # (guid or link or position, reason)
    warning: str | None = None


@dataclass
class FeedState:
    etag: str | None = None
    modified: str | None = None
    seen: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, value: dict[str, Any] | None) -> FeedState:
        value = value or {}
        return cls(value.get("etag"), value.get("modified"), list(value.get("seen", [])))

    def to_dict(self) -> dict[str, Any]:
        return {"etag": self.etag, "modified": self.modified, "seen": self.seen}


def _entry_time(entry: Any) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        parsed = entry.get(key)
        if parsed:
            return datetime.fromtimestamp(calendar.timegm(parsed), UTC)
    return None


def parse_feed(
    feed_name: str,
    content: bytes,
    *,
    content_type: str,
    received_at: datetime,
    extractor: TickerExtractor,
) -> ParsedFeed:
    """Posts of one RSS or Atom document; raises FeedError when it is no feed at all."""
    doc = feedparser.parse(content, response_headers={"content-type": content_type})
    if not doc.get("version"):
        reason = doc.get("bozo_exception") or f"no RSS/Atom root (content-type {content_type!r})"
        raise FeedError(f"rss:{feed_name}: not a feed: {reason}")
    warning = None
    if doc.get("bozo"):
        warning = f"rss:{feed_name}: feed is not well-formed: {doc.get('bozo_exception')}"
    lang = doc.feed.get("language")
    items: list[tuple[str, Post]] = []
    rejected: list[tuple[str, str]] = []
    seen_here: set[str] = set()
    for position, entry in enumerate(doc.entries):
        key = entry.get("id") or entry.get("link") or ""
        label = key or f"item #{position}"
        if key and key in seen_here:
            continue
        try:
            post = make_post(
                source=f"rss:{feed_name}",
                kind="news",
                native_id=key or None,
                title=entry.get("title"),
                body=entry.get("summary"),
                published_at=_entry_time(entry),
                received_at=received_at,
                extractor=extractor,
                url=entry.get("link"),
                author=entry.get("author"),
                lang=entry.get("language") or lang,
            )
        except SchemaError as exc:
            rejected.append((label, str(exc)))
            continue
        key = key or post.id
        seen_here.add(key)
        items.append((key, post))
    if warning and not items:
        raise FeedError(f"{warning}; no usable items")
    return ParsedFeed(items, rejected, warning)


class RssPoller:
    """Polls one feed: conditional GET, parse, publish the new items, then save state."""

    def __init__(
        self,
        feed: RssFeed,
        *,
        settings: Settings,
        client: httpx.Client,
        store: Store,
        sink: PostSink,
        extractor: TickerExtractor,
    ) -> None:
        self.feed = feed
        self.name = f"rss:{feed.name}"
        self.interval_s = feed.interval_s or settings.ingest_rss_interval_s
        self.settings = settings
        self.client = client
        self.store = store
        self.sink = sink
        self.extractor = extractor
        self.metrics = SourceMetrics(self.name)
        self.state_key = f"ingest:{self.name}"

    def poll_once(self, stop: threading.Event) -> float | None:
        state = FeedState.from_dict(self.store.get_state(self.state_key))
        headers = {}
        if state.etag:
            headers["If-None-Match"] = state.etag
        if state.modified:
            headers["If-Modified-Since"] = state.modified
        try:
            response = self.client.get(self.feed.url, headers=headers)
        except httpx.HTTPError as exc:
            self._error(f"fetch failed: {exc!r}")
            return None
        if response.status_code == 304:
            self.metrics.log_cycle("304 not modified")
            return None
        if response.status_code in (429, 503):
            delay = parse_retry_after(response.headers.get("Retry-After"))
            self._error(f"HTTP {response.status_code}, retry after {delay}s")
            return min(delay or 0.0, self.settings.ingest_max_retry_after_s)
        if response.status_code >= 400:
            self._error(f"HTTP {response.status_code}")
            return None
        try:
            parsed = parse_feed(
                self.feed.name,
                response.content,
                content_type=response.headers.get("content-type", ""),
                received_at=datetime.now(UTC),
                extractor=self.extractor,
            )
        except FeedError as exc:
            self._error(str(exc))
            return None
        if parsed.warning:
            log.warning("%s", parsed.warning)
        for label, reason in parsed.rejected:
            log.warning("%s: item %s rejected: %s", self.name, label, reason)
        seen = set(state.seen)
        new = [(key, post) for key, post in parsed.items if key not in seen]
        refused = self.sink.publish([post for _, post in new], stop=stop)
        for refusal in refused:
            log.warning("%s: item %s refused: %s", self.name, refusal.post.id, refusal.reason)
        limit = self.settings.ingest_seen_limit
        state.seen = [*state.seen, *(key for key, _ in new)][-limit:]  # refused ones too
        state.etag = response.headers.get("ETag")
        state.modified = response.headers.get("Last-Modified")
        self.store.put_state(self.state_key, state.to_dict())
        rejected = len(parsed.rejected) + len(refused)
        self.metrics.add(
            fetched=len(parsed.items) + len(parsed.rejected),
            published=len(new) - len(refused),
            rejected=rejected,
        )
        self.metrics.log_cycle(
            f"HTTP {response.status_code}",
            new=len(new) - len(refused),
            dup=len(parsed.items) - len(new),
            rejected=rejected,
        )
        return None

    def _error(self, reason: str) -> None:
        self.metrics.add(errors=1)
        log.error("%s", reason if reason.startswith(f"{self.name}:") else f"{self.name}: {reason}")
        self.metrics.log_cycle("error")
        return None


def make_client(settings: Settings) -> httpx.Client:
    """One HTTP client for polled sources: timeouts, a named user agent, redirects followed."""
    return httpx.Client(
        timeout=httpx.Timeout(settings.ingest_http_timeout_s),
        headers={"User-Agent": settings.ingest_http_user_agent},
        follow_redirects=True,
    )
