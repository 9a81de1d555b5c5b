"""The ``finsentry alerts run`` service: consume Alerts from Kafka, hand them to the dispatcher.

Offsets are committed by hand, after every alert of a poll is durably in the store (its
pending deliveries) or, when it is not a valid Alert, in the dead-letter topic. A crash
before the commit means those alerts are consumed again; the delivery log makes that
harmless. Kafka is imported lazily so the CLI stays fast.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from alerts.dispatch import Dispatcher
from alerts.errors import SecretsError
from alerts.notifiers import EmailNotifier, Notifier, SlackNotifier
from alerts.retry import RetryPolicy
from alerts.routing import Channel, RoutingConfig, default_routing, load_routing
from alerts.secrets import AlertSecrets, resolve_secrets
from finsentry.config import Settings
from finsentry.health import HealthServer
from finsentry.kafka_auth import client_options, stop_if_refused
from finsentry.schema import Alert, SchemaError
from finsentry.store import Store

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def load_configured_routing(settings: Settings, secrets: AlertSecrets) -> RoutingConfig:
    if settings.alerts_routing_file is not None:
        return load_routing(settings.alerts_routing_file)
    channels: tuple[Channel, ...] = ("slack",) if secrets.slack_webhook_url else ()
    return default_routing(channels)


def build_notifiers(
    settings: Settings, secrets: AlertSecrets, channels: Collection[str]
) -> dict[str, Notifier]:
    """The notifiers the routing needs; a channel without its secret is a clear error."""
    notifiers: dict[str, Notifier] = {}
    if "slack" in channels:
        if secrets.slack_webhook_url is None:
            raise SecretsError(
                "routing uses slack but no webhook URL is set: FINSENTRY_ALERTS_SLACK_WEBHOOK_URL "
                "or slack_webhook_url in alerts_secrets_file"
            )
        notifiers["slack"] = SlackNotifier(
            secrets.slack_webhook_url, timeout_s=settings.alerts_slack_timeout_s
        )
    if "email" in channels:
        notifiers["email"] = EmailNotifier(settings, secrets.smtp_password)
    return notifiers


def build_dispatcher(settings: Settings, store: Callable[[], Store]) -> Dispatcher:
    """Secrets, routing and notifiers first, so a configuration error surfaces before the
    store is opened (or, for SQLite, created)."""
    secrets = resolve_secrets(settings)
    routing = load_configured_routing(settings, secrets)
    channels = {channel for route in routing.routes for channel in route.channels}
    notifiers = build_notifiers(settings, secrets, channels)
    return Dispatcher(
        store(),
        routing,
        notifiers,
        policy=RetryPolicy.from_settings(settings),
        dashboard_url=settings.alerts_dashboard_url,
        secrets=secrets,
    )


@dataclass
class Counters:
    consumed: int = 0
    invalid: int = 0
    queued: int = 0
    delivered: int = 0
    failed: int = 0
    commit_failures: int = 0


class CountersCollector(Collector):
    """The service's counters as Prometheus counters, read at scrape time."""

    HELP: ClassVar[dict[str, str]] = {
        "consumed": "Alert messages read from the alerts topic",
        "invalid": "Alert messages that were not valid Alerts (sent to dead-letter)",
        "queued": "Deliveries recorded as pending",
        "delivered": "Alerts delivered",
        "failed": "Alerts whose delivery failed permanently",
        "commit_failures": "Offset commits the broker refused",
    }

    def __init__(self, counters: Counters) -> None:
        self.counters = counters

    def collect(self) -> Iterator[CounterMetricFamily]:
        for name, help_text in self.HELP.items():
            yield CounterMetricFamily(
                f"finsentry_alerts_{name}", help_text, value=getattr(self.counters, name)
            )


class AlertService:
    """The consume → record → commit → deliver loop."""

    def __init__(
        self,
        settings: Settings,
        dispatcher: Dispatcher,
        consumer: Any,
        *,
        producer_factory: Callable[[], Any],
        clock: Clock = utc_now,
    ) -> None:
        self._settings = settings
        self._dispatcher = dispatcher
        self._consumer = consumer
        self._producer_factory = producer_factory
        self._producer: Any = None
        self._clock = clock
        self.counters = Counters()
        # Read by the health server's thread: plain values, replaced whole, never mutated.
        self.last_step_at: datetime | None = None
        self.assigned_partitions = 0

    def run(self, stop: threading.Event) -> Counters:
        self._dispatcher.recover(self._clock())
        while not stop.is_set():
            self.step()
        return self.counters

    def liveness(self) -> tuple[bool, str]:
        """Alive while the loop keeps stepping (a poll waits at most alerts_max_idle_s)."""
        if self.last_step_at is None:
            return True, "starting"
        age = (self._clock() - self.last_step_at).total_seconds()
        limit = max(30.0, 10 * self._settings.alerts_max_idle_s)
        return age <= limit, f"last loop step {age:.1f}s ago (limit {limit:.0f}s)"

    def readiness(self) -> tuple[bool, str]:
        """Ready once the consumer holds partitions of the alerts topic."""
        count = self.assigned_partitions
        return count > 0, f"{count} partition(s) of {self._settings.topic('alerts')} assigned"

    def step(self) -> None:
        """One poll (waiting at most until the dispatcher's next due time), then one tick."""
        timeout_s = self._settings.alerts_max_idle_s
        wake = self._dispatcher.next_wake()
        if wake is not None:
            timeout_s = min(timeout_s, max(0.0, (wake - self._clock()).total_seconds()))
        polled = self._consumer.poll(timeout_ms=int(timeout_s * 1000))
        records = [record for batch in polled.values() for record in batch]
        for record in records:
            self._handle(record)
        if records:
            self._commit()
        for outcome in self._dispatcher.tick(self._clock()):
            if outcome.status == "delivered":
                self.counters.delivered += len(outcome.alert_ids)
            elif outcome.status == "failed":
                self.counters.failed += len(outcome.alert_ids)
        self.assigned_partitions = len(self._consumer.assignment())
        self.last_step_at = self._clock()

    def _handle(self, record: Any) -> None:
        self.counters.consumed += 1
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        try:
            alert = Alert.from_json(record.value)
        except SchemaError as exc:
            self.counters.invalid += 1
            log.error("%s: not a valid Alert, sent to dead-letter: %s", where, exc)
            self._dead_letter(record, str(exc))
            return
        self.counters.queued += self._dispatcher.accept(alert, self._clock())

    def _dead_letter(self, record: Any, reason: str) -> None:
        if self._producer is None:
            self._producer = self._producer_factory()
        body = {
            "stage": "alerts",
            "reason": reason,
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "raw_b64": base64.b64encode(record.value or b"").decode("ascii"),
            "at": self._clock().isoformat(),
        }
        future = self._producer.send(
            self._settings.topic("deadletter"), json.dumps(body).encode("utf-8")
        )
        future.get(timeout=30)

    def _commit(self) -> None:
        """Commit what was polled. A refused commit (a rebalance under way, a session that
        expired) is not fatal: those alerts are read again and found already recorded."""
        from kafka.errors import CommitFailedError, KafkaTimeoutError, RebalanceInProgressError

        try:
            self._consumer.commit()
        except (CommitFailedError, RebalanceInProgressError, KafkaTimeoutError) as exc:
            self.counters.commit_failures += 1
            log.warning("offset commit refused, these alerts will be read again: %r", exc)

    def close(self) -> None:
        self._consumer.close(autocommit=False)
        if self._producer is not None:
            self._producer.close(timeout=10)
        self._dispatcher.close()


def make_consumer(settings: Settings) -> Any:
    """A manually committing group consumer of the alerts topic.

    The topic's partitions are looked up before subscribing: without that, kafka-python 3.0
    sometimes assigned before its metadata held the topic ("No partition metadata for
    topic") and the consumer then sat with no partitions for over a minute.
    """
    from kafka import KafkaConsumer

    topic = settings.topic("alerts")
    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        **client_options(settings),
        group_id=settings.alerts_consumer_group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=200,
        session_timeout_ms=int(settings.alerts_session_timeout_s * 1000),
        heartbeat_interval_ms=max(100, int(settings.alerts_session_timeout_s * 1000 / 3)),
        # Notice a topic created after the service started within seconds, not minutes.
        metadata_max_age_ms=10_000,
    )
    if not consumer.partitions_for_topic(topic):
        log.warning("topic %s does not exist yet; waiting for it to be created", topic)
    consumer.subscribe([topic])
    return consumer


def make_producer(settings: Settings) -> Any:
    from kafka import KafkaProducer

    return KafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, acks="all", **client_options(settings)
    )


def run_service(settings: Settings, stop: threading.Event) -> Counters:
    """Run until ``stop`` is set; everything is closed on the way out."""
    opened: list[Store] = []

    def open_store() -> Store:
        opened.append(Store(settings.database_url))
        return opened[0]

    try:
        stop_if_refused(settings, log)
        dispatcher = build_dispatcher(settings, open_store)
        service = AlertService(
            settings,
            dispatcher,
            make_consumer(settings),
            producer_factory=lambda: make_producer(settings),
        )
        registry = CollectorRegistry()
        registry.register(CountersCollector(service.counters))
        health = HealthServer(
            settings.alerts_web_host,
            settings.alerts_web_port,
            live=service.liveness,
            ready=service.readiness,
            registry=registry,
        ).start()
        log.info("health and metrics on %s (/health, /ready, /metrics)", health.url)
        try:
            return service.run(stop)
        finally:
            health.stop()
            service.close()
    finally:
        for store in opened:
            store.close()
