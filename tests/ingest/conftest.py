"""Fixtures for ingest tests: scripted HTTP peers, per-test topics, reading posts back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from finsentry.config import Settings
from finsentry.schema import Post
from finsentry.store import Store
from tests.ingest.fakehttp import FakeHttpServer
from tests.support import read_to_end


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
    """Everything on the posts topic right now, as (key, post)."""
    return [
        (r.key, Post.from_json(r.value))
        for r in read_to_end(settings, "posts", timeout_s=timeout_s)
    ]
