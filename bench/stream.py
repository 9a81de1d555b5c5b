"""End-to-end stream throughput and latency against the inference engine alone.

Starts its own broker and worker (on free ports, under a temp dir), then on the same texts:
1. engine: posts/s of ``Engine.classify`` in batches of ``stream_batch_size``, on the very
   texts the worker scores (each title carries its run's mark, so dedup lets it through);
2. stream: posts/s from producing N posts to all N stored (validate, dedup, score, store),
   after ``--warmup-posts`` through the same pipeline (start-up costs stay out);
3. latency: received_at -> stored_at p50/p95/p99 at an offered load of half of (2);
4. windows: the share of the posts (all three runs, one after another in event time, 1 s
   apart) counted in the closed ``market`` windows, of those the watermark can have passed
   (windows ending by the last event time minus the lateness): must be 100%.
(1) runs before and after (2) and the ratio is against their mean, so a load that drifts
during the run (a shared machine) biases it less. Posts are keyed as ingest keys them.
Prints a table; the ratio stream/engine is the figure of merit (target >= 0.8). CPU
seconds per post of the engine alone, the worker and the broker (Linux /proc) say what
each costs whatever else runs on the machine.
SIGTERM stops the worker and the broker like Ctrl-C does.

    .venv/bin/python -m bench.stream [--posts 2000] [--warmup-posts 2000]

(Run as a module: as a script, bench/stream.py would shadow the stream package.)
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import signal
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kafka import KafkaProducer
from sqlalchemy import ColumnElement, and_, func, select

from finsentry.config import REPO_ROOT, Settings, load_settings
from finsentry.localkafka import LocalKafka
from finsentry.runtime import free_port, wait_until
from finsentry.schema import Post
from finsentry.store import Store, posts, signal_points
from ingest.sink import story_key
from models.engine import load_engine
from stream.process import WorkerProcess

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def headlines(limit: int) -> list[str]:
    titles: list[str] = []
    for name in ("guardian_headlines.csv", "cnbc_headlines.csv"):
        path = REPO_ROOT / "data" / "fin_news_headlines" / name
        with path.open(encoding="utf-8", newline="") as handle:
            titles += [
                " ".join(r["Headlines"].split())
                for r in csv.DictReader(handle)
                if r.get("Headlines")
            ]
    return titles[:limit]


def cycled(texts: list[str], n: int) -> list[str]:
    """``n`` texts, repeating ``texts`` as often as needed."""
    return (texts * (n // len(texts) + 1))[:n]


def make_posts(texts: list[str], run: str, start: datetime = T0) -> list[Post]:
    """Titles differ per run and index, so dedup lets every post through; one a second of
    event time from ``start``."""
    return [
        Post(
            id=f"{run}:{n}",
            source="replay:bench",
            kind="news",
            published_at=start + timedelta(seconds=n),
            received_at=datetime.now(UTC),
            title=f"{text} ({run} {n})",
            tickers=("AAPL",),
        )
        for n, text in enumerate(texts)
    ]


def of_run(run: str) -> ColumnElement[bool]:
    """The run's posts as a range of the primary key: polled every 50 ms while the worker
    runs, a LIKE would scan the whole table each time, on the cores being measured."""
    return and_(posts.c.id >= f"{run}:", posts.c.id < f"{run};")  # ';' follows ':'


def stored(store: Store, run: str) -> int:
    with store.engine.connect() as conn:
        query = select(func.count()).select_from(posts).where(of_run(run))
        return int(conn.execute(query).scalar_one())


def send(
    producer: KafkaProducer, settings: Settings, batch: list[Post], rate: float | None
) -> None:
    """Publish as ingest does: keyed by the post's fingerprint (ingest.sink.story_key)."""
    started = time.perf_counter()
    for n, post in enumerate(batch):
        if rate is not None:
            delay = started + n / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        fresh = post.model_copy(update={"received_at": datetime.now(UTC)})
        producer.send(settings.topic("posts"), key=story_key(fresh), value=fresh.to_json())
    producer.flush()


@dataclass(frozen=True)
class EngineRun:
    rate: float  # posts/s
    cpu_per_post: float  # CPU seconds of this process (every thread) per post
    model: str


def engine_run(settings: Settings, texts: list[str]) -> EngineRun:
    """The engine alone on ``texts`` in batches of ``stream_batch_size``, as many calls at
    once as it serves (its lanes), so it runs at its best (the worker's scorer sends it one
    batch at a time)."""
    size = settings.stream_batch_size
    batches = [texts[start : start + size] for start in range(0, len(texts), size)]
    with load_engine(settings) as engine, ThreadPoolExecutor(engine.lanes) as callers:
        cpu, started = time.process_time(), time.perf_counter()
        list(callers.map(engine.classify, batches))
        rate = len(texts) / (time.perf_counter() - started)
        cpu_per_post = (time.process_time() - cpu) / len(texts)
        return EngineRun(
            rate, cpu_per_post, f"{engine.version} ({engine.backend} on {engine.device})"
        )


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads (Linux /proc).

    CPU per post does not depend on how many other processes share the cores, unlike
    posts/s, so it tells what the pipeline costs even on a loaded machine.
    """
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def local_broker() -> Iterator[tuple[LocalKafka, Path]]:
    """An embedded broker on free ports and a fresh work folder; stopped on the way out,
    on SIGTERM too."""
    stop_on_sigterm()
    work = Path(tempfile.mkdtemp(prefix="finsentry-bench-"))
    broker = LocalKafka(
        load_settings(
            data_dir=work / "broker", kafka_port=free_port(), kafka_controller_port=free_port()
        )
    )
    try:
        broker.start()
        yield broker, work
    finally:
        broker.stop()


def bench_settings(broker: LocalKafka, work: Path) -> Settings:
    """A worker's settings on ``broker``: topics of their own, 2 partitions, SQLite in ``work``."""
    return load_settings(
        data_dir=work / "var",
        kafka_bootstrap=broker.bootstrap,
        kafka_topic_prefix=f"bench{uuid.uuid4().hex[:6]}.",
        kafka_partitions=2,
        store_url=f"sqlite:///{work / 'store.db'}",
    )


def stop_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so the finally blocks stop the worker and the broker."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def counted_in_windows(store: Store) -> int:
    """Posts counted in the closed ``market`` windows stored."""
    with store.engine.connect() as conn:
        query = select(func.coalesce(func.sum(signal_points.c.count), 0))
        return int(conn.execute(query.where(signal_points.c.key == "market")).scalar_one())


def closable(settings: Settings, sent: list[Post]) -> int:
    """Posts in the windows the watermark can pass: ending by the last event time minus
    the allowed lateness (windows are aligned to multiples of their size)."""
    times = [post.published_at.timestamp() for post in sent]
    mark, size = max(times) - settings.allowed_lateness_s, settings.window_size_s
    return sum(1 for t in times if (t // size + 1) * size <= mark)


def latencies(store: Store, run: str) -> list[float]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(posts.c.received_at, posts.c.stored_at).where(of_run(run)))
        return sorted((r.stored_at - r.received_at).total_seconds() for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=2000)
    parser.add_argument("--latency-seconds", type=float, default=30.0)
    parser.add_argument(
        "--warmup-posts",
        type=int,
        default=2000,
        help="posts through the pipeline before measuring, so start-up costs (the broker's "
        "JIT compiler, first batches) stay out of the figures",
    )
    args = parser.parse_args()
    if args.posts < 1 or args.warmup_posts < 0:
        parser.error("--posts must be at least 1 and --warmup-posts at least 0")
    with local_broker() as (broker, work):
        run(broker, work, args.posts, args.latency_seconds, args.warmup_posts)


def run(broker: LocalKafka, work: Path, n_posts: int, latency_seconds: float, n_warm: int) -> None:
    settings = bench_settings(broker, work)
    texts = headlines(n_posts)
    warm_texts = cycled(texts, n_warm)
    full = make_posts(texts, "full", T0 + timedelta(seconds=n_warm))
    scored_texts = [post.text for post in full]  # what the worker scores, run marks included
    before = engine_run(settings, scored_texts)
    # Idle partitions release the watermark soon, so the last windows close before the end.
    worker = WorkerProcess(settings, work / "worker.log", FINSENTRY_IDLE_TIMEOUT_S="5")
    store = Store(settings.database_url)
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    broker_pid = broker.pid()
    assert broker_pid is not None, "the broker is not running"
    try:
        worker.start()
        assert worker.process is not None
        warm = make_posts(warm_texts, "warm")
        send(producer, settings, warm, None)
        wait_until(lambda: stored(store, "warm") == len(warm_texts), 600, "warm-up posts stored")
        worker_cpu, broker_cpu = cpu_seconds(worker.process.pid), cpu_seconds(broker_pid)
        started = time.perf_counter()
        send(producer, settings, full, None)
        wait_until(lambda: stored(store, "full") == len(texts), 900, "all posts stored")
        stream_rate = len(texts) / (time.perf_counter() - started)
        worker_cpu = (cpu_seconds(worker.process.pid) - worker_cpu) / len(texts)
        broker_cpu = (cpu_seconds(broker_pid) - broker_cpu) / len(texts)
        after = engine_run(settings, scored_texts)  # the worker idles meanwhile

        offered = stream_rate / 2
        count = max(50, int(offered * latency_seconds))
        after_full = full[-1].published_at + timedelta(seconds=1)
        paced = make_posts(cycled(texts, count), "paced", after_full)
        send(producer, settings, paced, offered)
        wait_until(lambda: stored(store, "paced") == count, 600, "paced posts stored")
        lat = latencies(store, "paced")
        expected = closable(settings, warm + full + paced)
        with contextlib.suppress(TimeoutError):  # the figure says how far it got
            wait_until(lambda: counted_in_windows(store) >= expected, 120, "windows closed")
        counted = counted_in_windows(store)
    finally:
        producer.close()
        if worker.process is not None:
            try:
                worker.stop()
            except subprocess.TimeoutExpired:
                worker.kill()
    engine = (before.rate + after.rate) / 2
    engine_cpu = (before.cpu_per_post + after.cpu_per_post) / 2
    q = statistics.quantiles(lat, n=100)
    print(f"\nstream benchmark: {len(texts)} headlines, 2 partitions, model {before.model}")
    print(f"{'measure':<38}{'value':>10}{'vs engine':>11}")
    row("engine alone, before (posts/s)", before.rate)
    row("engine alone, after (posts/s)", after.rate)
    row("engine alone, mean (posts/s)", engine, 1.0)
    row("end to end (posts/s)", stream_rate, stream_rate / engine)
    row(f"latency at {offered:.0f} posts/s, p50 (s)", q[49])
    row("latency p95 (s)", q[94])
    row("latency p99 (s)", q[98])
    row("CPU per post, engine alone (ms)", engine_cpu * 1e3, 1.0)
    row("CPU per post, worker (ms)", worker_cpu * 1e3, worker_cpu / engine_cpu)
    row("CPU per post, broker (ms)", broker_cpu * 1e3, broker_cpu / engine_cpu)
    row(f"counted in closed windows (% of {expected})", 100 * counted / expected)


def row(measure: str, value: float, ratio: float | None = None) -> None:
    print(f"{measure:<38}{value:>10.3f}" + ("" if ratio is None else f"{ratio:>11.2f}"))


if __name__ == "__main__":
    main()
