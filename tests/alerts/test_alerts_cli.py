"""The typer commands against real peers (the app object directly, no subprocess)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from alerts.cli import alerts_app
from finsentry.store import Store
from tests.alerts.alerts_factories import make_alert
from tests.alerts.alerts_peers import FakeSlack, SlackReply, SmtpPeer

pytestmark = pytest.mark.integration


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FINSENTRY_CONFIG", raising=False)
    return {
        "FINSENTRY_STORE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "FINSENTRY_ALERTS_DASHBOARD_URL": "http://dash.test",
    }


def test_test_command_sends_a_marked_slack_message(env: dict[str, str], slack: FakeSlack) -> None:
    env["FINSENTRY_ALERTS_SLACK_WEBHOOK_URL"] = slack.url
    result = CliRunner().invoke(alerts_app, ["test", "--channel", "slack"], env=env)
    assert result.exit_code == 0, result.output
    assert "test message delivered on slack" in result.output
    (payload,) = slack.payloads()
    assert payload["blocks"][0]["text"]["text"].startswith("[TEST] [WARNING] market")
    assert payload["blocks"][3]["elements"][0]["url"].startswith("http://dash.test/alert/")


def test_test_command_reports_failure_without_the_secret(
    env: dict[str, str], slack: FakeSlack
) -> None:
    slack.script = [SlackReply(status=403, body="invalid_token")]
    env["FINSENTRY_ALERTS_SLACK_WEBHOOK_URL"] = slack.url
    result = CliRunner().invoke(alerts_app, ["test", "--channel", "slack"], env=env)
    assert result.exit_code == 1
    assert "not delivered: Slack webhook answered HTTP 403" in result.output
    assert "s3cr3t" not in result.output


def test_test_command_without_webhook_says_what_to_set(env: dict[str, str]) -> None:
    result = CliRunner().invoke(alerts_app, ["test", "--channel", "slack"], env=env)
    assert result.exit_code == 1
    assert "FINSENTRY_ALERTS_SLACK_WEBHOOK_URL" in result.output


def test_test_command_sends_email(env: dict[str, str], smtp_plain: SmtpPeer) -> None:
    env |= {
        "FINSENTRY_ALERTS_SMTP_PORT": str(smtp_plain.port),
        "FINSENTRY_ALERTS_SMTP_SECURITY": "none",
    }
    result = CliRunner().invoke(
        alerts_app, ["test", "--channel", "email", "--to", "me@example.com"], env=env
    )
    assert result.exit_code == 0, result.output
    (message,) = smtp_plain.recorder.messages
    assert message["To"] == "me@example.com"
    assert message["Subject"].startswith("[TEST] ")


def test_history_lists_deliveries(env: dict[str, str]) -> None:
    store = Store(env["FINSENTRY_STORE_URL"])
    ok, bad = make_alert("ticker:AAPL"), make_alert("ticker:MSFT")
    store.upsert_alerts([ok, bad])
    store.record_delivery(ok.id, "slack:desk", "delivered", attempts=2)
    store.record_delivery(bad.id, "email:desk", "failed", attempts=1, error="554 rejected")
    store.close()
    result = CliRunner().invoke(alerts_app, ["history"], env=env)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "desk" in line]
    assert len(lines) == 2
    assert "ticker:MSFT" in lines[0] and "failed" in lines[0] and "554 rejected" in lines[0]
    assert "ticker:AAPL" in lines[1] and "delivered" in lines[1]
    failed = CliRunner().invoke(alerts_app, ["history", "--status", "failed"], env=env)
    assert "ticker:MSFT" in failed.output and "ticker:AAPL" not in failed.output
    wrong = CliRunner().invoke(alerts_app, ["history", "--status", "lost"], env=env)
    assert wrong.exit_code == 2


def test_test_email_defaults_to_routing_recipients(
    env: dict[str, str], smtp_plain: SmtpPeer, tmp_path: Path
) -> None:
    routing = tmp_path / "routing.yaml"
    routing.write_text(
        "routes:\n"
        "  - {name: a, channels: [email], email_to: [b@example.com, a@example.com]}\n"
        "  - {name: b, channels: [email], email_to: [a@example.com]}\n"
    )
    env |= {
        "FINSENTRY_ALERTS_SMTP_PORT": str(smtp_plain.port),
        "FINSENTRY_ALERTS_SMTP_SECURITY": "none",
        "FINSENTRY_ALERTS_ROUTING_FILE": str(routing),
    }
    result = CliRunner().invoke(alerts_app, ["test", "--channel", "email"], env=env)
    assert result.exit_code == 0, result.output
    assert smtp_plain.recorder.envelopes[0][1] == ["a@example.com", "b@example.com"]


def test_test_email_without_recipients_says_so(env: dict[str, str]) -> None:
    result = CliRunner().invoke(alerts_app, ["test", "--channel", "email"], env=env)
    assert result.exit_code == 1
    assert "no recipients: pass --to" in result.output
