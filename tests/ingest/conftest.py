"""Fixtures for ingest tests: scripted HTTP peers, per-test topics, reading posts back."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from finsentry.config import Settings
from finsentry.schema import Post
from finsentry.store import Store
from tests.ingest.fakehttp import FakeHttpServer


@pytest.fixture
def http_server() -> Iterator[FakeHttpServer]:
    server = FakeHttpServer().start()
    yield server
    server.stop()


def isolated(settings: Settings, tmp_path: Path, **changes: object) -> Settings:
    """Settings with a topic prefix of their own (topics created) and state under tmp_path."""
    from finsentry.topics import ensure_topics

    prefix = f"{settings.kafka_topic_prefix}{uuid.uuid4().hex[:6]}."
    fresh = settings.model_copy(
        update={"kafka_topic_prefix": prefix, "data_dir": tmp_path / "var", **changes}
    )
    ensure_topics(fresh)
    return fresh


@pytest.fixture
def posts_settings(kafka_settings: Settings, tmp_path: Path) -> Settings:
    return isolated(kafka_settings, tmp_path, ingest_producer_delivery_timeout_s=10.0)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    yield store
    store.close()


def read_posts(settings: Settings, *, timeout_s: float = 60.0) -> list[tuple[bytes, Post]]:
    """Everything on the posts topic right now: reads up to the end offsets, then stops."""
    from kafka import KafkaConsumer, TopicPartition

    topic = settings.topic("posts")
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False)
    try:
        partitions = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        end = consumer.end_offsets(partitions)
        records: list[tuple[bytes, Post]] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: could not read to the end offsets {end}")
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend((r.key, Post.from_json(r.value)) for r in batch)
        return records
    finally:
        consumer.close()
