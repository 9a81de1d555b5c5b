"""Pure mapping of feed documents and social API pages to Posts."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ingest.polling import parse_retry_after, run_polling
from ingest.posts import MAX_BODY_BYTES, cap_bytes, make_post, serialised_size
from ingest.rss import FeedError, parse_feed
from ingest.sink import MemorySink, story_key
from ingest.social import PageError, reddit_page, stocktwits_page
from ingest.tickers import default_extractor

pytestmark = pytest.mark.unit
FIXTURES = Path(__file__).parent / "fixtures"
NOW = datetime(2024, 5, 2, tzinfo=UTC)


def feed(name: str, content_type: str = "application/rss+xml"):  # type: ignore[no-untyped-def]
    return parse_feed(
        "wire",
        (FIXTURES / name).read_bytes(),
        content_type=content_type,
        received_at=NOW,
        extractor=default_extractor(),
    )


def test_rss_items_keep_guid_time_and_tickers() -> None:
    parsed = feed("rss_page1.xml")
    keys = [key for key, _ in parsed.items]
    assert keys == ["wire-0001", "wire-0002", "http://example.test/a3"]  # guid, else link
    first, second, third = (post for _, post in parsed.items)
    assert first.id == "rss:wire:wire-0001" and first.source == "rss:wire"
    assert first.published_at == datetime(2020, 7, 17, 23, 51, tzinfo=UTC)
    assert first.body == "Shares of $AAPL rose 3% after hours."  # markup stripped
    assert first.tickers == ("AAPL",) and first.lang == "en-us"
    assert second.tickers == ("BA",)
    assert third.published_at == NOW and third.published_at_estimated


def test_atom_entries() -> None:
    parsed = feed("atom.xml", "application/atom+xml")
    [(key, post), (_, other)] = parsed.items
    assert key == "urn:uuid:entry-1" and post.author == "Reporter One"
    assert post.published_at == datetime(2020, 7, 19, 8, 30, tzinfo=UTC)
    assert post.tickers == ("TSLA",) and other.title == "Oil falls on demand worries"


def test_html_and_broken_xml_are_feed_errors() -> None:
    with pytest.raises(FeedError, match="not a feed"):
        feed("not_a_feed.html", "text/html; charset=utf-8")
    with pytest.raises(FeedError, match="not well-formed"):
        feed("malformed.xml", "application/xml")


def test_reddit_listing_and_its_cursor() -> None:
    page = reddit_page(
        json.loads((FIXTURES / "reddit_new_page1.json").read_text()),
        subreddit="stocks",
        base_url="https://reddit.test",
        received_at=NOW,
        extractor=default_extractor(),
    )
    assert [k for k, _ in page.items] == ["t3_e5", "t3_d4", "t3_c3"]
    post = page.items[0][1]
    assert post.id == "reddit:stocks:t3_e5" and post.kind == "social"
    assert post.published_at == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert post.url == "https://reddit.test/r/stocks/comments/e5/slug/"
    assert post.tickers == ("NVDA",)
    assert page.items[1][1].tickers == ("AAPL",)
    assert page.next_cursor == "t3_c3"
    last = reddit_page(
        json.loads((FIXTURES / "reddit_new_page2.json").read_text()),
        subreddit="stocks",
        base_url="https://reddit.test",
        received_at=NOW,
        extractor=default_extractor(),
    )
    assert last.next_cursor is None and [label for label, _ in last.rejected] == ["t3_a1"]


def test_stocktwits_page_and_cursor() -> None:
    page = stocktwits_page(
        json.loads((FIXTURES / "stocktwits_aapl_page1.json").read_text()),
        symbol="AAPL",
        received_at=NOW,
        extractor=default_extractor(),
    )
    [(key, post), (_, other)] = page.items
    assert key == "500003" and post.id == "stocktwits:AAPL:500003" and post.author == "bull1"
    assert post.published_at == datetime(2024, 5, 1, 14, 2, tzinfo=UTC)
    assert other.tickers == ("AAPL", "MSFT")
    assert page.next_cursor == "500002"
    last = stocktwits_page(
        json.loads((FIXTURES / "stocktwits_aapl_page2.json").read_text()),
        symbol="AAPL",
        received_at=NOW,
        extractor=default_extractor(),
    )
    assert last.next_cursor is None and [label for label, _ in last.rejected] == ["500000"]


@pytest.mark.parametrize("garbage", [None, [], "<html>", {"data": 3}, {"kind": "Listing"}, 7])
def test_garbage_pages_are_page_errors(garbage: object) -> None:
    with pytest.raises(PageError):
        reddit_page(
            garbage, subreddit="s", base_url="b", received_at=NOW, extractor=default_extractor()
        )
    with pytest.raises(PageError):
        stocktwits_page(garbage, symbol="X", received_at=NOW, extractor=default_extractor())


def test_retry_after_forms() -> None:
    assert parse_retry_after("7") == 7.0
    when = datetime(2024, 5, 1, 12, 0, 30, tzinfo=UTC)
    assert parse_retry_after("Wed, 01 May 2024 12:00:30 GMT", now=when.replace(second=0)) == 30.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_story_key_groups_copies_of_one_headline() -> None:
    posts = feed("rss_page1.xml").items
    first = posts[0][1]
    copy = first.model_copy(
        update={"id": "other:1", "title": "APPLE beats estimates, as iPhone sales jump!"}
    )
    assert story_key(first) == story_key(copy) != story_key(posts[1][1])


class Source:
    def __init__(self, name: str, stop: threading.Event, fail: bool = False) -> None:
        self.name, self.interval_s, self.stop, self.fail, self.polls = name, 0.01, stop, fail, 0

    def poll_once(self, stop: threading.Event) -> float | None:
        self.polls += 1
        if self.polls >= 5:
            self.stop.set()
        if self.fail:
            raise RuntimeError("feed exploded")
        return None


def test_one_failing_source_does_not_stop_the_others() -> None:
    stop = threading.Event()
    broken, healthy = Source("broken", threading.Event(), fail=True), Source("healthy", stop)
    run_polling([broken, healthy], stop)
    assert healthy.polls == 5 and broken.polls >= 4


def test_memory_sink_outage_raises_with_the_posts() -> None:
    sink = MemorySink()
    sink.down = True
    posts = [post for _, post in feed("atom.xml", "application/atom+xml").items]
    with pytest.raises(Exception, match="down") as caught:
        sink.publish(posts)
    assert caught.value.unacknowledged == posts  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("char", "bytes_each"), [("\N{CJK UNIFIED IDEOGRAPH-80A1}", 3), ("\N{ROCKET}", 4)]
)
def test_a_body_is_capped_in_serialised_bytes_not_characters(char: str, bytes_each: int) -> None:
    """A million CJK characters passed the character limit and made a 3 MB post that no
    Kafka producer would take."""
    post = make_post(
        source="rss:wire",
        kind="news",
        native_id="long",
        title="A long filing",
        body=char * 1_000_000,
        published_at=NOW,
        received_at=NOW,
        extractor=default_extractor(),
    )
    assert len(post.body) == MAX_BODY_BYTES // bytes_each
    assert len(post.to_json()) < MAX_BODY_BYTES + 1_000


def test_escapes_count_as_the_bytes_they_take() -> None:
    text = "\x01" * 10 + "abc"  # each control character is six bytes once escaped
    assert serialised_size(text) == 63
    assert cap_bytes(text, 62) == "\x01" * 10 + "ab"
    assert cap_bytes(text, 5) == ""
    assert cap_bytes(text, 63) == text
