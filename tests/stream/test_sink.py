"""The worker's StoreSink on SQLite and on a real PostgreSQL server: batched writes of
scored posts, signal points and alerts, idempotent under redelivery."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from finsentry.schema import Alert, Evidence, Post, ScoredPost, SignalPoint, alert_id
from finsentry.store import Store, alerts, posts, signal_points
from stream.metrics import StreamMetrics
from stream.sink import StoreSink

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def scored(n: int, version: str = "v1", negative: float = 0.7) -> ScoredPost:
    post = Post(
        id=f"replay:{n}",
        source="replay:test",
        kind="news",
        published_at=T0 + timedelta(minutes=n),
        received_at=datetime.now(UTC) - timedelta(seconds=2),
        title=f"headline {n}",
        tickers=("AAPL",),
    )
    positive = round(1 - negative - 0.1, 6)
    return ScoredPost.from_post(
        post,
        sentiment="negative",
        sentiment_probs={"negative": negative, "neutral": 0.1, "positive": positive},
        score=positive - negative,
        topic="Earnings",
        topic_probs={"Earnings": 0.8},
        model_version=version,
    )


def point(minute: int, count: int = 3) -> SignalPoint:
    return SignalPoint(
        key="ticker:AAPL",
        window_start=T0 + timedelta(minutes=minute),
        window_end=T0 + timedelta(minutes=minute + 5),
        count=count,
        mean_score=-0.4,
        neg_share=0.6,
        z=3.2,
        is_spike=True,
    )


def alert(minute: int) -> Alert:
    start = T0 + timedelta(minutes=minute)
    return Alert(
        id=alert_id("ticker:AAPL", start),
        key="ticker:AAPL",
        window_start=start,
        window_end=start + timedelta(minutes=5),
        severity="warning",
        z=3.2,
        neg_share=0.6,
        mean_score=-0.4,
        count=3,
        baseline=0.1,
        evidence=(Evidence(id="replay:1", title="headline 1", score=-0.6),),
        model_version="v1",
    )


def count(store: Store, table: object) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def test_redelivered_batches_are_stored_once(sql_store: Store) -> None:
    metrics = StreamMetrics()
    sink = StoreSink(sql_store, metrics)
    batch = [scored(n) for n in range(50)]

    async def deliver() -> None:
        await sink.write_posts(batch)
        await sink.write_posts(batch[10:30])  # at-least-once: a batch read again after a crash
        await sink.write_points([point(0), point(5)])
        await sink.write_points([point(0, count=4)])
        await sink.write_alerts([alert(0)])
        await sink.write_alerts([alert(0)])

    asyncio.run(deliver())
    assert count(sql_store, posts) == 50
    assert count(sql_store, signal_points) == 2
    assert sql_store.signal_series("ticker:AAPL")[0]["count"] == 4
    assert count(sql_store, alerts) == 1
    row = sql_store.get_alert(alert(0).id)
    assert row is not None and row["key"] == "ticker:AAPL"
    # End-to-end latency is observed for every post written, redeliveries included.
    observed = metrics.registry.get_sample_value("finsentry_end_to_end_seconds_count")
    assert observed == 70
    total = metrics.registry.get_sample_value("finsentry_end_to_end_seconds_sum")
    assert total is not None and total >= 70 * 2


def test_a_rescored_post_takes_the_new_verdict(sql_store: Store) -> None:
    sink = StoreSink(sql_store, StreamMetrics())
    asyncio.run(sink.write_posts([scored(1, version="v1")]))
    asyncio.run(sink.write_posts([scored(1, version="v2", negative=0.2)]))
    row = sql_store.get_post("replay:1")
    assert row is not None
    assert (row["model_version"], row["sentiment_probs"]["negative"]) == ("v2", 0.2)
