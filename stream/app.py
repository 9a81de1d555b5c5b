"""The Faust application: its configuration, topics and tables. Agents live in agents.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import faust
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from finsentry.config import Settings
from finsentry.kafka_auth import client_options, ssl_context, uses_sasl

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
    app = faust.App(
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
        broker_credentials=broker_credentials(settings),
    )
    hold_fetching_until_seeked(app)
    return app


def broker_credentials(settings: Settings) -> faust.auth.Credentials | None:
    """The clients' SASL or TLS settings (finsentry/kafka_auth.py) as Faust takes them."""
    context = ssl_context(settings)
    if uses_sasl(settings) and settings.kafka_sasl_password is not None:
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password.get_secret_value(),
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def hold_fetching_until_seeked(app: faust.App) -> None:
    """Stop the fetcher once tables are recovered, until Faust has sought the input back.

    Faust 0.15.3 finishes a recovery by resuming the input partitions, seeking them to
    their committed offsets and then resuming flow control, which empties every stream's
    queue. The fetcher, running since it read the changelogs, kept fetching in between:
    what it put on the queues during the seek was thrown away, yet counted as read, and
    never fetched again. A restarted worker with a backlog so lost most of it until its
    next restart (one finsentry up test run: offsets 196 to 1,039 of 1,147 never stored).
    Faust's own rebalance path holds the flow the same way; the recovery resumes it after
    the seek.
    """

    @app.on_rebalance_complete.connect
    def stop_fetching(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        app.consumer.stop_flow()


class GroupOffsets:
    """The worker's consumer group's committed offsets (the next offset to read), asked of
    the broker, not of the consumer they judge; one admin client for the worker's life."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._admin: AIOKafkaAdminClient | None = None

    async def committed(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """A partition the group never committed on is left out."""
        if self._admin is None:
            admin = AIOKafkaAdminClient(
                bootstrap_servers=self.settings.bootstrap_servers,
                **client_options(self.settings),
            )
            await admin.start()
            self._admin = admin
        try:
            found = await self._admin.list_consumer_group_offsets(
                app_id(self.settings), partitions=[TopicPartition(t, p) for t, p in partitions]
            )
        except Exception:
            await self.close()  # asked afresh next time, should the connection be the fault
            raise
        return {
            (tp.topic, tp.partition): meta.offset for tp, meta in found.items() if meta.offset >= 0
        }

    async def close(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            await admin.close()


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


def input_topic_names(topics: StreamTopics) -> frozenset[str]:
    """The topics the agents read (not Faust's changelog or assignor topics)."""
    return frozenset(
        channel.get_topic_name()
        for channel in (topics.posts, topics.valid, topics.signal_input, topics.model_updates)
    )


def declare_tables(app: faust.App, settings: Settings) -> StreamTables:
    return StreamTables(
        seen=app.Table("dedup-seen", default=None, partitions=settings.kafka_partitions),
        windows=app.Table("windows", default=None, partitions=1),
        spikes=app.Table("spikes", default=None, partitions=1),
    )
