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
    posts = []
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


def late_total(worker: WorkerProcess) -> float:
    with urllib.request.urlopen(f"{worker.url}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("finsentry_late_total "):
                return float(line.split()[1])
    raise AssertionError("no finsentry_late_total in /metrics")


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
