"""The alerts service against the real broker: commit-after-record, dead letters, and
``kill -9`` between consume and delivery followed by a restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from alerts.service import AlertService, build_dispatcher, make_consumer, make_producer
from finsentry.config import Settings
from finsentry.health import http_ok
from finsentry.schema import Alert
from finsentry.store import Store
from tests.alerts.alerts_factories import make_alert
from tests.alerts.alerts_peers import FakeSlack
from tests.support import committed_total as group_committed_total
from tests.support import free_port, wait_until

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def isolated(kafka_settings: Settings, tmp_path: Path, slack: FakeSlack) -> Iterator[Settings]:
    """Settings on fresh topics, a fresh consumer group and store, Slack on the fake."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    prefix = f"alerts-test-{uuid.uuid4().hex[:8]}."
    routing = tmp_path / "routing.toml"
    write_routing(routing, group_wait="0s")
    settings = kafka_settings.model_copy(
        update={
            "kafka_topic_prefix": prefix,
            "alerts_consumer_group": f"{prefix}group",
            "store_url": f"sqlite:///{tmp_path / 'service.db'}",
            "alerts_routing_file": routing,
            "alerts_slack_webhook_url": None,
            "alerts_max_idle_s": 0.2,
            "alerts_retry_base_s": 0.05,
        }
    )
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    topics = [settings.topic("alerts"), settings.topic("deadletter")]
    admin.create_topics([NewTopic(name, 2, 1) for name in topics])
    try:
        wait_until(
            lambda: all(partitions_led(settings, t) == 2 for t in topics), 60.0, "topics ready"
        )
        yield settings
    finally:
        admin.delete_topics(topics)
        admin.close()


def partitions_led(settings: Settings, topic: str) -> int:
    """How many of the topic's partitions have a leader in fresh metadata."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    try:
        (described,) = admin.describe_topics([topic])
    finally:
        admin.close()
    return sum(1 for p in described["partitions"] if p["leader_id"] >= 0)


def write_routing(path: Path, *, group_wait: str) -> None:
    path.write_text(
        "[[routes]]\n"
        'name = "desk"\n'
        'channels = ["slack"]\n'
        f'group_wait = "{group_wait}"\n'
        'group_interval = "0s"\n'
        'repeat_interval = "1h"\n'
    )


def produce(settings: Settings, *payloads: bytes) -> None:
    producer = make_producer(settings)
    for payload in payloads:
        producer.send(settings.topic("alerts"), payload).get(timeout=30)
    producer.close()


def committed_total(settings: Settings, group: str | None = None) -> int:
    return group_committed_total(settings, group or settings.alerts_consumer_group, "alerts")


def statuses(settings: Settings, alerts: list[Alert]) -> list[str | None]:
    store = Store(settings.database_url)
    try:
        records = [store.get_delivery(a.id, "slack:desk") for a in alerts]
    finally:
        store.close()
    return [r.status if r else None for r in records]


def test_service_delivers_commits_and_dead_letters(isolated: Settings, slack: FakeSlack) -> None:
    settings = isolated.model_copy(update={"alerts_slack_webhook_url": SecretStr(slack.url)})
    alerts = [make_alert(f"ticker:T{i}") for i in range(3)]
    produce(settings, *(a.to_json() for a in alerts), b'{"not": "an alert"}')

    store = Store(settings.database_url)
    dispatcher = build_dispatcher(settings, lambda: store)
    service = AlertService(
        settings,
        dispatcher,
        make_consumer(settings),
        producer_factory=lambda: make_producer(settings),
    )
    stop = threading.Event()
    runner = threading.Thread(target=service.run, args=(stop,))
    runner.start()
    try:
        wait_until(
            lambda: statuses(settings, alerts) == ["delivered"] * 3, 60.0, "three deliveries"
        )
        wait_until(
            lambda: committed_total(settings) == 4, 60.0, "offsets of all four messages committed"
        )
    finally:
        stop.set()
        runner.join(timeout=30)
        service.close()
        store.close()
    assert service.counters.invalid == 1 and service.counters.delivered == 3
    assert sorted(p["blocks"][1]["fields"][0]["text"] for p in slack.payloads()) == [
        "*Key*\nticker:T0",
        "*Key*\nticker:T1",
        "*Key*\nticker:T2",
    ]
    dead = read_all(settings, settings.topic("deadletter"))
    assert len(dead) == 1
    assert dead[0]["stage"] == "alerts" and "invalid Alert" in dead[0]["reason"]
    assert dead[0]["topic"] == settings.topic("alerts")


def read_all(settings: Settings, topic: str) -> list[dict[str, Any]]:
    """Every record of the topic: the end offsets say how many, so no quiet period is awaited."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers, group_id=None, enable_auto_commit=False
    )
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        total = sum(consumer.end_offsets(partitions).values())
        records: list[dict[str, Any]] = []

        def read_more() -> bool:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(json.loads(record.value) for record in batch)
            return len(records) >= total

        wait_until(read_more, 60.0, f"{total} records of {topic}")
        return records
    finally:
        consumer.close()


class ServiceProcess:
    """``finsentry alerts run`` (the real CLI) in a child process, stopped by its PID."""

    def __init__(self, settings: Settings, slack_url: str, log: Path) -> None:
        self.web_port = free_port()
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "FINSENTRY_KAFKA_BOOTSTRAP": settings.bootstrap_servers,
            "FINSENTRY_KAFKA_TOPIC_PREFIX": settings.kafka_topic_prefix,
            "FINSENTRY_STORE_URL": settings.database_url,
            "FINSENTRY_ALERTS_CONSUMER_GROUP": settings.alerts_consumer_group,
            "FINSENTRY_ALERTS_ROUTING_FILE": str(settings.alerts_routing_file),
            "FINSENTRY_ALERTS_SLACK_WEBHOOK_URL": slack_url,
            "FINSENTRY_ALERTS_MAX_IDLE_S": "0.2",
            # The killed instance leaves the group after this, and the restart can join.
            "FINSENTRY_ALERTS_SESSION_TIMEOUT_S": "6",
            "FINSENTRY_ALERTS_WEB_PORT": str(self.web_port),
        }
        env.pop("FINSENTRY_CONFIG", None)
        self.log = log
        with log.open("ab") as sink:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "from finsentry.cli import app; app()", "alerts", "run"],
                env=env,
                cwd=log.parent,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )

    def wait(self, predicate: Callable[[], bool], what: str) -> None:
        """Wait for a condition; on timeout the failure carries the service's log."""
        try:
            wait_until(predicate, 60.0, what)
        except AssertionError as exc:
            tail = self.log.read_text(errors="replace")[-6000:]
            raise AssertionError(f"{exc}\n--- service log (tail) ---\n{tail}") from None

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def terminate(self) -> int:
        os.kill(self.proc.pid, signal.SIGTERM)
        return self.proc.wait(timeout=60)

    def ensure_stopped(self) -> None:
        if self.proc.poll() is None:
            self.kill()


def test_kill_between_consume_and_delivery_then_restart(
    isolated: Settings, slack: FakeSlack, tmp_path: Path
) -> None:
    settings = isolated
    log = tmp_path / "service.log"
    first, second = make_alert("ticker:AAPL"), make_alert("ticker:MSFT")
    write_routing(settings.alerts_routing_file, group_wait="1h")  # type: ignore[arg-type]
    produce(settings, first.to_json())

    run1 = ServiceProcess(settings, slack.url, log)
    try:
        run1.wait(lambda: statuses(settings, [first]) == ["pending"], "first alert recorded")
        run1.wait(lambda: committed_total(settings) == 1, "its offset committed after the record")
        run1.kill()
    finally:
        run1.ensure_stopped()
    assert slack.requests == []

    write_routing(settings.alerts_routing_file, group_wait="0s")  # type: ignore[arg-type]
    run2 = ServiceProcess(settings, slack.url, log)
    try:
        run2.wait(lambda: statuses(settings, [first]) == ["delivered"], "recovered delivery")
        produce(settings, second.to_json())
        run2.wait(lambda: statuses(settings, [second]) == ["delivered"], "second delivery")
        run2.kill()
    finally:
        run2.ensure_stopped()

    # A new consumer group re-reads everything, as after lost offsets: nothing is re-sent.
    regroup = settings.model_copy(
        update={"alerts_consumer_group": settings.alerts_consumer_group + "-again"}
    )
    run3 = ServiceProcess(regroup, slack.url, log)
    try:
        run3.wait(
            lambda: committed_total(settings, regroup.alerts_consumer_group) == 2,
            "both alerts re-consumed by the new group",
        )
        base = f"http://127.0.0.1:{run3.web_port}"
        run3.wait(lambda: http_ok(f"{base}/ready"), "the service ready (partitions assigned)")
        assert http_ok(f"{base}/health")
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
            metrics = response.read().decode()
        assert "finsentry_alerts_consumed_total 2.0" in metrics
        assert run3.terminate() == 0
    finally:
        run3.ensure_stopped()
    keys = [p["blocks"][1]["fields"][0]["text"] for p in slack.payloads()]
    assert keys == ["*Key*\nticker:AAPL", "*Key*\nticker:MSFT"], log.read_text()
    assert "already delivered on slack:desk; skipped" in log.read_text()
    assert "s3cr3tT0k3n" not in log.read_text()
