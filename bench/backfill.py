"""Backfill throughput against the inference engine alone, and peak memory against input size.

1. throughput: N unique bundled headlines (Guardian, CNBC) written as a dated JSONL file.
   The engine alone scores their texts (``Engine.classify`` in the backfill's batches), before
   and after the backfill (the mean is the baseline, so drift in a shared machine's load hits
   both); the backfill runs the whole job: read, map, sort, dedup, score, windows, spikes,
   store writes, checkpoint. Ratio = backfill posts/s / engine posts/s (target >= 0.9).
2. memory: a synthetic file of S rows per size (the headlines repeated with a counter, so no
   row is a duplicate, times spread over a year), one fresh process per size, peak RSS.
Each part runs in its own subprocess, so that every peak RSS is its own. Rates are also given
per second of the process's CPU time: on a shared machine the wall-clock ratio moves with the
other load (a process with more busy threads gets a larger share), the CPU-time one much less.

    .venv/bin/python -m bench.backfill [--rows 2000] [--sizes 10000,100000]

(Run as a module: as a script, bench/ would shadow the stream package with bench/stream.py.)
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from finsentry.config import REPO_ROOT, Settings, load_settings

T0 = datetime(2019, 1, 1, tzinfo=UTC)
YEAR_S = 365 * 86_400


def headlines() -> list[str]:
    """Unique bundled headlines, Guardian then CNBC, in file order."""
    from finsentry.text import fingerprint

    titles: dict[str, str] = {}
    for name in ("guardian_headlines.csv", "cnbc_headlines.csv"):
        path = REPO_ROOT / "data" / "fin_news_headlines" / name
        with path.open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                title = " ".join((row.get("Headlines") or "").split())
                if title:
                    titles.setdefault(fingerprint(title), title)
    return list(titles.values())


def write_rows(path: Path, rows: int, *, unique_only: bool) -> list[str]:
    """A dated JSONL file of ``rows`` headlines; returns the titles written."""
    pool = headlines()
    if unique_only and rows > len(pool):
        raise SystemExit(f"--rows {rows}: only {len(pool)} unique headlines are bundled")
    titles = []
    with path.open("w", encoding="utf-8") as handle:
        for n in range(rows):
            title = pool[n % len(pool)]
            if n >= len(pool):
                title = f"{title} ({n // len(pool)})"
            at = T0 + timedelta(seconds=n * YEAR_S / rows)
            handle.write(json.dumps({"title": title, "published_at": at.isoformat()}) + "\n")
            titles.append(title)
    return titles


def settings_for(work: Path) -> Settings:
    return load_settings(data_dir=work / "var", store_url=f"sqlite:///{work / 'store.db'}")


def backfill(settings: Settings, path: Path, engine: Any) -> tuple[float, float, Any]:
    from finsentry.store import Store
    from ingest.replay import MappingOptions
    from ingest.tickers import default_extractor
    from stream.backfill_input import TimeRange, plan_inputs
    from stream.backfill_job import run_backfill

    store = Store(settings.database_url)
    extractor = default_extractor()
    started, cpu = time.perf_counter(), time.process_time()
    summary = run_backfill(
        plan_inputs([path], MappingOptions()),
        TimeRange(),
        settings=settings,
        store=store,
        scorer=engine,
        extractor=extractor,
        progress=False,
    )
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    store.close()
    assert summary.completed and summary.counters.scored == summary.total, summary.lines()
    return seconds, cpu, summary


def engine_rate(engine: Any, texts: list[str], batch: int) -> tuple[float, float]:
    """Posts per second of wall time and per second of this process's CPU time."""
    started, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(texts), batch):
        engine.classify(texts[start : start + batch])
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return len(texts) / wall, len(texts) / cpu


def child(mode: str, rows: int) -> dict[str, Any]:
    from models.engine import load_engine

    work = Path(tempfile.mkdtemp(prefix="finsentry-bench-backfill-"))
    settings = settings_for(work)
    path = work / "rows.jsonl"
    titles = write_rows(path, rows, unique_only=mode == "throughput")
    engine = load_engine(settings)
    result: dict[str, Any] = {"mode": mode, "rows": rows, "model": engine.version,
                              "backend": engine.backend, "device": str(engine.device)}  # fmt: skip
    try:
        if mode == "throughput":
            batch = settings.backfill_batch_size
            before, before_cpu = engine_rate(engine, titles, batch)
            seconds, cpu, summary = backfill(settings, path, engine)
            after, after_cpu = engine_rate(engine, titles, batch)
            result |= {
                "engine_before": before,
                "engine_after": after,
                "engine_cpu_rate": (before_cpu + after_cpu) / 2,
            }
        else:
            seconds, cpu, summary = backfill(settings, path, engine)
    finally:
        engine.close()
    result |= {
        "seconds": seconds,
        "backfill_rate": summary.counters.scored / seconds,
        "backfill_cpu_rate": summary.counters.scored / cpu,
        "windows": summary.counters.windows,
        "spilled_runs": summary.spilled_runs,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "sort_run_posts": settings.backfill_sort_run_posts,
    }
    return result


def run_child(mode: str, rows: int) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.backfill", "--child", mode, "--rows", str(rows)]
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000, help="throughput: unique headlines")
    parser.add_argument("--sizes", default="10000,100000", help="memory: rows per run")
    parser.add_argument("--child", choices=("throughput", "memory"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--sort-run-posts", type=int, default=None, help="backfill_sort_run_posts for the runs"
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.sort_run_posts:
        os.environ["FINSENTRY_BACKFILL_SORT_RUN_POSTS"] = str(args.sort_run_posts)
    if args.child:
        print(json.dumps(child(args.child, args.rows)))
        return
    print(f"throughput on {args.rows} headlines ...", file=sys.stderr, flush=True)
    speed = run_child("throughput", args.rows)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    memory = []
    for size in sizes:
        print(f"memory on {size} rows ...", file=sys.stderr, flush=True)
        memory.append(run_child("memory", size))
    engine = (speed["engine_before"] + speed["engine_after"]) / 2
    print(
        f"\nbackfill benchmark: model {speed['model']} ({speed['backend']} on {speed['device']}),"
        f" batch of the backfill = engine call"
    )
    print(f"{'measure':<44}{'posts/s':>10}{'vs engine':>11}")
    print(f"{'engine alone, before the backfill':<44}{speed['engine_before']:>10.1f}")
    print(f"{'engine alone, after the backfill':<44}{speed['engine_after']:>10.1f}")
    print(f"{'engine alone, mean (baseline)':<44}{engine:>10.1f}{1.0:>11.2f}")
    label = f"backfill, {args.rows} rows end to end"
    print(f"{label:<44}{speed['backfill_rate']:>10.1f}{speed['backfill_rate'] / engine:>11.2f}")
    cpu_engine, cpu_backfill = speed["engine_cpu_rate"], speed["backfill_cpu_rate"]
    print(f"{'engine alone, per CPU second':<44}{cpu_engine:>10.1f}{1.0:>11.2f}")
    print(
        f"{'backfill, per CPU second':<44}{cpu_backfill:>10.1f}{cpu_backfill / cpu_engine:>11.2f}"
    )
    print(f"\n{'rows':>8}{'sort runs':>11}{'seconds':>10}{'posts/s':>10}{'windows':>10}"
          f"{'peak RSS MB':>13}")  # fmt: skip
    for m in memory:
        print(
            f"{m['rows']:>8}{m['spilled_runs']:>11}{m['seconds']:>10.1f}"
            f"{m['backfill_rate']:>10.1f}{m['windows']:>10}{m['peak_rss_mb']:>13.0f}"
        )
    print(f"(external sort: runs of {speed['sort_run_posts']} posts; 0 runs = sorted in memory)")
    if args.json:
        args.json.write_text(json.dumps({"throughput": speed, "memory": memory}, indent=2) + "\n")


if __name__ == "__main__":
    main()
