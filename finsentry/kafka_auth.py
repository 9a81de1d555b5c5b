"""Kafka authentication and TLS, the same for every client finsentry makes.

kafka-python (the ingest producer, the alerts service, backfill ``--via-kafka``, model updates,
the topic admin) and aiokafka (the worker's ``GroupOffsets``) take the same options, from
``client_options``; Faust takes them as ``broker_credentials`` (stream/app.py). A client that
cannot authenticate would otherwise retry or wait on metadata until some timeout, so every
service first asks ``check_access``, which fails fast with what was refused and why.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from typing import Any

from finsentry.config import Settings


class KafkaAccessError(RuntimeError):
    """The brokers refused this client (``refused``: bad credentials, a protocol their
    listener does not speak, TLS), or could not be reached (a broker outage)."""

    def __init__(self, message: str, *, refused: bool) -> None:
        super().__init__(message)
        self.refused = refused


def uses_sasl(settings: Settings) -> bool:
    return settings.kafka_security_protocol.startswith("SASL_")


def uses_tls(settings: Settings) -> bool:
    return settings.kafka_security_protocol.endswith("SSL")


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for the brokers (their CA, our certificate), or None without TLS."""
    if not uses_tls(settings):
        return None
    cafile = settings.kafka_ssl_cafile
    try:
        context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
        if settings.kafka_ssl_certfile is not None and settings.kafka_ssl_keyfile is not None:
            context.load_cert_chain(settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise KafkaAccessError(
            f"Kafka TLS files unusable (kafka_ssl_cafile={cafile}, kafka_ssl_certfile="
            f"{settings.kafka_ssl_certfile}, kafka_ssl_keyfile={settings.kafka_ssl_keyfile}): "
            f"{exc}",
            refused=True,
        ) from exc
    return context


# SASL passwords in use: kafka-python logs them in clear at DEBUG (a client's whole
# configuration when it starts, a PLAIN login's bytes), so its records are masked as they
# are made, before any filter or handler of whatever logger sees them.
_secrets: set[str] = set()


def _masking_factory(
    make: Callable[..., logging.LogRecord],
) -> Callable[..., logging.LogRecord]:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        if record.name.startswith("kafka"):
            message = record.getMessage()
            if any(secret in message for secret in _secrets):
                for secret in _secrets:
                    message = message.replace(secret, "***")
                record.msg, record.args = message, None
        return record

    return factory


def _redact_in_kafka_logs(password: str) -> None:
    if not _secrets:
        logging.setLogRecordFactory(_masking_factory(logging.getLogRecordFactory()))
    _secrets.add(password)


def client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for kafka-python's and aiokafka's clients: protocol, SASL, TLS
    (the bootstrap servers are the caller's, as before)."""
    options: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if uses_sasl(settings) and settings.kafka_sasl_password is not None:
        _redact_in_kafka_logs(settings.kafka_sasl_password.get_secret_value())
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    if uses_tls(settings):
        options["ssl_context"] = ssl_context(settings)
    return options


def describe(settings: Settings) -> str:
    """How this client presents itself, for messages: no secret in it."""
    if uses_sasl(settings):
        return (
            f"{settings.kafka_security_protocol}, {settings.kafka_sasl_mechanism} as user "
            f"{settings.kafka_sasl_username!r}"
        )
    return settings.kafka_security_protocol


def check_access(settings: Settings, timeout_s: float = 5.0) -> None:
    """One metadata request with the configured credentials; KafkaAccessError saying what
    failed, so a service can stop at once instead of retrying forever.

    kafka-python retries a refused login until its bootstrap deadline and then reports only
    that it could not bootstrap; the reason is in what it logged meanwhile, kept here. A
    broker refuses a wrong SASL password (or a client speaking the wrong protocol) by
    closing the connection it accepted, which is how ``refused`` tells that from an outage.
    """
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    timeout_ms = int(timeout_s * 1000)
    where = f"Kafka at {settings.bootstrap_servers} ({describe(settings)})"
    failures = _ConnectionFailures()
    kafka_log = logging.getLogger("kafka")
    kafka_log.addHandler(failures)
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=settings.bootstrap_servers,
            **client_options(settings),
            request_timeout_ms=timeout_ms,
            bootstrap_timeout_ms=timeout_ms,
            client_id="finsentry-access-check",
        )
        try:
            # A metadata request: any client that logged in may make one, whatever its ACLs
            # (the brokers leave out the topics it may not see).
            admin.list_topics()
        finally:
            admin.close()
    except (KafkaError, OSError, ValueError) as exc:
        if failures.refused():
            raise KafkaAccessError(
                f"{where} refused this client: it closed every connection during the "
                f"handshake ({failures.first_refusal()}); check kafka_security_protocol, "
                "kafka_sasl_mechanism, kafka_sasl_username and kafka_sasl_password",
                refused=True,
            ) from None
        raise KafkaAccessError(f"{where} did not answer: {exc}", refused=False) from None
    finally:
        kafka_log.removeHandler(failures)


def stop_if_refused(settings: Settings, log: logging.Logger) -> None:
    """``check_access`` for a service starting up: raises when the brokers refuse it, but
    only logs an outage, which its clients ride out by retrying as before."""
    try:
        check_access(settings)
    except KafkaAccessError as exc:
        if exc.refused:
            raise
        log.warning("%s; starting anyway, the clients retry", exc)


class _ConnectionFailures(logging.Handler):
    """Keeps the connection errors kafka-python logs while the check runs."""

    MARKS = ("socket disconnected", "Authentication", "SASL", "SSL", "certificate")

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def refused(self) -> bool:
        return self.first_refusal() is not None

    def first_refusal(self) -> str | None:
        return next((m for m in self.messages if any(mark in m for mark in self.MARKS)), None)
