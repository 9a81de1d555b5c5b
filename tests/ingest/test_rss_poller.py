"""RSS poller against a local HTTP server, publishing to the real broker."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from finsentry.config import RssFeed, Settings
from finsentry.store import Store
from ingest.producer import KafkaPostSink
from ingest.rss import RssPoller, make_client
from ingest.tickers import default_extractor
from tests.ingest.conftest import read_posts
from tests.ingest.fakehttp import FakeHttpServer, Reply, Request

pytestmark = pytest.mark.integration
FIXTURES = Path(__file__).parent / "fixtures"


@dataclass
class FeedRoute:
    """Serves one document with an ETag or Last-Modified and honours conditional GETs."""

    file: str
    content_type: str = "application/rss+xml"
    version: str = "v1"
    use_etag: bool = True
    delay_s: float = 0.0

    def __call__(self, request: Request) -> Reply:
        validator = (
            f'"{self.version}"'
            if self.use_etag
            else f"Sat, 18 Jul 2020 09:0{len(self.version)}:00 GMT"
        )
        header = "ETag" if self.use_etag else "Last-Modified"
        asked = request.headers.get("if-none-match" if self.use_etag else "if-modified-since")
        if asked == validator:
            return Reply(304)
        body = (FIXTURES / self.file).read_bytes()
        return Reply(
            200, body, {"Content-Type": self.content_type, header: validator}, self.delay_s
        )


def poller(name: str, url: str, settings: Settings, store: Store, sink: KafkaPostSink) -> RssPoller:
    return RssPoller(
        RssFeed(name=name, url=url),
        settings=settings,
        client=make_client(settings),
        store=store,
        sink=sink,
        extractor=default_extractor(),
    )


def test_each_new_item_is_published_once_across_a_restart(
    http_server: FakeHttpServer, posts_settings: Settings, store: Store
) -> None:
    route = FeedRoute("rss_page1.xml")
    http_server.routes["/wire.xml"] = route
    url = f"{http_server.base_url}/wire.xml"
    stop = threading.Event()
    sink = KafkaPostSink(posts_settings)
    first = poller("wire", url, posts_settings, store, sink)
    first.poll_once(stop)
    first.poll_once(stop)  # unchanged: 304
    assert [r.headers.get("if-none-match") for r in http_server.hits("/wire.xml")] == [None, '"v1"']
    assert first.metrics.snapshot()["published"] == 3

    route.file, route.version = "rss_page2.xml", "v2"  # one new item, three repeated
    sink.close()
    sink = KafkaPostSink(posts_settings)
    restarted = poller("wire", url, posts_settings, store, sink)
    restarted.poll_once(stop)
    assert restarted.metrics.snapshot() == {
        "fetched": 4,
        "published": 1,
        "rejected": 0,
        "errors": 0,
    }
    sink.close()
    records = read_posts(posts_settings)
    ids = sorted(post.id for _, post in records)
    assert ids == [
        "rss:wire:http://example.test/a3",
        "rss:wire:wire-0001",
        "rss:wire:wire-0002",
        "rss:wire:wire-0004",
    ]


def test_last_modified_is_sent_back(
    http_server: FakeHttpServer, posts_settings: Settings, store: Store
) -> None:
    http_server.routes["/atom"] = FeedRoute("atom.xml", "application/atom+xml", use_etag=False)
    sink = KafkaPostSink(posts_settings)
    feed = poller("atom", f"{http_server.base_url}/atom", posts_settings, store, sink)
    feed.poll_once(threading.Event())
    feed.poll_once(threading.Event())
    sink.close()
    asked = [r.headers.get("if-modified-since") for r in http_server.hits("/atom")]
    assert asked == [None, "Sat, 18 Jul 2020 09:02:00 GMT"]
    assert store.get_state("ingest:rss:atom")["modified"] == "Sat, 18 Jul 2020 09:02:00 GMT"


def test_broken_feeds_are_logged_per_feed_and_do_not_stop_the_others(
    http_server: FakeHttpServer,
    posts_settings: Settings,
    store: Store,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = posts_settings.model_copy(update={"ingest_http_timeout_s": 0.5})
    http_server.routes["/good"] = FeedRoute("atom.xml", "application/atom+xml")
    http_server.routes["/malformed"] = FeedRoute("malformed.xml", "application/xml")
    http_server.routes["/html"] = FeedRoute("not_a_feed.html", "text/html")
    http_server.routes["/slow"] = FeedRoute("rss_page1.xml", delay_s=5.0)
    http_server.routes["/gone"] = lambda request: Reply(500, b"oops")
    sink = KafkaPostSink(settings)
    feeds = {
        name: poller(name, f"{http_server.base_url}/{name}", settings, store, sink)
        for name in ("malformed", "html", "slow", "gone", "good")
    }
    with caplog.at_level(logging.ERROR):
        for feed in feeds.values():
            feed.poll_once(threading.Event())
    for name in ("malformed", "html", "slow", "gone"):
        assert feeds[name].metrics.snapshot()["errors"] == 1
        assert any(f"rss:{name}:" in message for message in caplog.messages), name
    assert "ReadTimeout" in " ".join(caplog.messages)
    assert feeds["good"].metrics.snapshot()["published"] == 2
    sink.close()
    assert len(read_posts(settings)) == 2


def test_a_feed_that_suddenly_serves_html_recovers_without_duplicates(
    http_server: FakeHttpServer, posts_settings: Settings, store: Store
) -> None:
    route = FeedRoute("rss_page1.xml")
    http_server.routes["/flaky"] = route
    sink = KafkaPostSink(posts_settings)
    feed = poller("flaky", f"{http_server.base_url}/flaky", posts_settings, store, sink)
    feed.poll_once(threading.Event())
    route.file, route.content_type, route.version = "not_a_feed.html", "text/html", "maint"
    feed.poll_once(threading.Event())
    assert store.get_state("ingest:rss:flaky")["etag"] == '"v1"'  # the error left state alone
    route.file, route.content_type, route.version = "rss_page2.xml", "application/rss+xml", "v2"
    feed.poll_once(threading.Event())
    assert feed.metrics.snapshot() == {"fetched": 7, "published": 4, "rejected": 0, "errors": 1}
    sink.close()
    ids = [post.id for _, post in read_posts(posts_settings)]
    assert len(ids) == len(set(ids)) == 4
