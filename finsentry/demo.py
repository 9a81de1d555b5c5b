"""``finsentry demo``: the product on the embedded default, fed with bundled dated news."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from finsentry.config import REPO_ROOT, Settings
from finsentry.localkafka import LocalKafka
from finsentry.runtime import wait_until
from finsentry.store import Store, alerts, posts, signal_points
from finsentry.topics import ensure_topics
from stream.process import WorkerProcess

DEMO_FILE = REPO_ROOT / "data" / "fin_news_headlines" / "cnbc_headlines.csv"
console = Console()


def lag_is_zero(worker: WorkerProcess) -> bool:
    """True once the worker has read everything and its lag gauges all read zero."""
    with urllib.request.urlopen(f"{worker.url}/metrics", timeout=5) as response:
        lines = response.read().decode().splitlines()
    lags = [
        float(line.rsplit(" ", 1)[1])
        for line in lines
        if line.startswith("finsentry_consumer_lag{")
    ]
    read = [
        float(line.rsplit(" ", 1)[1])
        for line in lines
        if line.startswith("finsentry_posts_in_total ")
    ]
    return bool(lags) and sum(lags) == 0 and bool(read) and read[0] > 0


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
        wait_until(lambda: lag_is_zero(worker), 900, "the worker to catch up")
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
