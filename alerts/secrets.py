"""Secrets for the notifiers: from env (``FINSENTRY_ALERTS_*``) or a secrets file, nowhere else.

The secrets file holds ``NAME=value`` lines (``slack_webhook_url``, ``smtp_password``), the
format of Docker and systemd environment files; env wins over the file. A secret found in
finsentry.toml is refused, because that file is meant to be shared and committed.
"""

from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pydantic import SecretStr

from alerts.errors import SecretsError
from finsentry.config import Settings, config_file_path

SECRET_NAMES: Final = ("slack_webhook_url", "smtp_password")
MASK: Final = "***"


@dataclass(frozen=True)
class AlertSecrets:
    slack_webhook_url: SecretStr | None
    smtp_password: SecretStr | None

    def values(self) -> list[str]:
        """The raw secret strings, for redaction only."""
        return [s.get_secret_value() for s in (self.slack_webhook_url, self.smtp_password) if s]


def resolve_secrets(settings: Settings) -> AlertSecrets:
    _refuse_secrets_in_config_file()
    from_file = (
        read_secrets_file(settings.alerts_secrets_file) if settings.alerts_secrets_file else {}
    )
    return AlertSecrets(
        slack_webhook_url=settings.alerts_slack_webhook_url or from_file.get("slack_webhook_url"),
        smtp_password=settings.alerts_smtp_password or from_file.get("smtp_password"),
    )


def read_secrets_file(path: Path) -> dict[str, SecretStr]:
    """Parse ``NAME=value`` lines; blank lines and ``#`` comments are skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SecretsError(f"{path}: cannot read secrets file: {exc.strerror}") from exc
    found: dict[str, SecretStr] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, sep, value = stripped.partition("=")
        name = name.strip().lower().removeprefix("finsentry_alerts_")
        if not sep or name not in SECRET_NAMES:
            raise SecretsError(
                f"{path}:{number}: expected NAME=value with NAME one of {list(SECRET_NAMES)}"
            )
        found[name] = SecretStr(value.strip().strip("'\""))
    return found


def _refuse_secrets_in_config_file() -> None:
    path = config_file_path()
    if path is None:
        return
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    section = raw.get("alerts", {}) if isinstance(raw.get("alerts"), dict) else {}
    names = {f"alerts_{n}" for n in SECRET_NAMES}
    present = sorted(
        {n for n in names if n in raw} | {f"alerts_{n}" for n in SECRET_NAMES if n in section}
    )
    if present:
        raise SecretsError(
            f"{path}: {', '.join(present)} must not be in the config file; set them in the "
            "environment or in the file named by alerts_secrets_file"
        )


def redact(text: str, secrets: AlertSecrets) -> str:
    """Replace every secret value in ``text``, e.g. a webhook URL inside an error message."""
    for value in secrets.values():
        if value:
            text = text.replace(value, MASK)
    return text


class RedactingFilter(logging.Filter):
    """Masks secrets in records of third-party loggers (httpx logs each request's URL, and a
    Slack webhook URL is itself the secret)."""

    def __init__(self, secrets: AlertSecrets) -> None:
        super().__init__()
        self._secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact(message, self._secrets)
        if masked != message:
            record.msg, record.args = masked, ()
        return True
