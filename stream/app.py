"""The Faust application: its configuration, topics and tables. Agents live in agents.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faust

from finsentry.config import Settings

APP_ID = "finsentry"


@dataclass
class StreamTopics:
    posts: Any
    valid: Any
    intake: Any  # posts and valid-posts, read by the scorer
    scored: Any
    signal_input: Any
    signals: Any
    alerts: Any
    deadletter: Any
    model_updates: Any


@dataclass
class StreamTables:
    seen: Any
    windows: Any
    spikes: Any


def app_id(settings: Settings) -> str:
    """Faust's app id, which is also the worker's Kafka consumer group."""
    return f"{APP_ID}-{settings.kafka_topic_prefix.rstrip('.') or 'default'}"


def create_app(settings: Settings) -> faust.App:
    datadir = settings.data_dir / "faust"
    datadir.mkdir(parents=True, exist_ok=True)
    brokers = [f"kafka://{server.strip()}" for server in settings.bootstrap_servers.split(",")]
    return faust.App(
        app_id(settings),
        broker=brokers,
        store="memory://",  # tables are rebuilt from their changelog topics on start
        datadir=str(datadir),
        topic_partitions=settings.kafka_partitions,
        topic_replication_factor=settings.kafka_replication_factor,
        processing_guarantee="at_least_once",
        web_enabled=True,
        web_bind=settings.worker_web_host,
        web_port=settings.worker_web_port,
        web_host=settings.worker_web_host,
        producer_acks=-1,
        producer_linger=settings.stream_producer_linger_ms / 1000,
        consumer_auto_offset_reset="earliest",
    )


def declare_topics(app: faust.App, settings: Settings) -> StreamTopics:
    """Values are raw bytes: finsentry.schema validates them, so bad input can be dead-lettered."""

    def topic(name: str, partitions: int | None = None) -> Any:
        return app.topic(
            settings.topic(name),
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=partitions,
        )

    return StreamTopics(
        posts=topic("posts"),
        valid=topic("valid-posts"),
        intake=app.topic(
            settings.topic("posts"),
            settings.topic("valid-posts"),
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        ),
        scored=topic("scored"),
        # One partition: a single watermark over all keys, exactly as backfill computes it.
        signal_input=topic("signal-input", partitions=1),
        signals=topic("signals"),
        alerts=topic("alerts"),
        deadletter=topic("deadletter"),
        model_updates=topic("model-updates"),
    )


def declare_tables(app: faust.App, settings: Settings) -> StreamTables:
    return StreamTables(
        seen=app.Table("dedup-seen", default=None, partitions=settings.kafka_partitions),
        windows=app.Table("windows", default=None, partitions=1),
        spikes=app.Table("spikes", default=None, partitions=1),
    )
