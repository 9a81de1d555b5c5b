"""Social sources: Reddit subreddit ``/new`` listings and StockTwits symbol streams.

Both sit behind configurable base URLs (tests point them at a local server). The mapping of
one listing/stream page to Posts is pure (``reddit_page``, ``stocktwits_page``); the pollers
page back until they reach items already published, honour 429 Retry-After, treat garbage
(non-JSON, wrong shape) as a logged error for that cycle, and persist what they published in
the store so a restart does not resend it.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from finsentry.config import Settings
from finsentry.schema import Post, SchemaError
from finsentry.store import Store
from ingest.metrics import SourceMetrics
from ingest.polling import parse_retry_after
from ingest.posts import make_post
from ingest.sink import PostSink
from ingest.tickers import TickerExtractor

log = logging.getLogger(__name__)


class PageError(ValueError):
    """A response was not the JSON shape the API documents."""


@dataclass
class Page:
    items: list[tuple[str, Post]]  # (native id, post)
    rejected: list[tuple[str, str]]
    next_cursor: str | None  # where the next older page starts; None at the end


@dataclass
class RateLimited(Exception):
    delay_s: float


def reddit_page(
    data: Any, *, subreddit: str, base_url: str, received_at: datetime, extractor: TickerExtractor
) -> Page:
    """One ``/r/<sub>/new.json`` Listing -> Posts (newest first, as Reddit sends them)."""
    try:
        listing = data["data"]
        children = listing["children"]
        if data.get("kind") != "Listing" or not isinstance(children, list):
            raise TypeError("not a Listing")
    except (KeyError, TypeError) as exc:
        raise PageError(f"reddit:{subreddit}: not a Listing ({exc!r})") from exc
    items: list[tuple[str, Post]] = []
    rejected: list[tuple[str, str]] = []
    for position, child in enumerate(children):
        item = child.get("data") if isinstance(child, dict) else None
        if not isinstance(item, dict) or not item.get("name"):
            rejected.append((f"child #{position}", "no data.name"))
            continue
        name = str(item["name"])
        try:
            created = item.get("created_utc")
            published = datetime.fromtimestamp(float(created), UTC) if created is not None else None
            permalink = item.get("permalink")
            post = make_post(
                source=f"reddit:{subreddit}",
                kind="social",
                native_id=name,
                title=item.get("title"),
                body=item.get("selftext"),
                published_at=published,
                received_at=received_at,
                extractor=extractor,
                url=f"{base_url.rstrip('/')}{permalink}" if permalink else item.get("url"),
                author=item.get("author"),
            )
        except (SchemaError, TypeError, ValueError, OverflowError) as exc:
            rejected.append((name, str(exc)))
            continue
        items.append((name, post))
    after = listing.get("after")
    return Page(items, rejected, str(after) if after else None)


def stocktwits_page(
    data: Any, *, symbol: str, received_at: datetime, extractor: TickerExtractor
) -> Page:
    """One ``/streams/symbol/<SYM>.json`` page -> Posts; the cursor's ``max`` pages back."""
    try:
        messages = data["messages"]
        cursor = data.get("cursor") or {}
        if not isinstance(messages, list) or not isinstance(cursor, dict):
            raise TypeError("messages is not a list")
    except (KeyError, TypeError) as exc:
        raise PageError(f"stocktwits:{symbol}: not a stream page ({exc!r})") from exc
    items: list[tuple[str, Post]] = []
    rejected: list[tuple[str, str]] = []
    for position, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("id") is None:
            rejected.append((f"message #{position}", "no id"))
            continue
        native = str(message["id"])
        try:
            created = message.get("created_at")
            published = (
                datetime.fromisoformat(str(created).replace("Z", "+00:00")) if created else None
            )
            if published is not None and published.tzinfo is None:
                raise ValueError(f"created_at {created!r} has no timezone")
            user = message.get("user") or {}
            symbols = [
                s.get("symbol", "") for s in message.get("symbols") or [] if isinstance(s, dict)
            ]
            post = make_post(
                source=f"stocktwits:{symbol}",
                kind="social",
                native_id=native,
                title=None,
                body=message.get("body"),
                published_at=published,
                received_at=received_at,
                extractor=extractor,
                author=user.get("username") if isinstance(user, dict) else None,
                ticker_hints=[symbol, *symbols],
            )
        except (SchemaError, TypeError, ValueError, AttributeError) as exc:
            rejected.append((native, str(exc)))
            continue
        items.append((native, post))
    more = cursor.get("more") and cursor.get("max") is not None
    return Page(items, rejected, str(cursor["max"]) if more else None)


class SocialPoller(ABC):
    """Shared polling for a paged source: page back to known items, publish, save state."""

    def __init__(
        self,
        name: str,
        interval_s: float,
        *,
        settings: Settings,
        client: httpx.Client,
        store: Store,
        sink: PostSink,
    ) -> None:
        self.name = name
        self.interval_s = interval_s
        self.settings = settings
        self.client = client
        self.store = store
        self.sink = sink
        self.metrics = SourceMetrics(name)
        self.state_key = f"ingest:{name}"

    @abstractmethod
    def request(self, cursor: str | None) -> tuple[str, dict[str, str]]:
        """URL and query for the newest page (``cursor`` None) or an older one."""

    @abstractmethod
    def page(self, data: Any) -> Page:
        """Map one decoded response."""

    def _get(self, cursor: str | None) -> Any:
        url, params = self.request(cursor)
        response = self.client.get(url, params=params)
        if response.status_code == 429:
            delay = parse_retry_after(response.headers.get("Retry-After"))
            if delay is None:
                delay = self.interval_s
            raise RateLimited(min(delay, self.settings.ingest_max_retry_after_s))
        if response.status_code >= 400:
            raise PageError(f"HTTP {response.status_code} from {url}")
        try:
            return response.json()
        except ValueError as exc:
            raise PageError(f"not JSON from {url}: {response.text[:80]!r}") from exc

    def poll_once(self, stop: threading.Event) -> float | None:
        state = self.store.get_state(self.state_key) or {}
        seen = set(state.get("seen", []))
        new: dict[str, Post] = {}
        fetched = rejected = 0
        delay: float | None = None
        outcome = "ok"
        cursor: str | None = None
        try:
            for _ in range(self.settings.ingest_social_max_pages):
                page = self.page(self._get(cursor))
                fetched += len(page.items) + len(page.rejected)
                rejected += len(page.rejected)
                for label, reason in page.rejected:
                    log.warning("%s: item %s rejected: %s", self.name, label, reason)
                fresh = [(key, post) for key, post in page.items if key not in seen]
                new.update((key, post) for key, post in fresh if key not in new)
                if not page.next_cursor or len(fresh) < len(page.items):
                    break
                cursor = page.next_cursor
        except RateLimited as limited:
            delay = limited.delay_s
            outcome = f"429, retry after {delay:.0f}s"
        except (PageError, httpx.HTTPError) as exc:
            outcome = f"error: {exc}"
        if outcome != "ok":
            self.metrics.add(errors=1)
            log.error("%s: %s", self.name, outcome)
        # Oldest first, so the stream sees them in event order.
        posts = sorted(new.values(), key=lambda p: p.published_at)
        refused = self.sink.publish(posts, stop=stop)
        for refusal in refused:
            log.warning("%s: item %s refused: %s", self.name, refusal.post.id, refusal.reason)
        rejected += len(refused)
        limit = self.settings.ingest_seen_limit  # refused items count as seen: not retried
        self.store.put_state(self.state_key, {"seen": [*state.get("seen", []), *new][-limit:]})
        published = len(posts) - len(refused)
        self.metrics.add(fetched=fetched, published=published, rejected=rejected)
        self.metrics.log_cycle(outcome, new=published, rejected=rejected)
        return delay


class RedditPoller(SocialPoller):
    def __init__(
        self, subreddit: str, *, extractor: TickerExtractor, settings: Settings, **kwargs: Any
    ) -> None:
        super().__init__(
            f"reddit:{subreddit}", settings.ingest_reddit_interval_s, settings=settings, **kwargs
        )
        self.subreddit = subreddit
        self.extractor = extractor

    def request(self, cursor: str | None) -> tuple[str, dict[str, str]]:
        params = {"limit": "100", "raw_json": "1"}
        if cursor:
            params["after"] = cursor
        return (
            f"{self.settings.ingest_reddit_base_url.rstrip('/')}/r/{self.subreddit}/new.json",
            params,
        )

    def page(self, data: Any) -> Page:
        return reddit_page(
            data,
            subreddit=self.subreddit,
            base_url=self.settings.ingest_reddit_base_url,
            received_at=datetime.now(UTC),
            extractor=self.extractor,
        )


class StockTwitsPoller(SocialPoller):
    def __init__(
        self, symbol: str, *, extractor: TickerExtractor, settings: Settings, **kwargs: Any
    ) -> None:
        super().__init__(
            f"stocktwits:{symbol}",
            settings.ingest_stocktwits_interval_s,
            settings=settings,
            **kwargs,
        )
        self.symbol = symbol
        self.extractor = extractor

    def request(self, cursor: str | None) -> tuple[str, dict[str, str]]:
        params = {"max": cursor} if cursor else {}
        base = self.settings.ingest_stocktwits_base_url.rstrip("/")
        return f"{base}/streams/symbol/{self.symbol}.json", params

    def page(self, data: Any) -> Page:
        return stocktwits_page(
            data, symbol=self.symbol, received_at=datetime.now(UTC), extractor=self.extractor
        )
