"""``finsentry scheduler``: APScheduler (3.x) jobs from settings, in a process of their own.

The default job is the weekly retrain (``retrain_cron``). One run at a time, three ways:
``max_instances=1`` (a fire while a run is still going is skipped and counted),
``coalesce=True`` (fires missed while the process was suspended or paused collapse into
one run, if within ``retrain_misfire_grace_s``), and a file lock per data_dir so a second
scheduler process refuses to start. Jobs live in memory: after downtime the next fire time
is computed afresh, so a fire missed while no scheduler ran is not caught up.

``/health`` on ``scheduler_web_host:scheduler_web_port`` answers 503 until the scheduler
has started (and once it is stopping), then 200 with each job's next run time and counts
of started, finished and skipped runs. SIGTERM and SIGINT stop it cleanly: no new runs,
a running retrain is asked to stop between two training steps (recorded as interrupted).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    EVENT_JOB_SUBMITTED,
    JobEvent,
)
from apscheduler.schedulers.background import BackgroundScheduler

from finsentry.config import Settings, cron_trigger
from finsentry.locks import FileLock

log = logging.getLogger(__name__)

RETRAIN_JOB = "retrain"
_EVENT_NAMES = {
    EVENT_JOB_SUBMITTED: "started",
    EVENT_JOB_EXECUTED: "finished",
    EVENT_JOB_ERROR: "failed",
    EVENT_JOB_MAX_INSTANCES: "skipped_overlap",
    EVENT_JOB_MISSED: "missed",
}


class JobScheduler:
    """A BackgroundScheduler with the retrain job (or an injected one) and its counters."""

    def __init__(self, settings: Settings, job: Callable[[], Any]) -> None:
        self.settings = settings
        self.counts: Counter[str] = Counter()
        self.running: set[str] = set()
        self._lock = threading.Lock()
        self.scheduler = BackgroundScheduler(timezone=settings.retrain_timezone)
        mask = 0
        for code in _EVENT_NAMES:
            mask |= code
        self.scheduler.add_listener(self._on_event, mask)
        self.scheduler.add_job(
            job,
            cron_trigger(settings.retrain_cron, settings.retrain_timezone),
            id=RETRAIN_JOB,
            name=f"retrain ({settings.retrain_cron})",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=settings.retrain_misfire_grace_s,
        )

    def _on_event(self, event: JobEvent) -> None:
        name = _EVENT_NAMES[event.code]
        with self._lock:
            self.counts[name] += 1
            if name == "started":
                self.running.add(event.job_id)
            elif name in ("finished", "failed"):
                self.running.discard(event.job_id)
        if name == "skipped_overlap":
            log.warning("job %s still running at its next fire time: fire skipped", event.job_id)

    def start(self) -> None:
        self.scheduler.start()

    def stop(self) -> None:
        """No new runs; wait for a running one (which the caller has asked to stop)."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)

    def health(self) -> dict[str, Any]:
        with self._lock:
            counts, running = dict(self.counts), sorted(self.running)
        jobs = [
            {
                "id": job.id,
                "cron": self.settings.retrain_cron,
                "next_run_time": _iso(job.next_run_time),
                "running": job.id in running,
            }
            for job in self.scheduler.get_jobs()
        ]
        return {
            "status": "ok" if self.scheduler.running else "stopped",
            "pid": os.getpid(),
            "jobs": jobs,
            "runs": counts,
        }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


class HealthServer:
    """``GET /health`` in a thread: 503 ``starting`` / ``stopping``, else 200 and the state."""

    def __init__(self, host: str, port: int, state: Callable[[], dict[str, Any] | None]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != "/health":
                    self._reply(404, {"error": f"no page {self.path}; try /health"})
                    return
                body = state()
                if body is None:
                    self._reply(503, {"status": "unavailable"})
                else:
                    self._reply(200, body)

            def _reply(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("health: " + format, *args)

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="health", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM and SIGINT set ``stop`` (call from the main thread)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("%s received: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def run_scheduler(settings: Settings, job: Callable[[threading.Event], Any]) -> None:
    """Hold the data_dir's scheduler lock, serve /health, run jobs until SIGTERM/SIGINT.

    Raises finsentry.locks.LockHeld when another scheduler runs on this data_dir.
    """
    stop = threading.Event()
    stop_on_signals(stop)
    with FileLock(settings.data_dir / "scheduler.lock", "a finsentry scheduler"):
        scheduler = JobScheduler(settings, lambda: job(stop))
        ready = threading.Event()
        server = HealthServer(
            settings.scheduler_web_host,
            settings.scheduler_web_port,
            lambda: scheduler.health() if ready.is_set() and not stop.is_set() else None,
        )
        server.start()
        try:
            scheduler.start()
            ready.set()
            (next_run,) = [j["next_run_time"] for j in scheduler.health()["jobs"]]
            log.info(
                "scheduler ready on http://%s:%d/health; next retrain %s",
                settings.scheduler_web_host,
                settings.scheduler_web_port,
                next_run,
            )
            while not stop.wait(0.5):
                pass
        finally:
            stop.set()
            scheduler.stop()
            server.stop()
    log.info("scheduler stopped")
