"""Posts through a real broker: nothing lost, order kept per partition, even across a restart."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from finsentry.config import Settings
from finsentry.localkafka import LocalKafka
from finsentry.schema import Post
from tests.finsentry.test_localkafka import broker_settings

pytestmark = pytest.mark.integration

TICKERS = tuple(f"T{n:02d}" for n in range(20))
T0 = datetime(2024, 5, 1, tzinfo=UTC)


def make_posts(count: int) -> list[Post]:
    return [
        Post(
            id=f"test:{n}",
            source="replay:test",
            kind="news",
            published_at=T0 + timedelta(seconds=n),
            received_at=T0,
            title=f"headline {n}",
            tickers=(TICKERS[n % len(TICKERS)],),
        )
        for n in range(count)
    ]


def reliable_producer(bootstrap: str) -> KafkaProducer:
    return KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        retries=2**31 - 1,
        retry_backoff_ms=200,
        delivery_timeout_ms=180_000,
        max_in_flight_requests_per_connection=5,
        compression_type="gzip",
        linger_ms=5,
    )


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        admin.close()


def consume_all(bootstrap: str, topic: str, expected: int) -> dict[int, list[Post]]:
    """Every post on the topic, per partition in offset order."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=15_000,
    )
    by_partition: dict[int, list[Post]] = defaultdict(list)
    try:
        for record in consumer:
            by_partition[record.partition].append(Post.from_json(record.value))
            if sum(len(v) for v in by_partition.values()) >= expected:
                break
    finally:
        consumer.close()
    return by_partition


def assert_complete_and_ordered(by_partition: dict[int, list[Post]], sent: list[Post]) -> None:
    received = [post.id for posts in by_partition.values() for post in posts]
    assert len(received) == len(sent), "lost or duplicated posts"
    assert set(received) == {post.id for post in sent}
    for partition, posts in by_partition.items():
        numbers = [int(post.id.split(":")[1]) for post in posts]
        assert numbers == sorted(numbers), f"partition {partition} out of order"


def test_thousand_posts_round_trip(kafka_settings: Settings) -> None:
    topic = kafka_settings.topic("roundtrip")
    create_topic(kafka_settings.bootstrap_servers, topic, 3)
    sent = make_posts(1000)
    producer = reliable_producer(kafka_settings.bootstrap_servers)
    try:
        futures = [producer.send(topic, key=p.tickers[0].encode(), value=p.to_json()) for p in sent]
        producer.flush()
        assert all(f.get(timeout=30).topic == topic for f in futures)
    finally:
        producer.close()
    received = consume_all(kafka_settings.bootstrap_servers, topic, len(sent))
    assert_complete_and_ordered(received, sent)
    partitions_of: dict[str, set[int]] = defaultdict(set)
    for partition, posts in received.items():
        for post in posts:
            partitions_of[post.tickers[0]].add(partition)
    assert all(len(found) == 1 for found in partitions_of.values()), "a key spans partitions"
    assert len(received) > 1, "20 keys all hashed to one partition"


@pytest.fixture
def restartable_broker(tmp_path: Path) -> Iterator[LocalKafka]:
    broker = LocalKafka(broker_settings(tmp_path))
    broker.start()
    yield broker
    broker.stop()


def test_broker_restart_mid_produce_loses_nothing(restartable_broker: LocalKafka) -> None:
    bootstrap = restartable_broker.bootstrap
    topic = "restart-test"
    create_topic(bootstrap, topic, 3)
    sent = make_posts(1000)
    producer = reliable_producer(bootstrap)
    try:
        futures = []
        for n, post in enumerate(sent):
            if n == 400:
                producer.flush()
                restartable_broker.stop()
            if n == 600:  # 200 sends buffered while the broker was down
                restartable_broker.start()
            futures.append(producer.send(topic, key=post.tickers[0].encode(), value=post.to_json()))
        producer.flush(timeout=120)
        assert all(f.get(timeout=60) is not None for f in futures)
    finally:
        producer.close()
    assert_complete_and_ordered(consume_all(bootstrap, topic, len(sent)), sent)
