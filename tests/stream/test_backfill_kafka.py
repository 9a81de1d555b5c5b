"""``--via-kafka`` and ``--notify``: what a backfill hands to the pipeline, on a real broker."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from finsentry.config import Settings
from finsentry.schema import Alert, Post
from finsentry.store import Store, alerts
from finsentry.topics import ensure_topics
from tests.stream.backfill_data import guardian_slice
from tests.stream.test_backfill_cli import backfill
from tests.support import read_to_end

pytestmark = pytest.mark.integration


def broker_env(settings: Settings) -> dict[str, str]:
    return {
        "FINSENTRY_KAFKA_BOOTSTRAP": settings.bootstrap_servers,
        "FINSENTRY_KAFKA_TOPIC_PREFIX": settings.kafka_topic_prefix,
    }


@pytest.fixture
def topics(kafka_settings: Settings) -> Settings:
    fresh = kafka_settings.model_copy(
        update={"kafka_topic_prefix": f"{kafka_settings.kafka_topic_prefix}{uuid.uuid4().hex[:6]}."}
    )
    ensure_topics(fresh)
    return fresh


def test_via_kafka_publishes_each_post_once_in_event_time_order(
    tmp_path: Path, topics: Settings
) -> None:
    data = guardian_slice(tmp_path / "march.csv", ("March 2020",))
    env = broker_env(topics)
    first = backfill(tmp_path, data, "--via-kafka", "--from", "2020-03-10", **env)
    assert first.returncode == 0, first.stderr
    records = [(r.partition, Post.from_json(r.value)) for r in read_to_end(topics, "posts")]
    published = int(first.stdout.split("published ")[1].split()[0])
    assert len(records) == published > 300
    assert len({post.id for _, post in records}) == published
    assert all(post.published_at.day >= 10 for _, post in records)
    for partition in {p for p, _ in records}:
        times = [post.published_at for p, post in records if p == partition]
        assert times == sorted(times), f"partition {partition} is not in event-time order"

    second = backfill(tmp_path, data, "--via-kafka", "--from", "2020-03-10", **env)
    assert "already complete" in second.stdout and "published 0 posts" in second.stdout
    assert len(read_to_end(topics, "posts")) == published


def test_notify_publishes_the_alerts_for_the_alerts_service(
    tmp_path: Path, topics: Settings
) -> None:
    data = guardian_slice(tmp_path / "crash.csv", ("February 2020", "March 2020"))
    run = backfill(
        tmp_path,
        data,
        "--notify",
        "--from",
        "2020-02-20",
        "--to",
        "2020-03-14",
        **broker_env(topics),
        # Three weeks of Guardian news: at the default false-alarm rate (0.001) no alert.
        FINSENTRY_SPIKE_FALSE_ALARM_RATE="0.05",
    )
    assert run.returncode == 0, run.stderr
    assert "published to the alerts topic" in run.stdout
    sent = [Alert.from_json(r.value) for r in read_to_end(topics, "alerts")]
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        with store.engine.connect() as conn:
            stored = {row.id: row.is_backfill for row in conn.execute(select(alerts))}
    finally:
        store.close()
    assert sent and {a.id for a in sent} == set(stored)
    assert not any(stored.values()), "alerts someone was told of are not marked as backfill"
