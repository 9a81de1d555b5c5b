"""Reddit and StockTwits pollers against a local server with recorded-shape responses."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from finsentry.config import Settings
from finsentry.store import Store
from ingest.producer import KafkaPostSink
from ingest.rss import make_client
from ingest.social import RedditPoller, StockTwitsPoller
from ingest.tickers import default_extractor
from tests.ingest.conftest import read_posts
from tests.ingest.fakehttp import FakeHttpServer, Reply, Request

pytestmark = pytest.mark.integration
FIXTURES = Path(__file__).parent / "fixtures"
JSON = {"Content-Type": "application/json; charset=UTF-8"}


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def reddit_route(script: list[Reply] | None = None):  # type: ignore[no-untyped-def]
    """Page 1, or page 2 after ``t3_c3``; scripted replies (429, garbage) are served first."""
    queue = list(script or [])

    def handle(request: Request) -> Reply:
        if queue:
            return queue.pop(0)
        name = (
            "reddit_new_page2.json"
            if request.query.get("after") == "t3_c3"
            else "reddit_new_page1.json"
        )
        return Reply(200, fixture(name), JSON)

    return handle


def make(kind: str, name: str, settings: Settings, store: Store, sink: KafkaPostSink):  # type: ignore[no-untyped-def]
    cls = RedditPoller if kind == "reddit" else StockTwitsPoller
    return cls(
        name,
        extractor=default_extractor(),
        settings=settings,
        client=make_client(settings),
        store=store,
        sink=sink,
    )


def test_reddit_pages_back_publishes_once_and_honours_429(
    http_server: FakeHttpServer, posts_settings: Settings, store: Store
) -> None:
    settings = posts_settings.model_copy(update={"ingest_reddit_base_url": http_server.base_url})
    http_server.routes["/r/stocks/new.json"] = reddit_route(
        [
            Reply(429, b'{"message": "Too Many Requests"}', {"Retry-After": "7", **JSON}),
            Reply(200, b"<html>upstream hiccup</html>", {"Content-Type": "text/html"}),
        ]
    )
    sink = KafkaPostSink(settings)
    reddit = make("reddit", "stocks", settings, store, sink)
    stop = threading.Event()
    assert reddit.poll_once(stop) == 7.0  # 429: wait as told
    assert reddit.poll_once(stop) is None  # garbage: an error, no crash
    assert reddit.metrics.snapshot()["errors"] == 2
    reddit.poll_once(stop)
    assert (
        reddit.metrics.snapshot()["published"] == 4 and reddit.metrics.snapshot()["rejected"] == 1
    )
    after = [r.query.get("after") for r in http_server.hits("/r/stocks/new.json")]
    assert after == [None, None, None, "t3_c3"]
    restarted = make("reddit", "stocks", settings, store, sink)
    restarted.poll_once(stop)  # page 1 holds only known posts: no paging, nothing sent
    assert restarted.metrics.snapshot()["published"] == 0
    assert len(http_server.hits("/r/stocks/new.json")) == 5
    sink.close()
    records = read_posts(settings)
    assert sorted(post.id for _, post in records) == [
        "reddit:stocks:t3_b2",
        "reddit:stocks:t3_c3",
        "reddit:stocks:t3_d4",
        "reddit:stocks:t3_e5",
    ]
    assert all(post.kind == "social" for _, post in records)


def test_stocktwits_stream_paging_and_429_with_a_date(
    http_server: FakeHttpServer, posts_settings: Settings, store: Store
) -> None:
    settings = posts_settings.model_copy(
        update={"ingest_stocktwits_base_url": f"{http_server.base_url}/api/2"}
    )
    calls = {"n": 0}

    def handle(request: Request) -> Reply:
        calls["n"] += 1
        if calls["n"] == 1:
            return Reply(429, b"", {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
        name = (
            "stocktwits_aapl_page2.json"
            if request.query.get("max") == "500002"
            else "stocktwits_aapl_page1.json"
        )
        return Reply(200, fixture(name), JSON)

    http_server.routes["/api/2/streams/symbol/AAPL.json"] = handle
    sink = KafkaPostSink(settings)
    stream = make("stocktwits", "AAPL", settings, store, sink)
    assert stream.poll_once(threading.Event()) == 0.0  # a date in the past: retry at once
    stream.poll_once(threading.Event())
    assert stream.metrics.snapshot() == {"fetched": 4, "published": 3, "rejected": 1, "errors": 1}
    sink.close()
    records = read_posts(settings)
    assert sorted(post.id for _, post in records) == [
        "stocktwits:AAPL:500001",
        "stocktwits:AAPL:500002",
        "stocktwits:AAPL:500003",
    ]
    by_id = {post.id: post for _, post in records}
    assert by_id["stocktwits:AAPL:500002"].tickers == ("AAPL", "MSFT")
