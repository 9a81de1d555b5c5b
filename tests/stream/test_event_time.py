"""Event time across input partitions: a backlog on six partitions, read at uneven speeds,
counted in its windows (stream/watermarks.py). Real broker, real worker processes.

The posts are 20 s apart and keyed by fingerprint, as ingest keys them, so they are scored
where they land; none lands on the last partition, which stays silent, and valid-posts gets
nothing at all. Windows are the default 5 minutes with 2 minutes of lateness: each post's
window must count it, except the posts of the windows the watermark cannot have passed
(ending after the last post's event time minus the lateness).
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from kafka.partitioner.default import murmur2
from sqlalchemy import func, select

from finsentry.config import Settings
from finsentry.schema import Post
from finsentry.store import Store, signal_points
from finsentry.store import posts as posts_table
from finsentry.topics import ensure_topics
from stream.dedup import Deduplicator
from stream.process import WorkerProcess
from tests.stream.test_worker import (
    make_post,
    send_keyed,
    start,
    stored_ids,
    unique_headlines,
    wait_stored,
    worker_settings,
)
from tests.support import wait_until

pytestmark = pytest.mark.integration

PARTITIONS = 6
SILENT = PARTITIONS - 1  # no post is keyed to it
WINDOW_S, LATENESS_S = 300, 120
IDLE = {"FINSENTRY_IDLE_TIMEOUT_S": "5"}


def backlog(count: int) -> list[Post]:
    """``count`` posts 20 s apart, none keyed to the silent partition (the partition Kafka's
    default partitioner gives the fingerprint key, as ingest sends it)."""
    posts: list[Post] = []
    for title in unique_headlines(2 * count):
        post = make_post(len(posts), title, minutes=len(posts) / 3)
        key = Deduplicator.routing_key(post).encode()
        if (murmur2(key) & 0x7FFFFFFF) % PARTITIONS != SILENT:
            posts.append(post)
        if len(posts) == count:
            return posts
    raise AssertionError(f"fewer than {count} headlines")


def closable(posts: list[Post]) -> int:
    """Posts in the windows that end at or before the last event time minus the lateness
    (windows are aligned to multiples of their size since the epoch)."""
    times = [p.published_at.timestamp() for p in posts]
    mark = max(times) - LATENESS_S
    return sum(1 for t in times if (t // WINDOW_S + 1) * WINDOW_S <= mark)


def event_time_settings(kafka_settings: Settings, tmp_path: Path) -> Settings:
    """Six partitions for posts, created before any worker runs, so the backlog is there."""
    settings = worker_settings(
        kafka_settings,
        tmp_path,
        kafka_partitions=PARTITIONS,
        window_size_s=WINDOW_S,
        allowed_lateness_s=LATENESS_S,
    )
    ensure_topics(settings)
    return settings


def market_count(settings: Settings) -> int:
    """Posts counted in the closed ``market`` windows stored."""
    store = Store(settings.database_url)
    try:
        with store.engine.connect() as conn:
            query = select(func.coalesce(func.sum(signal_points.c.count), 0))
            return int(conn.execute(query.where(signal_points.c.key == "market")).scalar_one())
    finally:
        store.close()


def wait_counted(settings: Settings, posts: list[Post], worker: WorkerProcess) -> None:
    """Every post stored, then every closable post counted in its ``market`` window."""
    wait_stored(settings, len(posts), 600, worker)
    assert set(stored_ids(settings)) == {p.id for p in posts}
    expected = closable(posts)
    try:
        wait_until(lambda: market_count(settings) >= expected, 120, "closable posts counted")
    except TimeoutError:
        pytest.fail(f"{market_count(settings)} of {expected} closable posts counted")
    assert market_count(settings) == expected


def metric(worker: WorkerProcess, name: str) -> float:
    """A counter from the worker's /metrics."""
    with urllib.request.urlopen(f"{worker.url}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(f"{name} "):
                return float(line.split()[1])
    raise AssertionError(f"no {name} in /metrics")


def late_total(worker: WorkerProcess) -> float:
    return metric(worker, "finsentry_late_total")


def test_a_backlog_on_six_partitions_is_counted_in_its_windows(
    kafka_settings: Settings, tmp_path: Path, run_worker: list[WorkerProcess]
) -> None:
    """The worker starts on 2,000 posts spread over 11 hours of event time; the silent
    partition holds the windows back only until it has been idle for 5 s."""
    settings = event_time_settings(kafka_settings, tmp_path)
    posts = backlog(2000)
    send_keyed(settings, list(posts))
    worker = start(settings, run_worker, **IDLE)
    wait_counted(settings, posts, worker)
    assert late_total(worker) == 0
    assert f"{settings.topic('posts')}:{SILENT}" in worker.tail(400)  # declared idle


def test_a_backlog_is_counted_through_kills_and_restarts(
    kafka_settings: Settings, tmp_path: Path, run_worker: list[WorkerProcess]
) -> None:
    """Three SIGKILLs during the catch-up: the marks live in the windows table."""
    settings = event_time_settings(kafka_settings, tmp_path)
    posts = backlog(1200)
    send_keyed(settings, list(posts))
    worker = start(settings, run_worker, **IDLE)
    for kill in range(1, 4):
        wait_until(
            lambda kill=kill: len(stored_ids(settings)) >= kill * len(posts) // 5,  # type: ignore[misc]
            600,
            f"{kill}/5 of the backlog stored",
        )
        worker.kill()
        worker = start(settings, run_worker, **IDLE)
    wait_counted(settings, posts, worker)


def test_a_backlog_read_by_two_workers_is_counted_in_its_windows(
    kafka_settings: Settings, tmp_path: Path, run_worker: list[WorkerProcess]
) -> None:
    """Two workers share the input partitions; one aggregates what both send."""
    settings = event_time_settings(kafka_settings, tmp_path)
    posts = backlog(2000)
    send_keyed(settings, list(posts))
    first = start(settings, run_worker, **IDLE)
    start(settings, run_worker, **IDLE)
    wait_counted(settings, posts, first)


def test_a_late_post_corrects_its_closed_windows_stored_point(
    kafka_settings: Settings, tmp_path: Path, run_worker: list[WorkerProcess]
) -> None:
    """A post later than the lateness is stored, counted late and added to its closed
    window's stored point (count, mean, negative share); its z stays, no alert comes."""
    settings = worker_settings(
        kafka_settings, tmp_path, window_size_s=WINDOW_S, allowed_lateness_s=LATENESS_S
    )
    titles = unique_headlines(12)
    on_time = [make_post(n, title, minutes=n) for n, title in enumerate(titles[:10])]
    on_time.append(make_post(10, titles[10], minutes=30))  # the watermark passes 0-10 min
    worker = start(settings, run_worker, **IDLE)
    send_keyed(settings, list(on_time))
    first = on_time[0].published_at

    def market_point() -> dict[str, object] | None:
        store = Store(settings.database_url)
        try:
            return next(
                (p for p in store.signal_series("market") if p["window_start"] == first), None
            )
        finally:
            store.close()

    wait_until(lambda: market_point() is not None, 180, "the first market window closed")
    before = market_point()
    assert before is not None and before["count"] == 5
    late = make_post(11, titles[11], minutes=2)
    send_keyed(settings, [late])
    wait_stored(settings, len(on_time) + 1, 120, worker)
    wait_until(lambda: (market_point() or {}).get("count") == 6, 60, "the window corrected")
    after = market_point()
    assert after is not None
    assert (after["z"], after["baseline"], after["is_spike"]) == (
        before["z"],
        before["baseline"],
        before["is_spike"],
    )
    verdicts = scored_in(settings, [p.id for p in on_time[:5]] + [late.id])
    mean = sum(score for score, _ in verdicts) / 6
    assert after["mean_score"] == pytest.approx(mean)
    assert after["neg_share"] == pytest.approx(sum(neg for _, neg in verdicts) / 6)
    assert late_total(worker) > 0
    assert metric(worker, "finsentry_windows_corrected_total") >= 1
    assert metric(worker, "finsentry_alerts_total") == 0


def scored_in(settings: Settings, ids: list[str]) -> list[tuple[float, bool]]:
    """Score and whether negative, of the stored posts ``ids``."""
    store = Store(settings.database_url)
    try:
        with store.engine.connect() as conn:
            query = select(posts_table.c.score, posts_table.c.sentiment).where(
                posts_table.c.id.in_(ids)
            )
            return [(row.score, row.sentiment == "negative") for row in conn.execute(query)]
    finally:
        store.close()
