"""``finsentry dashboard`` as a user runs it: a real process on a free port."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support import free_port, wait_until

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_finsentry_dashboard_serves_until_stopped(tmp_path):
    """The real command in a subprocess: ready on its port, then stopped by its PID."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "FINSENTRY_DATA_DIR": str(tmp_path)}
    command = [
        sys.executable,
        "-c",
        "from finsentry.cli import app; app()",
        "dashboard",
        "--port",
        str(port),
    ]
    process = subprocess.Popen(
        command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        wait_until(lambda: _reachable(f"http://127.0.0.1:{port}/ready"), 60, "the dashboard ready")
        assert _status(f"http://127.0.0.1:{port}/model") == 200
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert f"finsentry dashboard on http://127.0.0.1:{port}" in output
    # SIGTERM (how finsentry up and Kubernetes stop it) is a clean stop, not a kill.
    assert process.returncode == 0, output
    assert "dashboard stopped" in output


def _reachable(url: str) -> bool:
    try:
        return _status(url) == 200
    except OSError:
        return False
