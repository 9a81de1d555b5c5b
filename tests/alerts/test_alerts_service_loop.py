"""The service loop with tiny in-memory stand-ins for the consumer, producer and channel:
the cases a real broker produces only by chance (a commit refused mid-rebalance)."""

from __future__ import annotations

import json
from collections import namedtuple
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka.errors import RebalanceInProgressError

from alerts.dispatch import Dispatcher
from alerts.message import Content
from alerts.retry import RetryPolicy
from alerts.routing import Route, build_routing
from alerts.secrets import AlertSecrets
from alerts.service import AlertService
from finsentry.config import load_settings
from finsentry.store import Store
from tests.alerts.alerts_factories import T0, make_alert

pytestmark = pytest.mark.unit

Record = namedtuple("Record", "topic partition offset value")


class ListConsumer:
    """Hands out scripted polls; refuses the first ``refusals`` commits as Kafka would."""

    def __init__(self, polls: list[list[Record]], refusals: int = 0) -> None:
        self.polls = polls
        self.refusals = refusals
        self.commits = 0

    def poll(self, timeout_ms: int) -> dict[str, list[Record]]:
        return {"tp": self.polls.pop(0)} if self.polls else {}

    def commit(self) -> None:
        if self.refusals:
            self.refusals -= 1
            raise RebalanceInProgressError("rebalance under way")
        self.commits += 1

    def close(self, autocommit: bool) -> None:
        """Nothing to release."""

    def assignment(self) -> set[str]:
        return {"tp"}


class SentFuture:
    def get(self, timeout: float) -> None:
        """Already acknowledged."""


class ListProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def send(self, topic: str, value: bytes) -> SentFuture:
        self.sent.append((topic, value))
        return SentFuture()

    def close(self, timeout: float) -> None:
        """Nothing to release."""


class ListNotifier:
    channel = "slack"

    def __init__(self) -> None:
        self.sent: list[Content] = []

    def send(self, content: Content, route: Route) -> str | None:
        self.sent.append(content)
        return None

    def close(self) -> None:
        """Nothing to release."""


def test_refused_commit_is_survived_and_nothing_is_sent_twice(tmp_path: Path) -> None:
    settings = load_settings(kafka_topic_prefix="t.")
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    notifier = ListNotifier()
    routing = build_routing({"routes": [{"name": "desk", "channels": ["slack"], "group_wait": 0}]})
    dispatcher = Dispatcher(
        store,
        routing,
        {"slack": notifier},
        policy=RetryPolicy(),
        dashboard_url="http://d",
        secrets=AlertSecrets(None, None),
    )
    alert = make_alert()
    record = Record("t.alerts", 0, 0, alert.to_json())
    bad = Record("t.alerts", 0, 1, b"\xff not json")
    # The refused commit means Kafka hands the same records out again.
    consumer = ListConsumer([[record, bad], [record]], refusals=1)
    producer = ListProducer()
    clock = iter(T0 + timedelta(seconds=n) for n in range(100))
    service = AlertService(
        settings, dispatcher, consumer, producer_factory=lambda: producer, clock=lambda: next(clock)
    )
    service.step()
    service.step()
    service.close()
    store.close()
    assert service.counters.commit_failures == 1 and consumer.commits == 1
    assert len(notifier.sent) == 1 and notifier.sent[0].lead.id == alert.id
    ((dead_topic, dead_value),) = producer.sent
    dead = json.loads(dead_value)
    assert dead_topic == "t.deadletter"
    assert (dead["topic"], dead["partition"], dead["offset"]) == ("t.alerts", 0, 1)
    assert dead["raw_b64"] == "/yBub3QganNvbg=="
    assert "invalid Alert" in dead["reason"]
    assert isinstance(datetime.fromisoformat(dead["at"]), datetime)
    assert service.counters.invalid == 1 and service.counters.delivered == 1


def test_idle_poll_waits_no_longer_than_the_next_due_batch(tmp_path: Path) -> None:
    settings = load_settings(alerts_max_idle_s=5.0)
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    routing = build_routing({"routes": [{"name": "d", "channels": ["slack"], "group_wait": 2}]})
    dispatcher = Dispatcher(
        store,
        routing,
        {"slack": ListNotifier()},
        policy=RetryPolicy(),
        dashboard_url="http://d",
        secrets=AlertSecrets(None, None),
    )
    dispatcher.accept(make_alert(), T0)
    timeouts: list[int] = []

    class RecordingConsumer(ListConsumer):
        def poll(self, timeout_ms: int) -> dict[str, Any]:
            timeouts.append(timeout_ms)
            return {}

    service = AlertService(
        settings,
        dispatcher,
        RecordingConsumer([]),
        producer_factory=ListProducer,
        clock=lambda: T0 + timedelta(seconds=0.5),
    )
    service.step()
    store.close()
    assert timeouts == [1500]
