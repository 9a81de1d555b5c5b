"""Hypothesis strategies that build valid wire messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import strategies as st

from finsentry.schema import TOPICS, Alert, Evidence, Post, ScoredPost, SignalPoint, alert_id

# NUL is refused by the schema (PostgreSQL cannot store it); everything else is fair game.
# Lone surrogates cannot be encoded as UTF-8 at all, so no producer can send them either.
characters = st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))
texts = st.text(characters, min_size=1, max_size=200).filter(lambda s: s.strip() != "")
offsets = st.integers(min_value=-12 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
aware_times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=offsets
)
tickers = st.from_regex(r"[A-Z][A-Z0-9]{0,4}", fullmatch=True)
keys = st.one_of(
    st.just("market"),
    tickers.map(lambda t: f"ticker:{t}"),
    st.sampled_from(TOPICS).map(lambda t: f"topic:{t}"),
    st.sampled_from(["rss:reuters", "reddit:stocks", "webhook"]).map(lambda s: f"source:{s}"),
)
unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
scores = st.floats(min_value=-1.0, max_value=1.0, allow_nan=False)


@st.composite
def posts(draw: st.DrawFn) -> Post:
    return Post(
        id=draw(texts),
        source=draw(st.sampled_from(["webhook", "rss:reuters", "reddit:wallstreetbets"])),
        kind=draw(st.sampled_from(["news", "social"])),
        published_at=draw(aware_times),
        received_at=draw(aware_times),
        title=draw(texts),
        body=draw(st.text(characters, max_size=300)),
        url=draw(st.none() | st.just("https://example.com/a?b=1")),
        tickers=tuple(draw(st.lists(tickers, max_size=4))),
    )


@st.composite
def scored_posts(draw: st.DrawFn) -> ScoredPost:
    neg, pos = draw(unit), draw(unit)
    total = neg + pos
    if total > 1:
        neg, pos = neg / total, pos / total
    neutral = max(0.0, 1.0 - neg - pos)
    topic = draw(st.sampled_from(TOPICS))
    return ScoredPost.from_post(
        draw(posts()),
        sentiment=draw(st.sampled_from(["negative", "neutral", "positive"])),
        sentiment_probs={"negative": neg, "neutral": neutral, "positive": pos},
        score=pos - neg,
        topic=topic,
        topic_probs={topic: draw(unit)},
        model_version="v1",
    )


@st.composite
def signal_points(draw: st.DrawFn) -> SignalPoint:
    start = draw(aware_times)
    return SignalPoint(
        key=draw(keys),
        window_start=start,
        window_end=start + timedelta(minutes=5),
        count=draw(st.integers(min_value=0, max_value=10_000)),
        mean_score=draw(scores),
        neg_share=draw(unit),
        baseline=draw(st.none() | unit),
        z=draw(st.none() | st.floats(min_value=-50, max_value=50)),
        is_spike=draw(st.booleans()),
        volume_baseline=draw(st.none() | st.floats(min_value=0, max_value=1e6)),
        buzz_z=draw(st.none() | st.floats(min_value=-50, max_value=50)),
        is_buzz=draw(st.booleans()),
    )


@st.composite
def alerts(draw: st.DrawFn) -> Alert:
    key = draw(keys)
    start = draw(aware_times).astimezone(UTC)
    return Alert(
        id=alert_id(key, start),
        key=key,
        window_start=start,
        window_end=start + timedelta(minutes=5),
        severity=draw(st.sampled_from(["warning", "critical"])),
        z=draw(st.floats(min_value=0, max_value=100)),
        neg_share=draw(unit),
        mean_score=draw(scores),
        count=draw(st.integers(min_value=1, max_value=1000)),
        baseline=draw(unit),
        evidence=tuple(
            Evidence(id=draw(texts), title=draw(texts), url=None, score=draw(scores))
            for _ in range(draw(st.integers(min_value=0, max_value=3)))
        ),
        model_version="v1",
        buzz=draw(st.booleans()),
    )
