from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import SecretStr

from alerts.errors import SecretsError
from alerts.secrets import AlertSecrets, RedactingFilter, read_secrets_file, redact, resolve_secrets
from finsentry.config import load_settings

pytestmark = pytest.mark.unit

HOOK = "https://hooks.slack.com/services/T1/B2/zzzSECRET"


@pytest.fixture(autouse=True)
def _no_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FINSENTRY_CONFIG", raising=False)
    for name in ("FINSENTRY_ALERTS_SLACK_WEBHOOK_URL", "FINSENTRY_ALERTS_SMTP_PASSWORD"):
        monkeypatch.delenv(name, raising=False)


def test_secrets_file_supplies_what_env_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets_file = tmp_path / "alerts.secrets"
    secrets_file.write_text(f"# alerts\nslack_webhook_url={HOOK}\nSMTP_PASSWORD='pw from file'\n")
    monkeypatch.setenv("FINSENTRY_ALERTS_SMTP_PASSWORD", "pw from env")
    secrets = resolve_secrets(load_settings(alerts_secrets_file=secrets_file))
    assert secrets.slack_webhook_url == SecretStr(HOOK)
    assert secrets.smtp_password == SecretStr("pw from env")


def test_secrets_file_errors_name_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "s"
    bad.write_text("slack_webhook_url=x\nsmtp_user=bob\n")
    with pytest.raises(SecretsError, match=r"s:2: expected NAME=value"):
        read_secrets_file(bad)
    with pytest.raises(SecretsError, match="cannot read"):
        read_secrets_file(tmp_path / "missing")


@pytest.mark.parametrize(
    "toml",
    [f'alerts_slack_webhook_url = "{HOOK}"', '[alerts]\nsmtp_password = "pw"'],
)
def test_secrets_in_config_file_are_refused(tmp_path: Path, toml: str) -> None:
    (tmp_path / "finsentry.toml").write_text(toml)
    with pytest.raises(SecretsError, match="must not be in the config file"):
        resolve_secrets(load_settings())


def test_masked_dump_and_redaction(caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings(alerts_slack_webhook_url=HOOK, alerts_smtp_password="pw-123")
    dump = settings.masked_dump()
    assert dump["alerts_slack_webhook_url"] == "**********"
    assert "zzzSECRET" not in repr(settings) and "pw-123" not in str(dump)
    secrets = AlertSecrets(SecretStr(HOOK), SecretStr("pw-123"))
    assert redact(f"POST {HOOK} with pw-123", secrets) == "POST *** with ***"
    logger = logging.getLogger("test.redacting")
    logger.addFilter(RedactingFilter(secrets))
    with caplog.at_level(logging.INFO, logger="test.redacting"):
        logger.info("HTTP Request: POST %s %r", HOOK, "ok")
    assert caplog.messages == ["HTTP Request: POST *** 'ok'"]
