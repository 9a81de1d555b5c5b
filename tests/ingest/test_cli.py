"""``finsentry ingest replay`` and ``finsentry ingest webhook`` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from finsentry.config import Settings
from tests.ingest.conftest import read_posts
from tests.support import free_port, wait_until

pytestmark = pytest.mark.integration
ENTRY = "from finsentry.cli import app; app()"


def cli_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINSENTRY_")}
    env.update(
        FINSENTRY_CONFIG="none",
        FINSENTRY_KAFKA_BOOTSTRAP=settings.bootstrap_servers,
        FINSENTRY_KAFKA_TOPIC_PREFIX=settings.kafka_topic_prefix,
        FINSENTRY_DATA_DIR=str(settings.data_dir),
        PYTHONPATH=str(Path(__file__).resolve().parents[2]),
    )
    return env


def test_replay_command_reports_rejects_and_resumes(
    posts_settings: Settings, tmp_path: Path
) -> None:
    source = tmp_path / "mixed.jsonl"
    rows = [
        {"title": f"Apple story {i}", "published_at": f"2020-01-01T00:00:{i:02d}Z"}
        for i in range(5)
    ]
    lines = [json.dumps(r) for r in rows]
    lines.insert(2, json.dumps({"title": "no time here"}))
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rejects = tmp_path / "rejects.jsonl"
    command = [
        sys.executable,
        "-c",
        ENTRY,
        "ingest",
        "replay",
        str(source),
        "--rate",
        "1000",
        "--rejects",
        str(rejects),
        "--no-progress",
    ]
    first = subprocess.run(
        command,
        env=cli_env(posts_settings),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert first.returncode == 0, first.stderr
    assert "complete; published 5, rejected 1" in first.stdout
    [rejected] = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert rejected["number"] == 3 and "no time" in rejected["reason"]
    second = subprocess.run(
        command,
        env=cli_env(posts_settings),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "published 0, rejected 0" in second.stdout and "resumed after row 6" in second.stdout
    posts = [post for _, post in read_posts(posts_settings)]
    assert sorted(p.published_at.second for p in posts) == [0, 1, 2, 3, 4]
    assert all(p.tickers == ("AAPL",) for p in posts)


def test_webhook_command_serves_until_terminated(posts_settings: Settings) -> None:
    port = free_port()
    env = {**cli_env(posts_settings), "FINSENTRY_INGEST_WEBHOOK_TOKEN": "cli-token-0123456789"}
    process = subprocess.Popen(
        [sys.executable, "-c", ENTRY, "ingest", "webhook", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{base}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(ready, 60, "the webhook to answer /health")
        answer = httpx.post(
            f"{base}/posts",
            json={"id": "cli-1", "title": "Tesla recalls cars"},
            headers={"Authorization": "Bearer cli-token-0123456789"},
            timeout=60,
        )
        assert answer.status_code == 202, answer.text
    finally:
        process.terminate()
        process.wait(timeout=30)
        assert process.stderr is not None
        process.stderr.close()
    assert [post.id for _, post in read_posts(posts_settings)] == ["webhook:cli-1"]


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (None, "refusing to serve the webhook on 0.0.0.0 without a token"),
        ("", "at least 16 characters"),
        ("short-token", "at least 16 characters"),
    ],
    ids=["no-token", "empty-token", "short-token"],
)
def test_webhook_command_refuses_an_open_or_guessable_endpoint(
    posts_settings: Settings, token: str | None, message: str
) -> None:
    """Without a token it served anyone who could reach the port; "" was a token too."""
    env = cli_env(posts_settings)
    if token is not None:
        env["FINSENTRY_INGEST_WEBHOOK_TOKEN"] = token
    command = [sys.executable, "-c", ENTRY, "ingest", "webhook", "--host", "0.0.0.0"]
    done = subprocess.run(
        [*command, "--port", str(free_port())], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert message in done.stderr
