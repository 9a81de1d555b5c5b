"""``finsentry status`` when nothing runs: every configured service is reported down."""

from __future__ import annotations

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
        alerts_slack_webhook_url="http://127.0.0.1:9/hook",
    )
    console = Console(record=True, width=200)
    assert show_status(settings, console) == 1
    text = console.export_text()
    assert "configured services (no finsentry up running)" in text
    for name in ("kafka", "worker", "alerts", "dashboard"):
        line = next(row for row in text.splitlines() if row.startswith(f"│ {name} "))
        assert line.count(" no ") == 2, line
    assert f"127.0.0.1:{settings.dashboard_port}" in text


def test_alerts_without_a_channel_are_shown_as_skipped(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, worker_web_port=free_port())
    console = Console(record=True, width=200)
    show_status(settings, console)
    line = next(row for row in console.export_text().splitlines() if row.startswith("│ alerts "))
    assert "skipped" in line and "FINSENTRY_ALERTS_SLACK_WEBHOOK_URL" in line
