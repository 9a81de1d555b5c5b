"""Input a careless or hostile producer sends must not stop the real worker (issue 19)."""

from __future__ import annotations

import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from finsentry.config import Settings
from finsentry.schema import DeadLetter, Post
from finsentry.store import Store
from finsentry.topics import ensure_topics
from stream.process import WorkerProcess
from tests.stream.test_worker import (
    T0,
    _alerts,
    make_post,
    produce,
    read_topic,
    send_keyed,
    spike_story,
    start,
    unique_headlines,
    wait_stored,
    worker_settings,
)
from tests.support import changelog_keys, wait_until

pytestmark = pytest.mark.integration


def test_a_post_from_2100_is_dead_lettered_and_windows_after_it_still_close(
    kafka_settings: Settings, tmp_path: Path, run_worker: list[WorkerProcess]
) -> None:
    """One post dated 2100 carried the watermark to 2100: every later post was late, no
    window closed and the burst after it never alerted."""
    settings = worker_settings(kafka_settings, tmp_path)
    worker = start(settings, run_worker)
    story = spike_story(with_burst=True)
    future = Post(
        id="test:from-2100",
        source="replay:headlines",
        kind="news",
        published_at=datetime(2100, 1, 1, tzinfo=UTC),
        received_at=datetime.now(UTC),
        title="ZZZZ announces results for the year 2100",
        tickers=("ZZZZ",),
    )
    calm_hours = 4 * len([p for p in story if p.published_at < T0 + timedelta(hours=1)])
    values = [p.to_json() for p in story[:calm_hours]]
    values += [future.to_json()] + [p.to_json() for p in story[calm_hours:]]
    produce(settings, values)

    wait_stored(settings, len(story), 300, worker)
    store = Store(settings.database_url)
    wait_until(lambda: len(store.signal_series("ticker:ZZZZ")) >= 10, 120, "ten ZZZZ windows")
    (alert,) = [a for a in _alerts(store) if a["key"] == "ticker:ZZZZ"]
    assert alert["window_start"] == T0 + timedelta(hours=6)
    (letter,) = [DeadLetter.from_json(v) for v in read_topic(settings, "deadletter", 1)]
    assert letter.reason == "future_event_time"
    assert "2100-01-01" in letter.error
    metrics = urllib.request.urlopen(f"{worker.url}/metrics").read().decode()
    assert 'finsentry_dead_lettered_total{reason="future_event_time"} 1.0' in metrics


def spam(n: int, glyph: str) -> Post:
    """A post at the schema's limits: a 2,000-character title of 4- or 3-byte characters
    (1,990 of them and a number) and a 3,900-character link."""
    return make_post(n, f"{glyph * 1990} spam {n:04d}", minutes=n).model_copy(
        update={"url": f"https://example.com/{n:04d}/" + "a" * 3875}
    )


def test_a_batch_of_maximal_emoji_and_cjk_posts_is_stored_whole(
    kafka_settings: Settings, tmp_path: Path, run_worker: list[WorkerProcess]
) -> None:
    """64 such posts in one batch made a 1.8 MB signal-input message: the send raised,
    the worker stopped with nothing stored, and a restart met the same batch again. A post
    whose own scored message is over the producer's limit is dead-lettered, not sent."""
    settings = worker_settings(kafka_settings, tmp_path)
    posts = [
        spam(n, "\N{ROCKET}" if n % 2 else "\N{CJK UNIFIED IDEOGRAPH-80A1}") for n in range(64)
    ]
    base = make_post(999, "Company reports results", minutes=64)
    padding = 999_800 - len(base.to_json())
    huge = base.model_copy(update={"body": "x" * padding})
    assert len(huge.to_json()) == 999_800  # within the input limit, not once scored
    ensure_topics(settings)
    send_keyed(settings, [*posts, huge])  # waiting before the worker starts: one batch of 64
    worker = start(settings, run_worker)

    wait_stored(settings, len(posts), 300, worker)
    (letter,) = [DeadLetter.from_json(v) for v in read_topic(settings, "deadletter", 1)]
    assert letter.reason == "oversized"
    assert "scored message" in letter.error
    assert worker.process is not None and worker.process.poll() is None


def test_the_live_worker_prunes_dedup_claims_older_than_the_horizon(
    kafka_settings: Settings, tmp_path: Path, run_worker: list[WorkerProcess]
) -> None:
    """Backfill pruned its dedup state by event time; the worker kept every claim for good:
    two keys for each of 200 posts over 20 hours with a one-hour horizon. Claims live two
    horizons behind the newest post (stream/dedup.py)."""
    settings = worker_settings(kafka_settings, tmp_path, dedup_horizon_s=3600)
    posts = [make_post(n, t, minutes=6 * n) for n, t in enumerate(unique_headlines(200))]
    worker = start(settings, run_worker, FINSENTRY_DEDUP_HORIZON_S="3600")
    send_keyed(settings, posts)
    wait_stored(settings, len(posts), 300, worker)
    # The last two hours' claims stay: 21 posts six minutes apart, an id and a fingerprint each.
    wait_until(lambda: changelog_keys(settings, "dedup-seen")[0] <= 42, 60, "claims pruned")
    assert changelog_keys(settings, "dedup-seen")[0] == 42
