"""Worker state against distinct posts over simulated days: does it stay flat after the horizon?

Starts its own broker and worker (free ports, a temp dir) and feeds distinct posts, keyed as
ingest keys them, spread evenly over ``--days`` of event time, in ``--phases`` parts. After
each part is stored it records the worker's resident memory and, for the dedup and window
tables, the keys their changelogs still hold (what a restarted worker recovers) beside the
records written. With pruning by event time the dedup keys stop growing once the stream is
one ``dedup_horizon_s`` in; without it they were two per post, for good.

    .venv/bin/python -m bench.state [--posts 100000] [--days 30] [--phases 10]
"""

from __future__ import annotations

import argparse
import subprocess
from datetime import timedelta
from pathlib import Path

from kafka import KafkaProducer

from bench.stream import T0, bench_settings, cycled, headlines, local_broker, stored
from finsentry.localkafka import LocalKafka
from finsentry.runtime import wait_until
from finsentry.schema import Post
from finsentry.store import Store
from ingest.sink import story_key
from stream.process import WorkerProcess
from tests.support import changelog_keys


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=100_000)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--phases", type=int, default=10)
    args = parser.parse_args()
    if args.posts < args.phases or args.phases < 1 or args.days <= 0:
        parser.error("need --posts >= --phases >= 1 and --days > 0")
    with local_broker() as (broker, work):
        run(broker, work, args.posts, args.days, args.phases)


def run(broker: LocalKafka, work: Path, n_posts: int, days: float, phases: int) -> None:
    settings = bench_settings(broker, work)
    step = timedelta(days=days) / n_posts
    texts = cycled(headlines(5_000), n_posts)
    worker = WorkerProcess(settings, work / "worker.log")
    store = Store(settings.database_url)
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    horizon_days = settings.dedup_horizon_s / 86_400
    print(
        f"\nstate benchmark: {n_posts} distinct posts over {days:g} days, 2 partitions, "
        f"dedup_horizon_s {settings.dedup_horizon_s} ({horizon_days:g} days)"
    )
    print(f"{'day':>6}{'posts':>9}{'RSS MiB':>9}{'dedup keys':>12}{'written':>10}{'windows':>9}")
    try:
        worker.start()
        assert worker.process is not None
        for phase in range(phases):
            first, last = phase * n_posts // phases, (phase + 1) * n_posts // phases
            for n in range(first, last):
                post = Post(
                    id=f"bench:{n}",
                    source="replay:bench",
                    kind="news",
                    published_at=T0 + n * step,
                    received_at=T0 + n * step,
                    title=f"{texts[n]} ({n})",
                )
                producer.send(settings.topic("posts"), key=story_key(post), value=post.to_json())
            producer.flush()
            wait_until(lambda n=last: stored(store, "bench") >= n, 3_600, f"{last} posts stored")
            live, written = changelog_keys(settings, "dedup-seen")
            windows, _ = changelog_keys(settings, "windows")
            day = (last * step).total_seconds() / 86_400
            rss = rss_mib(worker.process.pid)
            print(f"{day:>6.1f}{last:>9}{rss:>9.0f}{live:>12}{written:>10}{windows:>9}")
    finally:
        producer.close()
        store.close()
        if worker.process is not None:
            try:
                worker.stop()
            except subprocess.TimeoutExpired:
                worker.kill()


if __name__ == "__main__":
    main()
