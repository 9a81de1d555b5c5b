"""``finsentry status`` when nothing runs: every configured service is reported down."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from rich.console import Console

from finsentry.config import load_settings
from finsentry.status import show_status
from tests.support import free_port

pytestmark = pytest.mark.unit


def test_nothing_running_is_reported_down_with_exit_1(tmp_path: Path) -> None:
    settings = load_settings(
        data_dir=tmp_path,
        kafka_port=free_port(),
        kafka_controller_port=free_port(),
        worker_web_port=free_port(),
        alerts_web_port=free_port(),
        dashboard_port=free_port(),
        scheduler_web_port=free_port(),
        alerts_slack_webhook_url="http://127.0.0.1:9/hook",
    )
    console = Console(record=True, width=200)
    assert show_status(settings, console) == 1
    text = console.export_text()
    assert "configured services (no finsentry up running)" in text
    for name in ("kafka", "worker", "alerts", "dashboard", "scheduler"):
        line = next(row for row in text.splitlines() if row.startswith(f"│ {name} "))
        assert line.count(" no ") == 2, line
    assert f"127.0.0.1:{settings.dashboard_port}" in text


def test_alerts_without_a_channel_are_shown_as_skipped(tmp_path: Path) -> None:
    settings = load_settings(
        data_dir=tmp_path, worker_web_port=free_port(), scheduler_web_port=free_port()
    )
    console = Console(record=True, width=200)
    show_status(settings, console)
    line = next(row for row in console.export_text().splitlines() if row.startswith("│ alerts "))
    assert "skipped" in line and "FINSENTRY_ALERTS_SLACK_WEBHOOK_URL" in line


def test_a_running_up_is_read_from_its_status_file(tmp_path: Path) -> None:
    from finsentry.health import HealthServer
    from finsentry.supervisor import write_atomically
    from finsentry.up import status_file

    settings = load_settings(data_dir=tmp_path)
    ready = HealthServer("127.0.0.1", 0, live=lambda: (True, ""), ready=lambda: (True, "")).start()
    starting = HealthServer(
        "127.0.0.1", 0, live=lambda: (True, ""), ready=lambda: (False, "recovering")
    ).start()
    try:
        rows = [
            {
                "name": name,
                "pid": os.getpid(),
                "where": server.url,
                "health_url": f"{server.url}/health",
                "ready_url": f"{server.url}/ready",
                "log_file": f"/logs/{name}.log",
            }
            for name, server in (("worker", ready), ("dashboard", starting))
        ]
        body = {"supervisor_pid": os.getpid(), "children": rows, "skipped": {"scheduler": "n/a"}}
        write_atomically(status_file(settings), json.dumps(body))
        console = Console(record=True, width=200)
        assert show_status(settings, console) == 1  # the dashboard is not ready yet
    finally:
        ready.stop()
        starting.stop()
    lines = console.export_text().splitlines()
    assert f"finsentry up (pid {os.getpid()})" in lines[0]
    worker = next(line for line in lines if line.startswith("│ worker "))
    dashboard = next(line for line in lines if line.startswith("│ dashboard "))
    assert worker.count(" yes ") == 2 and "/logs/worker.log" in worker
    assert " yes " in dashboard and " no " in dashboard
    assert "skipped" in next(line for line in lines if line.startswith("│ scheduler "))
