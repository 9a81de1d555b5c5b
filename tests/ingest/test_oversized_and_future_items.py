"""Items no retry can deliver are refused with their reason; the source carries on (issue 19)."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

import pytest

from finsentry.config import RssFeed, Settings
from finsentry.schema import Post
from finsentry.store import Store
from ingest.posts import MAX_BODY_BYTES
from ingest.producer import KafkaPostSink
from ingest.rss import RssPoller, make_client
from ingest.tickers import default_extractor
from tests.ingest.conftest import read_posts
from tests.ingest.fakehttp import FakeHttpServer, Reply

pytestmark = pytest.mark.integration
CJK = "\N{CJK UNIFIED IDEOGRAPH-80A1}"  # 3 bytes in UTF-8


def post(native: str, body: str, published_at: datetime | None = None) -> Post:
    now = datetime.now(UTC)
    return Post(
        id=f"test:{native}",
        source="test",
        kind="news",
        published_at=published_at or now,
        received_at=now,
        title=f"Headline {native}",
        body=body,
    )


def test_a_post_too_large_for_kafka_is_refused_and_the_rest_delivered(
    posts_settings: Settings,
) -> None:
    """MessageSizeTooLarge was retried like an outage until the caller's deadline."""
    huge = post("huge", CJK * 1_000_000)  # within the schema's characters, 3 MB of bytes
    future = post("future", "soon", datetime(2100, 1, 1, tzinfo=UTC))
    sink = KafkaPostSink(posts_settings)
    try:
        refused = sink.publish([post("a", "one"), huge, future, post("b", "two")], timeout_s=30)
    finally:
        sink.close()
    reasons = {r.post.id: r.reason for r in refused}
    assert set(reasons) == {"test:huge", "test:future"}
    assert "too large for Kafka" in reasons["test:huge"]
    assert "future_tolerance_s allows 300s" in reasons["test:future"]
    assert sorted(p.id for _, p in read_posts(posts_settings)) == ["test:a", "test:b"]


def feed(*items: tuple[str, str, str]) -> bytes:
    """An RSS document of (title, description, pubDate) items, guids g0, g1, ..."""
    entries = "".join(
        f"<item><title>{title}</title><guid>g{n}</guid><description>{body}</description>"
        f"<pubDate>{when}</pubDate></item>"
        for n, (title, body, when) in enumerate(items)
    )
    head = '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>wire</title>'
    return f"{head}{entries}</channel></rss>".encode()


def test_a_poller_caps_a_huge_item_refuses_a_future_one_and_carries_on(
    http_server: FakeHttpServer,
    posts_settings: Settings,
    store: Store,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 3 MB item was retried for good and stalled every poller sharing the thread; one
    dated 2100 went to Kafka."""
    now = datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
    document = feed(
        ("Apple beats estimates", "Shares rose.", now),
        ("A very long filing", CJK * 1_000_000, now),
        ("News from the future", "Not yet.", "Fri, 01 Jan 2100 00:00:00 GMT"),
    )
    http_server.routes["/wire"] = lambda request: Reply(
        200, document, {"Content-Type": "application/rss+xml"}
    )
    sink = KafkaPostSink(posts_settings)
    poller = RssPoller(
        RssFeed(name="wire", url=f"{http_server.base_url}/wire"),
        settings=posts_settings,
        client=make_client(posts_settings),
        store=store,
        sink=sink,
        extractor=default_extractor(),
    )
    done = threading.Event()
    with caplog.at_level(logging.WARNING):
        polling = threading.Thread(target=lambda: (poller.poll_once(done), done.set()))
        polling.start()
        polling.join(timeout=120)
    done.set()  # a poll still blocked in publish gives up now
    polling.join(timeout=60)
    sink.close()
    assert poller.metrics.snapshot() == {"fetched": 3, "published": 2, "rejected": 1, "errors": 0}
    assert any("rss:wire: item rss:wire:g2 refused: published_at" in m for m in caplog.messages)
    stored = {p.title: p for _, p in read_posts(posts_settings)}
    assert set(stored) == {"Apple beats estimates", "A very long filing"}
    assert len(stored["A very long filing"].to_json()) < MAX_BODY_BYTES + 2_000
