"""``finsentry demo``: the product on the embedded default, fed with bundled dated news."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

from kafka import TopicPartition
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from finsentry.config import REPO_ROOT, Settings
from finsentry.localkafka import LocalKafka
from finsentry.runtime import wait_until
from finsentry.store import Store, alerts, posts, signal_points
from finsentry.topics import ensure_topics
from stream.app import app_id
from stream.process import WorkerProcess

DEMO_FILE = REPO_ROOT / "data" / "fin_news_headlines" / "cnbc_headlines.csv"
# The topics the worker consumes (deadletter and model-updates traffic aside).
WORKER_INPUTS = ("posts", "valid-posts", "signal-input")
console = Console()


def caught_up(settings: Settings) -> bool:
    """The worker's group has committed every partition it reads up to its end."""
    from kafka import KafkaConsumer

    # Reads the group's committed offsets without joining the group.
    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
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


def run_demo(settings: Settings, replay: Path = DEMO_FILE) -> None:
    """Start Kafka and the worker, replay the file, show results, run until Ctrl-C."""
    broker = LocalKafka(settings) if settings.embedded_kafka else None
    if broker is not None:
        status, _ = broker.start()
        console.print(f"Kafka {status.version} ready at {status.bootstrap}")
    ensure_topics(settings)
    log_file = settings.data_dir / "logs" / "worker.log"
    worker = WorkerProcess(settings, log_file, web_port=settings.worker_web_port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        console.print("starting the stream worker (loads the model) ...")
        worker.start()
        console.print(f"worker ready: metrics {worker.url}/metrics, log {log_file}")
        subprocess.run(
            [sys.executable, "-m", "finsentry", "ingest", "replay", str(replay), "--sort"],
            check=True,
        )
        wait_until(lambda: caught_up(settings), 900, "the worker to catch up")
        store = Store(settings.database_url)
        console.print(summary(store))
        console.print(
            f"store: {settings.database_url}\nworker log: {log_file}\n"
            f"metrics: {worker.url}/metrics\nPress Ctrl-C to stop everything."
        )
        while not stop.wait(1.0):
            if worker.process is not None and worker.process.poll() is not None:
                console.print(f"[red]the worker exited[/]; see {log_file}")
                break
    except KeyboardInterrupt:
        pass
    finally:
        if worker.process is not None and worker.process.poll() is None:
            worker.stop()
        if broker is not None:
            broker.stop()
        console.print("stopped: worker and Kafka")
