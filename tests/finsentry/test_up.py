"""``finsentry up --demo`` as a user runs it: a real subprocess with its own Kafka, worker,
alerts service and dashboard on free ports, a local HTTP server standing in for Slack.

One run covers the whole story, because each start costs a broker and a model load: every
service becomes ready; the worker, killed mid-replay, is restarted and no post is lost; an
alert reaches the Slack stand-in; the dashboard answers with stored data; SIGTERM stops
everything and no child process remains.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from finsentry.config import REPO_ROOT
from finsentry.health import http_ok
from finsentry.store import Store, alerts, posts
from finsentry.text import fingerprint
from tests.alerts.alerts_peers import FakeSlack
from tests.support import free_port, process_alive, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

BENZINGA = REPO_ROOT / "data" / "benzinga_headlines_sample" / "analyst_ratings_processed_head.csv"
# Fourteen months of the sample (about 1,150 headlines), which hold the demo's first spike
# (market, 2010-06-03); at 600,000x event time the replay takes about a minute.
UNTIL = "2010-06-10"
SPEED = "600000"


def demo_slice(target: Path) -> int:
    """The sample's rows before UNTIL, one per normalised headline; returns the row count.

    Unique headlines make the expected store count exact: the stream would drop repeats.
    """
    with BENZINGA.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        fields = list(reader.fieldnames or [])
        seen: set[str] = set()
        rows = []
        for row in reader:
            if row["date"] and row["date"] < UNTIL and row["title"].strip():
                key = fingerprint(row["title"])
                if key not in seen:
                    seen.add(key)
                    rows.append(row)
    with target.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``, read from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


class UpRun:
    """The ``finsentry up --demo`` process, its environment and its status file."""

    def __init__(self, tmp: Path, slack_url: str, demo_file: Path) -> None:
        self.data_dir = tmp / "var"
        self.ports = {
            "FINSENTRY_KAFKA_PORT": free_port(),
            "FINSENTRY_KAFKA_CONTROLLER_PORT": free_port(),
            "FINSENTRY_WORKER_WEB_PORT": free_port(),
            "FINSENTRY_ALERTS_WEB_PORT": free_port(),
            "FINSENTRY_DASHBOARD_PORT": free_port(),
            "FINSENTRY_SCHEDULER_WEB_PORT": free_port(),
        }
        self.env = {
            **os.environ,
            **{name: str(port) for name, port in self.ports.items()},
            "PYTHONPATH": str(REPO_ROOT),
            "FINSENTRY_CONFIG": "none",
            "FINSENTRY_DATA_DIR": str(self.data_dir),
            "FINSENTRY_DEMO_FILE": str(demo_file),
            "FINSENTRY_DEMO_SPEED": SPEED,
            "FINSENTRY_ALERTS_SLACK_WEBHOOK_URL": slack_url,
            "FINSENTRY_UP_BACKOFF_BASE_S": "0.5",
            # The slice (2009 to mid-2010) holds no window that clears the default false-alarm
            # rate (0.001; the whole sample's first is in 2011); at 0.01 it holds seven.
            "FINSENTRY_SPIKE_FALSE_ALARM_RATE": "0.01",
        }
        self.log = tmp / "up.log"
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "finsentry", "up", "--demo"],
                env=self.env,
                cwd=tmp,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )

    def status(self) -> dict[str, dict[str, Any]]:
        path = self.data_dir / "run" / "up.json"
        if self.process.poll() is not None:
            raise AssertionError(
                f"finsentry up exited with {self.process.returncode}:\n{self.tail()}"
            )
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {row["name"]: row for row in body["children"]}

    def wait(self, predicate: Any, timeout_s: float, what: str) -> None:
        try:
            wait_until(predicate, timeout_s, what)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n--- finsentry up output ---\n{self.tail()}") from None

    def tail(self) -> str:
        text = self.log.read_text(errors="replace")[-6000:]
        logs = self.data_dir / "demo" / "logs"
        for log in sorted(logs.glob("*.log")) if logs.is_dir() else []:
            text += f"\n--- {log.name} ---\n" + log.read_text(errors="replace")[-2500:]
        return text

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[f'FINSENTRY_{name.upper()}_PORT']}"


def stored(store: Store, table: Any) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def dash_page(base: str, pathname: str) -> str:
    """What the browser gets for a page: the dashboard's page callback over HTTP."""
    payload = {
        "output": "page.children",
        "outputs": {"id": "page", "property": "children"},
        "inputs": [{"id": "url", "property": "pathname", "value": pathname}],
        "changedPropIds": ["url.pathname"],
        "state": [],
    }
    request = urllib.request.Request(
        f"{base}/_dash-update-component",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read().decode()


def test_up_demo_runs_supervises_and_stops_the_whole_product(tmp_path: Path) -> None:
    demo_file = tmp_path / "benzinga-2009-2010.csv"
    expected_posts = demo_slice(demo_file)
    slack = FakeSlack()
    slack.thread.start()
    run = UpRun(tmp_path, slack.url, demo_file)
    pids: set[int] = set()
    try:
        names = ["kafka", "worker", "alerts", "dashboard", "scheduler"]
        run.wait(
            lambda: all(run.status().get(n, {}).get("state") == "ready" for n in names),
            600,
            f"{', '.join(names)} ready",
        )
        for name in names[1:]:
            row = run.status()[name]
            assert http_ok(row["health_url"]) and http_ok(row["ready_url"]), name
        status = subprocess.run(
            [sys.executable, "-m", "finsentry", "status"],
            env=run.env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert status.returncode == 0, status.stdout + status.stderr

        store = Store(f"sqlite:///{run.data_dir / 'demo' / 'finsentry.db'}", create=False)
        run.wait(lambda: stored(store, posts) >= 150, 600, "a first part of the replay stored")
        worker = run.status()["worker"]["pid"]
        assert stored(store, posts) < expected_posts, "the kill should land mid-replay"
        os.kill(worker, signal.SIGKILL)
        run.wait(
            lambda: (
                run.status()["worker"]["restarts"] == 1
                and run.status()["worker"]["state"] == "ready"
            ),
            600,
            "the worker restarted and ready",
        )
        assert run.status()["worker"]["pid"] != worker
        assert "worker exited with code -9; restarting" in run.log.read_text()

        run.wait(lambda: stored(store, posts) >= expected_posts, 600, "every post stored")
        assert stored(store, posts) == expected_posts
        run.wait(lambda: slack.answered_ok >= 1, 300, "an alert delivered to the Slack stand-in")
        assert "negative sentiment spike" in json.dumps(slack.payloads())

        with store.engine.connect() as conn:
            first = conn.execute(select(alerts.c.id, alerts.c.key).limit(1)).one()
        page = dash_page(run.url("dashboard"), f"/alert/{first.id}")
        assert f"Alert on {first.key}" in page
        store.close()

        pids = descendants(run.process.pid)
        assert len(pids) >= len(names)
        run.process.send_signal(signal.SIGTERM)
        assert run.process.wait(timeout=300) == 0, run.tail()
        assert not [pid for pid in pids if process_alive(pid)]
        assert not (run.data_dir / "run" / "up.json").exists()
        assert not list((run.data_dir / "demo" / "run").glob("*.pid"))
    finally:
        for pid in {*pids, *descendants(run.process.pid)}:
            if process_alive(pid):
                os.kill(pid, signal.SIGKILL)
        if run.process.poll() is None:
            run.process.kill()
            run.process.wait(timeout=60)
        slack.release.set()
        slack.server.shutdown()
        slack.server.server_close()
