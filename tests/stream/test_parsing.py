from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from finsentry.schema import DeadLetter, Post
from stream.parsing import MAX_KEPT_RAW_BYTES, parse_post

pytestmark = pytest.mark.unit

GOOD = {
    "id": "webhook:1",
    "source": "webhook",
    "kind": "news",
    "published_at": "2024-05-01T12:00:00Z",
    "received_at": "2024-05-01T12:00:01Z",
    "title": "Apple beats estimates",
}


NOW = datetime(2024, 5, 1, 12, 5, tzinfo=UTC)


def parse(raw: bytes | None, max_bytes: int = 10_000) -> Post | DeadLetter:
    return parse_post(
        raw,
        max_bytes=max_bytes,
        topic="finsentry.posts",
        partition=3,
        offset=42,
        now=NOW,
        future_tolerance_s=300,
    )


def test_valid_post() -> None:
    result = parse(json.dumps(GOOD).encode())
    assert isinstance(result, Post) and result.id == "webhook:1"


def test_a_post_within_the_future_tolerance_passes() -> None:
    result = parse(json.dumps({**GOOD, "published_at": "2024-05-01T12:10:00Z"}).encode())
    assert isinstance(result, Post)


@pytest.mark.parametrize(
    ("raw", "reason", "detail"),
    [
        (b"{nope", "not_json", "not JSON"),
        (b"\xff\xfe", "undecodable", "not UTF-8"),
        (json.dumps({**GOOD, "kind": "blog"}).encode(), "invalid", "kind"),
        (json.dumps({**GOOD, "body": "x" * 20_000}).encode(), "oversized", "10000-byte limit"),
        (None, "invalid", "tombstone"),
        (
            json.dumps({**GOOD, "published_at": "2024-05-01T12:10:01Z"}).encode(),
            "future_event_time",
            "301s ahead",
        ),
        (
            json.dumps({**GOOD, "published_at": "2100-01-01T00:00:00Z"}).encode(),
            "future_event_time",
            "future_tolerance_s allows 300s",
        ),
    ],
)
def test_bad_input_becomes_a_dead_letter_with_its_origin(
    raw: bytes | None, reason: str, detail: str
) -> None:
    letter = parse(raw)
    assert isinstance(letter, DeadLetter)
    assert (letter.reason, letter.source_topic, letter.partition, letter.offset) == (
        reason,
        "finsentry.posts",
        3,
        42,
    )
    assert detail in letter.error
    assert base64.b64decode(letter.raw_base64) == (raw or b"")[:MAX_KEPT_RAW_BYTES]
    assert DeadLetter.from_json(letter.to_json()) == letter


def test_huge_input_keeps_a_bounded_sample_and_its_true_size() -> None:
    raw = b"x" * (MAX_KEPT_RAW_BYTES * 3)
    letter = parse(raw, max_bytes=1_000)
    assert isinstance(letter, DeadLetter)
    assert letter.raw_bytes == len(raw)
    assert len(base64.b64decode(letter.raw_base64)) == MAX_KEPT_RAW_BYTES
