"""The webhook's pure body parsing: valid shapes become Posts, anything else a 4xx with errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.tickers import default_extractor
from ingest.webhook import BadRequest, parse_batch

pytestmark = pytest.mark.unit
NOW = datetime(2024, 5, 1, 13, 0, tzinfo=UTC)


def parse(body: bytes, content_type: str = "application/json", max_posts: int = 100):  # type: ignore[no-untyped-def]
    return parse_batch(
        body,
        content_type,
        extractor=default_extractor(),
        max_posts=max_posts,
        future_tolerance_s=300,
        received_at=NOW,
    )


def test_single_post_with_native_id_and_time() -> None:
    body = {
        "id": "n-1",
        "title": "Apple beats",
        "published_at": "2024-05-01T09:00:00-04:00",
        "source": "partner",
        "kind": "social",
        "tickers": ["msft"],
    }
    [post] = parse(json.dumps(body).encode())
    assert post.id == "webhook:partner:n-1" and post.source == "webhook:partner"
    assert post.published_at == datetime(2024, 5, 1, 13, 0, tzinfo=UTC)
    assert not post.published_at_estimated
    assert post.tickers == ("MSFT", "AAPL") and post.kind == "social"


def test_missing_time_is_arrival_time_flagged_and_id_is_stable() -> None:
    body = json.dumps({"body": "$TSLA slides"}).encode()
    [first], [second] = parse(body), parse(body)
    assert first.published_at == NOW and first.published_at_estimated
    assert first.id == second.id


def test_array_and_ndjson_batches() -> None:
    items = [{"title": f"story {i}"} for i in range(3)]
    assert len(parse(json.dumps(items).encode())) == 3
    ndjson = "\n".join(json.dumps(i) for i in items).encode() + b"\n\n"
    assert [p.title for p in parse(ndjson, "application/x-ndjson")] == [
        "story 0",
        "story 1",
        "story 2",
    ]


def test_ndjson_splits_on_newlines_only() -> None:
    """U+2028 and U+0085 are legal inside JSON strings; splitlines() split the line there."""
    items = [{"title": "one\u2028line"}, {"title": "next\x85line"}, {"title": "crlf"}]
    body = "\r\n".join(json.dumps(i, ensure_ascii=False) for i in items).encode()
    assert [p.title for p in parse(body, "application/x-ndjson")] == [
        "one line",
        "next line",
        "crlf",
    ]


@pytest.mark.parametrize("digits", [4_301, 5_000])
def test_an_integer_longer_than_python_converts_is_a_400(digits: int) -> None:
    """json.loads raises ValueError (not JSONDecodeError) past 4,300 digits: it was a 500."""
    body = b'{"title": "x", "n": ' + b"7" * digits + b"}"
    with pytest.raises(BadRequest) as caught:
        parse(body)
    assert caught.value.status == 400
    assert "integer" in caught.value.errors[0]["message"]


def test_a_time_beyond_the_future_tolerance_is_a_422_naming_the_field() -> None:
    items = [
        {"title": "in time", "published_at": "2024-05-01T13:05:00Z"},
        {"title": "from 2100", "published_at": "2100-01-01T00:00:00Z"},
    ]
    with pytest.raises(BadRequest) as caught:
        parse(json.dumps(items).encode())
    assert caught.value.status == 422
    [error] = caught.value.errors
    assert (error["item"], error["field"]) == (1, "published_at")
    assert "future_tolerance_s allows 300s" in error["message"]


def test_ticker_hints_must_be_known_or_allowed() -> None:
    """Every hint became an aggregation key: a caller could create keys without end."""
    body = json.dumps([{"title": "a", "tickers": ["$msft"]}, {"title": "b", "tickers": ["ZZZQ"]}])
    with pytest.raises(BadRequest) as caught:
        parse(body.encode())
    [error] = caught.value.errors
    assert (error["item"], error["field"]) == (1, "tickers") and "'ZZZQ'" in error["message"]
    allowed = parse_batch(
        body.encode(),
        "application/json",
        extractor=default_extractor(),
        max_posts=10,
        future_tolerance_s=300,
        allowed_tickers=("zzzq",),
        received_at=NOW,
    )
    assert [p.tickers for p in allowed] == [("MSFT",), ("ZZZQ",)]


def test_errors_name_item_and_field() -> None:
    items = [{"title": "fine"}, {"title": 5}, {"published_at": "2024-05-01T09:00:00"}, {"x": 1}]
    with pytest.raises(BadRequest) as caught:
        parse(json.dumps(items).encode())
    assert caught.value.status == 422
    fields = {(e["item"], e["field"]) for e in caught.value.errors}
    assert (1, "title") in fields and (2, "published_at") in fields and (3, "x") in fields


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"", "application/json", 400),
        (b"[]", "application/json", 400),
        (b"\xff", "application/json", 400),
        (b"{", "application/json", 400),
        (b"[" * 100_000, "application/json", 400),
        (b"hello", "text/plain", 415),
        (json.dumps([{"title": "x"}] * 5).encode(), "application/json", 413),
    ],
)
def test_malformed_bodies(body: bytes, content_type: str, status: int) -> None:
    with pytest.raises(BadRequest) as caught:
        parse(body, content_type, max_posts=4)
    assert caught.value.status == status and caught.value.errors


json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
bad_field_values = {
    "title": json_scalars.filter(lambda v: not isinstance(v, str)),
    "published_at": st.text(max_size=30).filter(lambda v: not v[:4].isdigit()),
    "tickers": json_scalars,
    "kind": st.text(max_size=10).filter(lambda v: v not in ("news", "social")),
    "id": st.just("") | st.integers(),
}


@st.composite
def bad_items(draw: st.DrawFn) -> Any:
    field = draw(st.sampled_from(sorted(bad_field_values)))
    item = {"title": "ok headline", field: draw(bad_field_values[field])}
    return draw(st.sampled_from([item, [item], [{"title": "fine"}, item]]))


bad_bodies = (
    st.binary(max_size=200).map(lambda b: (b, "application/json"))
    | st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3), max_leaves=8).map(
        lambda v: (json.dumps(v).encode(), "application/json")
    )
    | bad_items().map(lambda v: (json.dumps(v).encode(), "application/json"))
    | st.dictionaries(
        st.text(max_size=8).filter(lambda k: k not in bad_field_values),
        json_scalars,
        min_size=1,
        max_size=3,
    ).map(lambda v: (json.dumps(v).encode(), "application/json"))
    | st.text(max_size=100).map(lambda t: (t.encode(), "application/x-ndjson"))
)


@settings(max_examples=300, deadline=None)
@given(bad_bodies)
def test_bad_bodies_get_a_4xx_with_errors_never_an_exception(case: tuple[bytes, str]) -> None:
    body, content_type = case
    try:
        posts = parse(body, content_type)
    except BadRequest as exc:
        assert 400 <= exc.status < 500
        assert all({"item", "field", "message"} <= set(e) for e in exc.errors) and exc.errors
    else:
        # Only a body that happens to be valid gets through (e.g. NDJSON of plain objects).
        assert all(p.title or p.body for p in posts)
