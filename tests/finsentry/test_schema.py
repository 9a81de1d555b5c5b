from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given

from finsentry.schema import (
    Alert,
    Message,
    Post,
    SchemaError,
    ScoredPost,
    SignalPoint,
    alert_id,
    content_id,
)
from tests.finsentry.strategies import alerts, posts, scored_posts, signal_points

pytestmark = pytest.mark.unit

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def valid_post(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "id": "webhook:1",
        "source": "webhook",
        "kind": "news",
        "published_at": "2024-05-01T12:00:00Z",
        "received_at": "2024-05-01T12:00:05+00:00",
        "title": "Apple beats estimates",
        "tickers": ["AAPL"],
    }
    data.update(overrides)
    return data


@pytest.mark.parametrize(
    ("strategy", "model"),
    [
        (posts(), Post),
        (scored_posts(), ScoredPost),
        (signal_points(), SignalPoint),
        (alerts(), Alert),
    ],
)
def test_round_trip_through_json(strategy: object, model: type[Message]) -> None:
    @given(strategy)
    def check(message: Message) -> None:
        assert model.from_json(message.to_json()) == message

    check()


def test_repeated_tickers_collapse_in_order() -> None:
    post = Post.from_dict(valid_post(tickers=["MSFT", "AAPL", "MSFT"]))
    assert post.tickers == ("MSFT", "AAPL")


def test_times_are_normalised_to_utc() -> None:
    post = Post.from_dict(valid_post(published_at="2024-05-01T14:00:00+02:00"))
    assert post.published_at == NOW
    assert post.published_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        ({"published_at": "2024-05-01T12:00:00"}, "published_at", "timezone"),
        ({"kind": "blog"}, "kind", "'news' or 'social'"),
        ({"id": ""}, "id", "at least 1 character"),
        ({"tickers": ["aapl"]}, "tickers.0", "pattern"),
        ({"title": 42}, "title", "valid string"),
        ({"surprise": 1}, "surprise", "Extra inputs"),
        ({"schema_version": 2}, "schema_version", "1"),
        ({"title": "", "body": "  "}, "(message)", "both empty"),
        ({"body": "a\x00b"}, "body", "NUL"),
    ],
)
def test_bad_post_names_field_and_reason(
    overrides: dict[str, object], field: str, reason: str
) -> None:
    with pytest.raises(SchemaError) as caught:
        Post.from_json(json.dumps(valid_post(**overrides)))
    fields = dict(caught.value.errors)
    assert field in fields, caught.value.errors
    assert reason in fields[field]
    assert field in str(caught.value)


def test_not_json_is_a_schema_error() -> None:
    with pytest.raises(SchemaError, match="Invalid JSON"):
        Post.from_json(b"\xff not json")


def scored(**overrides: object) -> dict[str, object]:
    data = valid_post(
        sentiment="negative",
        sentiment_probs={"negative": 0.7, "neutral": 0.2, "positive": 0.1},
        score=-0.6,
        topic="Earnings",
        topic_probs={"Earnings": 0.9},
        model_version="v1",
    )
    data.update(overrides)
    return data


def test_scored_post_accepts_consistent_verdict() -> None:
    assert ScoredPost.from_dict(scored()).score == pytest.approx(-0.6)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"score": 0.5}, "P(positive) - P(negative)"),
        ({"sentiment_probs": {"negative": 0.9, "neutral": 0.9, "positive": 0.1}}, "sum to"),
        ({"sentiment_probs": {"negative": 0.5, "positive": 0.5}}, "exactly the keys"),
        ({"topic": "Sports"}, "unknown topic"),
        ({"topic_probs": {"Sports": 0.5}}, "unknown topic"),
        ({"score": float("nan")}, "finite"),
    ],
)
def test_inconsistent_verdict_is_rejected(overrides: dict[str, object], reason: str) -> None:
    with pytest.raises(SchemaError, match=re.escape(reason)):
        ScoredPost.from_dict(scored(**overrides))


def test_alert_id_is_deterministic_and_checked() -> None:
    start = NOW
    first = alert_id("ticker:AAPL", start)
    assert first == alert_id("ticker:AAPL", start.astimezone())
    assert first != alert_id("ticker:MSFT", start)
    payload = {
        "id": "not-derived",
        "key": "ticker:AAPL",
        "window_start": start.isoformat(),
        "window_end": (start + timedelta(minutes=5)).isoformat(),
        "severity": "critical",
        "z": 4.2,
        "neg_share": 0.8,
        "mean_score": -0.5,
        "count": 12,
        "baseline": 0.2,
        "model_version": "v1",
    }
    with pytest.raises(SchemaError, match="alert_id"):
        Alert.from_dict(payload)
    assert Alert.from_dict({**payload, "id": first}).id == first


def test_signal_point_window_must_be_ordered() -> None:
    with pytest.raises(SchemaError, match="window_end must be after"):
        SignalPoint.from_dict(
            {
                "key": "market",
                "window_start": NOW,
                "window_end": NOW,
                "count": 1,
                "mean_score": 0.0,
                "neg_share": 0.0,
            }
        )


def test_signal_point_key_shape() -> None:
    with pytest.raises(SchemaError, match="key"):
        SignalPoint.from_dict(
            {
                "key": "AAPL",
                "window_start": NOW,
                "window_end": NOW + timedelta(minutes=5),
                "count": 1,
                "mean_score": 0.0,
                "neg_share": 0.0,
            }
        )


def test_content_id_is_stable() -> None:
    assert content_id("replay:x", "a", "b") == content_id("replay:x", "a", "b")
    assert content_id("replay:x", "a", "b") != content_id("replay:x", "ab", "")
