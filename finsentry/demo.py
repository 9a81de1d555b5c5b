"""``finsentry up --demo``: the product on bundled dated news, replayed fast enough that
spikes and alerts show within minutes.

The demo profile (why each value):
- its own state under ``<data_dir>/demo`` (store, embedded Kafka, logs), wiped at each start,
  and a topic prefix of its own, so a demo never mixes with real data and always starts fresh;
- one partition per topic: with one local worker, more partitions add no throughput but let
  partitions drift apart in event time, and at a million-fold speed-up one second of drift
  is eleven days of event time; on one partition posts reach the windows in file order;
- daily windows: the Benzinga sample has one to a few headlines per ticker and day;
- an allowed lateness of one hour, which the in-order pipeline never needs but costs nothing.

Alerts go wherever the alerts settings send them; with none configured, to a local Slack
stand-in that prints each message here.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from kafka import TopicPartition
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy import func, select

from finsentry.config import Settings
from finsentry.kafka_auth import client_options
from finsentry.store import Store, alerts, posts, signal_points
from finsentry.supervisor import ChildSpec, Supervisor
from finsentry.up import PYTHON, alerts_not_configured, env_for
from stream.app import app_id

DEMO_PROFILE = {
    "kafka_partitions": 1,
    "kafka_topic_partitions": "{}",
    "window_size_s": 86_400,
    "allowed_lateness_s": 3_600,
}
# The topics the worker consumes (deadletter and model-updates traffic aside).
WORKER_INPUTS = ("posts", "valid-posts", "signal-input")
CATCH_UP_CHECK_S = 5.0


class LocalSlack:
    """An incoming-webhook stand-in on 127.0.0.1 that prints each message it receives."""

    def __init__(self, console: Console) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    text = str(json.loads(body).get("text", ""))
                except (ValueError, AttributeError):
                    text = body.decode("utf-8", errors="replace")
                # Alert text is data: no rich markup, no :emoji: codes (ticker:A: is a ticker).
                console.print(
                    f"[bold red]alert (local Slack stand-in):[/] {escape(text)}", emoji=False
                )
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                """The message itself is printed above."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/services/local-demo"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


class DemoRun:
    """Demo settings and environment, the replay child, and the summary once caught up."""

    def __init__(self, settings: Settings, console: Console) -> None:
        self.console = console
        self.file = settings.demo_file
        self.speed = settings.demo_speed
        if not self.file.is_file():
            raise FileNotFoundError(f"demo_file {self.file}: no such file")
        demo_dir = settings.data_dir / "demo"
        shutil.rmtree(demo_dir, ignore_errors=True)
        self.overrides: dict[str, Any] = {
            **DEMO_PROFILE,
            "data_dir": demo_dir,
            "store_url": f"sqlite:///{demo_dir / 'finsentry.db'}",
            "kafka_topic_prefix": f"finsentry-demo-{datetime.now(UTC):%Y%m%d%H%M%S}.",
        }
        self.settings = settings.model_copy(update={**self.overrides, "kafka_topic_partitions": {}})
        self.slack = LocalSlack(console) if alerts_not_configured(settings) else None
        self.summarised = False
        self._next_check = 0.0

    def env(self) -> dict[str, str]:
        env = env_for(self.overrides)
        if self.slack is not None:
            env["FINSENTRY_ALERTS_SLACK_WEBHOOK_URL"] = self.slack.url
        return env

    def replay_spec(self) -> ChildSpec:
        """The replay, restarted only on failure; it resumes from its checkpoint."""
        logs = self.settings.data_dir / "logs"
        return ChildSpec(
            name="replay",
            command=(
                *PYTHON,
                "ingest",
                "replay",
                str(self.file),
                "--sort",
                "--speed",
                str(self.speed),
                "--no-progress",
            ),
            log_file=logs / "replay.log",
            env=self.env(),
            where=f"{self.file.name} at {self.speed:,.0f}x event time",
            restart="on-failure",
            stop_grace_s=self.settings.up_stop_grace_s,
            pid_file=self.settings.data_dir / "run" / "replay.pid",
        )

    def tick(self, supervisor: Supervisor) -> None:
        """Once the replay is done and the worker has caught up, print what was stored."""
        if self.summarised or supervisor.child("replay").state != "done":
            return
        if time.monotonic() < self._next_check:
            return
        self._next_check = time.monotonic() + CATCH_UP_CHECK_S
        if not caught_up(self.settings):
            return
        self.summarised = True
        store = Store(self.settings.database_url)
        try:
            self.console.print(summary(store))
        finally:
            store.close()
        self.console.print(
            f"demo replay processed; dashboard http://{self.settings.dashboard_host}:"
            f"{self.settings.dashboard_port}. Ctrl-C stops everything."
        )

    def close(self) -> None:
        if self.slack is not None:
            self.slack.close()


def caught_up(settings: Settings) -> bool:
    """The worker's group has committed every partition it reads up to its end."""
    from kafka import KafkaConsumer

    # Reads the group's committed offsets without joining the group.
    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        **client_options(settings),
        group_id=app_id(settings),
        enable_auto_commit=False,
    )
    try:
        partitions = [
            TopicPartition(settings.topic(name), partition)
            for name in WORKER_INPUTS
            for partition in consumer.partitions_for_topic(settings.topic(name)) or ()
        ]
        ends = consumer.end_offsets(partitions)
        return all(end == 0 or (consumer.committed(tp) or 0) >= end for tp, end in ends.items())
    finally:
        consumer.close()


def summary(store: Store) -> Table:
    with store.engine.connect() as conn:
        totals = [
            conn.execute(select(func.count()).select_from(table)).scalar_one()
            for table in (posts, signal_points, alerts)
        ]
        worst = conn.execute(
            select(
                signal_points.c.key,
                func.avg(signal_points.c.mean_score).label("mean"),
                func.sum(signal_points.c.count).label("posts"),
            )
            .where(signal_points.c.key.like("ticker:%"))
            .group_by(signal_points.c.key)
            .having(func.sum(signal_points.c.count) >= 3)
            .order_by("mean")
            .limit(5)
        ).all()
    table = Table(title="finsentry demo: what the worker stored")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("posts scored", str(totals[0]))
    table.add_row("signal points (closed windows)", str(totals[1]))
    table.add_row("alerts", str(totals[2]))
    for row in worst:
        table.add_row(f"most negative: {row.key}", f"{row.mean:+.2f} over {row.posts} posts")
    return table
