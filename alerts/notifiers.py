"""The channels: a Slack incoming webhook (httpx) and SMTP (smtplib). Thin adapters.

Each ``send`` either returns (delivered, with an optional note for the log) or raises a
TransientNotifyError / PermanentNotifyError whose message never contains a secret.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parsedate_to_datetime
from typing import Protocol

import httpx
from pydantic import SecretStr

from alerts.errors import PermanentNotifyError, SecretsError, TransientNotifyError
from alerts.message import Content, email_html, email_subject, email_text, slack_payload
from alerts.routing import Route
from alerts.secrets import AlertSecrets, RedactingFilter
from finsentry.config import Settings

RETRYABLE_HTTP = frozenset({408, 425, 429, 500, 502, 503, 504})
HTTP_LOGGERS = ("httpx", "httpcore")


class Notifier(Protocol):
    """One channel. ``send`` returns a note for the log (or None) or raises NotifyError."""

    channel: str

    def send(self, content: Content, route: Route) -> str | None: ...

    def close(self) -> None: ...


class SlackNotifier:
    """Posts Block Kit messages to one incoming webhook."""

    channel = "slack"

    def __init__(self, webhook_url: SecretStr, *, timeout_s: float) -> None:
        self._url = webhook_url
        self._timeout_s = timeout_s
        self._client = httpx.Client(timeout=timeout_s, follow_redirects=False)
        self._filter = RedactingFilter(
            AlertSecrets(slack_webhook_url=webhook_url, smtp_password=None)
        )
        for name in HTTP_LOGGERS:
            logging.getLogger(name).addFilter(self._filter)

    def send(self, content: Content, route: Route) -> str | None:
        try:
            response = self._client.post(self._url.get_secret_value(), json=slack_payload(content))
        except httpx.TimeoutException as exc:
            raise TransientNotifyError(
                f"Slack webhook timed out after {self._timeout_s:g}s ({type(exc).__name__})"
            ) from None
        except httpx.TransportError as exc:
            raise TransientNotifyError(
                f"Slack webhook unreachable ({type(exc).__name__})"
            ) from None
        if response.is_success:
            return None
        detail = f"Slack webhook answered HTTP {response.status_code}: {response.text[:200]!r}"
        if response.status_code in RETRYABLE_HTTP:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise TransientNotifyError(detail, retry_after_s=retry_after)
        raise PermanentNotifyError(detail)

    def close(self) -> None:
        self._client.close()
        for name in HTTP_LOGGERS:
            logging.getLogger(name).removeFilter(self._filter)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds (``"120"``) or an HTTP date; None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class EmailNotifier:
    """Sends multipart (text + HTML) mail over SMTP with STARTTLS, implicit TLS or neither."""

    channel = "email"

    def __init__(self, settings: Settings, password: SecretStr | None) -> None:
        if settings.alerts_smtp_username and password is None:
            raise SecretsError(
                "alerts_smtp_username is set but no SMTP password: set "
                "FINSENTRY_ALERTS_SMTP_PASSWORD or smtp_password in alerts_secrets_file"
            )
        if (
            settings.alerts_smtp_username
            and settings.alerts_smtp_security == "none"
            and not settings.alerts_smtp_allow_plaintext_auth
        ):
            raise SecretsError(
                f"refusing to send the SMTP password to {settings.alerts_smtp_host}:"
                f"{settings.alerts_smtp_port} over a connection without TLS "
                "(alerts_smtp_security = none): use starttls or tls, or set "
                "FINSENTRY_ALERTS_SMTP_ALLOW_PLAINTEXT_AUTH=true for a trusted local relay"
            )
        self._settings = settings
        self._password = password

    def build(self, content: Content, recipients: tuple[str, ...]) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self._settings.alerts_smtp_from
        message["To"] = ", ".join(recipients)
        message["Subject"] = email_subject(content)
        message["Date"] = formatdate(localtime=False, usegmt=True)
        message["Message-ID"] = make_msgid(domain="finsentry")
        message["X-Finsentry-Alert-Ids"] = " ".join(a.id for a in content.alerts[:50])
        message.set_content(email_text(content))
        message.add_alternative(email_html(content), subtype="html")
        return message

    def send(self, content: Content, route: Route) -> str | None:
        if not route.email_to:
            raise PermanentNotifyError(f"route {route.name!r} has no email_to recipients")
        message = self.build(content, route.email_to)
        where = f"SMTP {self._settings.alerts_smtp_host}:{self._settings.alerts_smtp_port}"
        try:
            with self._connect() as smtp:
                if self._settings.alerts_smtp_username and self._password is not None:
                    smtp.login(
                        self._settings.alerts_smtp_username, self._password.get_secret_value()
                    )
                refused = smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            detail = f"{where} refused every recipient: {_refusals(exc.recipients)}"
            if all(400 <= code < 500 for code in codes):
                raise TransientNotifyError(detail) from None
            raise PermanentNotifyError(detail) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise PermanentNotifyError(f"{where}: {exc}") from None
        except smtplib.SMTPResponseException as exc:
            detail = f"{where} answered {exc.smtp_code} {_text(exc.smtp_error)}"
            if exc.smtp_code >= 500:
                raise PermanentNotifyError(detail) from None
            raise TransientNotifyError(detail) from None
        except ssl.SSLCertVerificationError as exc:
            raise PermanentNotifyError(
                f"{where}: TLS certificate rejected: {exc.verify_message}"
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise TransientNotifyError(f"{where}: {type(exc).__name__}: {exc}") from None
        if refused:
            return f"delivered, but {where} refused {_refusals(refused)}"
        return None

    def _connect(self) -> smtplib.SMTP:
        s = self._settings
        context = ssl.create_default_context(
            cafile=str(s.alerts_smtp_ca_file) if s.alerts_smtp_ca_file else None
        )
        if s.alerts_smtp_security == "tls":
            return smtplib.SMTP_SSL(
                s.alerts_smtp_host,
                s.alerts_smtp_port,
                timeout=s.alerts_smtp_timeout_s,
                context=context,
            )
        smtp = smtplib.SMTP(s.alerts_smtp_host, s.alerts_smtp_port, timeout=s.alerts_smtp_timeout_s)
        try:
            if s.alerts_smtp_security == "starttls":
                smtp.starttls(context=context)
        except BaseException:
            smtp.close()
            raise
        return smtp

    def close(self) -> None:
        """Nothing held between sends: each notification uses its own SMTP session."""


def _refusals(recipients: dict[str, tuple[int, bytes]]) -> str:
    return ", ".join(f"{addr} ({code} {_text(msg)})" for addr, (code, msg) in recipients.items())


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
