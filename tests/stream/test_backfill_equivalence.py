"""Backfill = streaming: the same file through the real worker and through the backfill.

What "the same" means, and why:
- The stream closes a window only when its watermark (the lowest high mark of the active
  input partitions minus ``allowed_lateness_s``, stream/watermarks.py) passes the window's
  end; once the input is read, every partition goes idle and the watermark is the last
  event time minus the lateness, so the last windows are still open there, waiting for
  posts that may come. The backfill knows nothing more
  will come and closes them (flushes). So every signal point and alert the stream produced
  must be in the backfill, identical, and the backfill's other points are exactly the
  windows ending after the stream's final watermark.
- Lateness: the backfill reads a sorted file, so no post is ever late. The stream equals it
  when no post reaches its aggregation stage later than the allowed lateness behind the
  watermark. A fast replay of history drains the partitions at different speeds while
  event time runs days per second; with a watermark per input partition that is no
  longer late, so this runs the stream as a replay sorted by event time into four
  partitions (each in order, as ingest's keys spread them) and checks the worker counted
  no late post.
- Scores come from the same model in fp32; the stream's batches are not the backfill's,
  which moves scores in the last float bits, so real numbers are compared within 1e-5.
"""

from __future__ import annotations

import urllib.request
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from finsentry.config import Settings
from finsentry.store import Store, alerts, posts, signal_points
from ingest.producer import KafkaPostSink
from ingest.replay import MappingOptions, Pacer, mapping_for
from ingest.replay_run import replay_file
from ingest.tickers import default_extractor
from models.engine import load_engine
from stream.backfill_input import TimeRange, plan_inputs
from stream.backfill_job import run_backfill
from stream.process import WorkerProcess
from tests.stream.backfill_data import copy_range, guardian_slice
from tests.stream.test_worker import start, worker_settings
from tests.support import wait_until

pytestmark = pytest.mark.integration

WINDOW_S = 86_400
WINDOW = timedelta(seconds=WINDOW_S)
LATENESS_S = 43_200
POINT_COLUMNS = (
    "window_end",
    "count",
    "mean_score",
    "neg_share",
    "baseline",
    "z",
    "is_spike",
    "volume_baseline",
    "buzz_z",
    "is_buzz",
)


TOLERANCE = 1e-5


def same(left: dict[Any, tuple[Any, ...]], right: dict[Any, tuple[Any, ...]]) -> bool:
    """Same keys; per row equal values, floats within TOLERANCE (no rounding boundaries)."""
    if left.keys() != right.keys():
        return False
    for key, row in left.items():
        for a, b in zip(row, right[key], strict=True):
            if isinstance(a, float) and isinstance(b, float):
                if abs(a - b) > TOLERANCE:
                    return False
            elif a != b:
                return False
    return True


def point_rows(store: Store) -> dict[tuple[str, datetime], tuple[Any, ...]]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(signal_points)).mappings()
        return {(r["key"], r["window_start"]): tuple(r[c] for c in POINT_COLUMNS) for r in rows}


def alert_rows(store: Store) -> dict[str, tuple[Any, ...]]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(alerts)).mappings()
        return {
            r["id"]: (
                r["key"],
                r["window_start"],
                r["severity"],
                r["count"],
                r["z"],
                r["neg_share"],
                r["baseline"],
                tuple(e["id"] for e in r["evidence"]),
                r["buzz"],
            )
            for r in rows
        }


def scored_ids(store: Store) -> set[str]:
    with store.engine.connect() as conn:
        return {
            r.id for r in conn.execute(select(posts.c.id, posts.c.score)) if r.score is not None
        }


def test_backfill_produces_the_streams_signal_points_and_alerts(
    kafka_settings: Settings, tmp_path: Path, run_worker: list[WorkerProcess]
) -> None:
    data = guardian_slice(tmp_path / "crash.csv", ("February 2020", "March 2020"))
    common = {
        "kafka_partitions": 4,
        "window_size_s": WINDOW_S,
        "allowed_lateness_s": LATENESS_S,
        "model_backend": "fp32",
        # Three weeks of Guardian news give a short baseline; at the default rate (0.001) the
        # sell-off raises no alert here, and alerts are half of what is compared.
        "spike_false_alarm_rate": 0.05,
    }
    streamed = worker_settings(kafka_settings, tmp_path / "stream", **common)
    backfilled = worker_settings(kafka_settings, tmp_path / "backfill", **common)

    # The backfill, in process, with the real engine.
    time_range = TimeRange.parse("2020-02-20", "2020-03-14")
    (item,) = plan_inputs([data], MappingOptions())
    engine = load_engine(backfilled)
    backfill_store = Store(backfilled.database_url)
    try:
        summary = run_backfill(
            [item],
            time_range,
            settings=backfilled,
            store=backfill_store,
            scorer=engine,
            extractor=default_extractor(),
            progress=False,
        )
    finally:
        engine.close()
    assert summary.completed and summary.counters.late == 0

    # The stream: the real worker process, fed by ingest's replay sorted by event time.
    worker = start(
        streamed,
        run_worker,
        FINSENTRY_MODEL_BACKEND="fp32",
        FINSENTRY_SPIKE_FALSE_ALARM_RATE="0.05",
        FINSENTRY_IDLE_TIMEOUT_S="5",
    )
    in_range = tmp_path / "in-range.csv"
    last_event = copy_range(data, in_range, time_range)
    stream_store = Store(streamed.database_url)
    sink = KafkaPostSink(streamed)
    try:
        replay = replay_file(
            in_range,
            mapping_for(in_range, MappingOptions()),
            sink=sink,
            store=stream_store,
            extractor=default_extractor(),
            pacer=Pacer(),
            batch_size=200,
            sort=True,
            progress=False,
        )
    finally:
        sink.close()
    assert replay.completed and replay.published == summary.counters.read

    # What the stream can have closed: windows ending at or before its final watermark.
    watermark = last_event - timedelta(seconds=LATENESS_S)
    backfill_points = point_rows(backfill_store)
    closed = {k: v for k, v in backfill_points.items() if v[0] <= watermark}
    backfill_alerts = alert_rows(backfill_store)
    closed_alerts = {a: row for a, row in backfill_alerts.items() if row[1] + WINDOW <= watermark}
    assert len(closed) < len(backfill_points)  # some windows only the flush closes
    assert closed_alerts, "the slice holds the February 2020 sell-off: alerts expected"

    wait_until(lambda: scored_ids(stream_store) == scored_ids(backfill_store), 600, "posts")
    wait_until(lambda: len(point_rows(stream_store)) >= len(closed), 300, "windows")
    wait_until(lambda: len(alert_rows(stream_store)) >= len(closed_alerts), 120, "alerts")
    stream_points, stream_alerts = point_rows(stream_store), alert_rows(stream_store)
    assert stream_points.keys() == closed.keys()
    assert same(stream_points, closed), {
        k: (v, closed[k]) for k, v in stream_points.items() if not same({k: v}, {k: closed[k]})
    }
    assert stream_alerts.keys() == closed_alerts.keys()
    assert same(stream_alerts, closed_alerts)
    metrics = urllib.request.urlopen(f"{worker.url}/metrics").read().decode()
    assert "finsentry_late_total 0.0" in metrics
    assert worker.stop() == 0
