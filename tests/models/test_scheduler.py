"""The scheduler: real APScheduler on a cron trigger with seconds, one run at a time in a
process and across processes, /health, and a clean stop on SIGTERM."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from finsentry.config import Settings, load_settings
from finsentry.store import Store
from models.scheduler import JobScheduler, run_scheduler
from tests.support import free_port, wait_until

EVERY_SECOND = "* * * * * *"


@pytest.mark.unit
def test_cron_fires_every_second_and_a_slow_job_never_runs_twice_at_once(tmp_path: Path) -> None:
    settings = load_settings(
        data_dir=tmp_path, retrain_cron=EVERY_SECOND, retrain_misfire_grace_s=1
    )
    runs: list[tuple[float, float]] = []
    active = threading.Semaphore(1)

    def slow_job() -> None:
        assert active.acquire(blocking=False), "two runs at once"
        started = time.monotonic()
        time.sleep(2.5)  # longer than the one-second interval
        runs.append((started, time.monotonic()))
        active.release()

    scheduler = JobScheduler(settings, slow_job)
    scheduler.start()
    try:
        (job,) = scheduler.health()["jobs"]
        assert job["id"] == "retrain" and job["next_run_time"] is not None
        wait_until(lambda: len(runs) >= 2, 30, "two runs of the slow job")
        wait_until(lambda: scheduler.counts["skipped_overlap"] >= 2, 10, "skipped fires")
    finally:
        scheduler.stop()
    assert scheduler.counts["failed"] == 0
    for (_, first_end), (second_start, _) in itertools.pairwise(runs):
        assert second_start >= first_end
    assert scheduler.health()["status"] == "stopped"


def scheduler_env(settings: Settings, port: int, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "FINSENTRY_CONFIG": "none",
        "FINSENTRY_DATA_DIR": str(settings.data_dir),
        "FINSENTRY_STORE_URL": settings.database_url,
        "FINSENTRY_KAFKA_BOOTSTRAP": settings.bootstrap_servers,
        "FINSENTRY_KAFKA_TOPIC_PREFIX": settings.kafka_topic_prefix,
        "FINSENTRY_KAFKA_PARTITIONS": "1",
        "FINSENTRY_SCHEDULER_WEB_PORT": str(port),
        **extra,
    }


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


def _health(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return 0, {}


@pytest.mark.integration
def test_scheduler_process_runs_retrains_on_cron_alone_and_stops_on_sigterm(
    kafka_settings: Settings, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    settings = load_settings(
        data_dir=tmp_path / "var",
        store_url=f"sqlite:///{tmp_path / 'store.db'}",
        kafka_bootstrap=kafka_settings.bootstrap_servers,
        kafka_topic_prefix=f"s{uuid.uuid4().hex[:8]}.",
    )
    tiny = {  # a retrain of one step judged on 8 texts per set: seconds, not minutes
        "FINSENTRY_RETRAIN_CRON": EVERY_SECOND,
        "FINSENTRY_RETRAIN_MAX_STEPS": "1",
        "FINSENTRY_RETRAIN_TRAIN_LIMIT": "4",
        "FINSENTRY_RETRAIN_EVAL_SAMPLE": "8",
        "FINSENTRY_RETRAIN_BATCH_SIZE": "4",
        "FINSENTRY_RETRAIN_DEVICE": "cpu",
    }
    port = free_port()
    command = [sys.executable, "-m", "finsentry", "scheduler"]
    with (tmp_path / "scheduler.log").open("wb") as log:
        first = subprocess.Popen(
            command, env=scheduler_env(settings, port, **tiny), stdout=log, stderr=subprocess.STDOUT
        )
    processes.append(first)
    wait_until(lambda: _health(port)[0] == 200, 120, "the scheduler's /health to answer 200")
    _, body = _health(port)
    assert body["status"] == "ok" and body["pid"] == first.pid
    (job,) = body["jobs"]
    assert job["id"] == "retrain" and job["cron"] == EVERY_SECOND and job["next_run_time"]

    second = subprocess.run(
        command,
        env=scheduler_env(settings, free_port(), **tiny),
        capture_output=True,
        timeout=120,
    )
    assert second.returncode == 1
    assert f"a finsentry scheduler already running (PID {first.pid}" in second.stderr.decode()

    store = Store(settings.database_url)
    try:
        wait_until(
            lambda: any(r["finished_at"] for r in store.retrain_runs()), 600, "a finished run"
        )
        assert _health(port)[1]["runs"]["skipped_overlap"] >= 1  # fires while it ran
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=300) == 0
        runs = sorted(store.retrain_runs(), key=lambda r: r["started_at"])
    finally:
        store.close()
    assert {r["trigger"] for r in runs} == {"cron"}
    assert all(r["finished_at"] for r in runs), "a run left unrecorded after SIGTERM"
    assert runs[0]["decision"] in ("promoted", "rejected"), runs[0]["reason"]
    for earlier, later in itertools.pairwise(runs):
        assert later["started_at"] >= earlier["finished_at"]
    assert runs[-1]["decision"] in ("promoted", "rejected", "interrupted")


@pytest.mark.unit
def test_run_scheduler_refuses_a_second_scheduler_on_the_same_data_dir(tmp_path: Path) -> None:
    from finsentry.locks import FileLock, LockHeld

    settings = load_settings(data_dir=tmp_path, scheduler_web_port=free_port())
    with (
        FileLock(tmp_path / "scheduler.lock", "a finsentry scheduler"),
        pytest.raises(LockHeld, match=f"already running \\(PID {os.getpid()}"),
    ):
        run_scheduler(settings, lambda stop: None)
