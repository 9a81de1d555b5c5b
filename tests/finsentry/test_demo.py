"""The demo profile and the local Slack stand-in (real HTTP, no broker needed)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
from rich.console import Console

from finsentry.config import load_settings
from finsentry.demo import DemoRun

pytestmark = pytest.mark.unit


def test_demo_runs_in_its_own_fresh_state_with_its_own_topics(tmp_path: Path) -> None:
    stale = tmp_path / "demo" / "finsentry.db"
    stale.parent.mkdir(parents=True)
    stale.write_text("an earlier demo")
    run = DemoRun(load_settings(data_dir=tmp_path), Console(record=True))
    try:
        assert not stale.exists()
        env = run.env()
        assert env["FINSENTRY_DATA_DIR"] == str(tmp_path / "demo")
        assert env["FINSENTRY_STORE_URL"] == f"sqlite:///{tmp_path / 'demo' / 'finsentry.db'}"
        assert env["FINSENTRY_KAFKA_TOPIC_PREFIX"].startswith("finsentry-demo-")
        assert env["FINSENTRY_KAFKA_PARTITIONS"] == "1"
        assert env["FINSENTRY_WINDOW_SIZE_S"] == "86400"
        assert run.settings.kafka_partitions == 1 and run.settings.window_size_s == 86_400
        replay = run.replay_spec()
        assert replay.restart == "on-failure"
        assert list(replay.command)[-7:] == [
            "ingest",
            "replay",
            str(run.file),
            "--sort",
            "--speed",
            "1200000.0",
            "--no-progress",
        ]
    finally:
        run.close()


def test_without_a_channel_alerts_go_to_the_printing_stand_in(tmp_path: Path) -> None:
    console = Console(record=True, width=200)
    run = DemoRun(load_settings(data_dir=tmp_path), console)
    try:
        url = run.env()["FINSENTRY_ALERTS_SLACK_WEBHOOK_URL"]
        assert url.startswith("http://127.0.0.1:")
        body = json.dumps({"text": "[CRITICAL] ticker:A: negative sentiment spike"}).encode()
        request = urllib.request.Request(
            url, data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
    finally:
        run.close()
    # Printed as text: rich neither ate "[CRITICAL]" as markup nor made ":A:" an emoji.
    assert "[CRITICAL] ticker:A: negative sentiment spike" in console.export_text()


def test_a_configured_webhook_is_used_as_is(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, alerts_slack_webhook_url="http://127.0.0.1:9/x")
    run = DemoRun(settings, Console())
    try:
        assert run.slack is None
        assert "FINSENTRY_ALERTS_SLACK_WEBHOOK_URL" not in run.env()
    finally:
        run.close()
