"""Kafka with SASL and TLS: the embedded broker with a SASL_PLAINTEXT listener (PLAIN and
SCRAM-SHA-512 for one user), every client with the right credentials, each service stopping
at once, saying why, with wrong ones; and a TLS listener asking for client certificates."""

from __future__ import annotations

import json
import logging
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faust
import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from kafka import KafkaConsumer

from finsentry.config import ConfigError, Settings, load_settings
from finsentry.kafka_auth import KafkaAccessError, check_access, client_options
from finsentry.localkafka import KafkaLauncherError, LocalKafka, broker_answers
from finsentry.runtime import free_port, wait_until
from finsentry.schema import Post
from finsentry.store import Store
from finsentry.topics import ensure_topics
from ingest.producer import KafkaPostSink
from stream.app import broker_credentials
from stream.process import WorkerProcess, kafka_auth_env

pytestmark = pytest.mark.integration

USER = "finsentry"
PASSWORD = "s3cret-sasl-pw"
SASL = {"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_username": USER}


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """The embedded broker serving only SASL_PLAINTEXT, for the module."""
    broker = LocalKafka(
        load_settings(
            data_dir=tmp_path_factory.mktemp("sasl-broker"),
            kafka_port=free_port(),
            kafka_controller_port=free_port(),
            kafka_sasl_password=PASSWORD,
            **SASL,
        )
    )
    broker.start()
    try:
        yield broker.settings
    finally:
        broker.stop()


def client_settings(broker: Settings, tmp_path: Path, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "var",
        "kafka_bootstrap": broker.bootstrap_servers,
        "kafka_topic_prefix": f"auth{time.monotonic_ns() % 10**8}.",
        "kafka_partitions": 1,
        "store_url": f"sqlite:///{tmp_path / 'store.db'}",
        "window_size_s": 3600,
        "allowed_lateness_s": 6 * 3600,
        "kafka_sasl_password": PASSWORD,
        **SASL,
        **changes,
    }
    return load_settings(**values)


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-512"])
def test_right_credentials_are_let_in_and_wrong_ones_refused_with_a_reason(
    sasl_broker: Settings, tmp_path: Path, mechanism: str
) -> None:
    right = client_settings(sasl_broker, tmp_path, kafka_sasl_mechanism=mechanism)
    check_access(right)
    assert broker_answers(right.bootstrap_servers, options=client_options(right))
    wrong = client_settings(
        sasl_broker, tmp_path, kafka_sasl_mechanism=mechanism, kafka_sasl_password="not-it"
    )
    with pytest.raises(KafkaAccessError, match="refused this client") as caught:
        check_access(wrong)
    assert caught.value.refused
    assert f"{mechanism} as user 'finsentry'" in str(caught.value)
    assert "not-it" not in str(caught.value) and PASSWORD not in str(caught.value)
    # A client without SASL is refused too (the listener speaks only SASL).
    plain = client_settings(sasl_broker, tmp_path, kafka_security_protocol="PLAINTEXT")
    with pytest.raises(KafkaAccessError, match="refused this client"):
        check_access(plain)


def test_an_unreachable_broker_is_an_outage_not_a_refusal(tmp_path: Path) -> None:
    down = load_settings(
        data_dir=tmp_path,
        kafka_bootstrap=f"127.0.0.1:{free_port()}",
        kafka_sasl_password="x",
        **SASL,
    )
    with pytest.raises(KafkaAccessError, match="did not answer") as caught:
        check_access(down)
    assert not caught.value.refused


def test_a_post_flows_end_to_end_over_scram(
    sasl_broker: Settings, tmp_path: Path, run_worker: list[WorkerProcess]
) -> None:
    """Ingest producer (kafka-python) -> worker (Faust, aiokafka) -> store, all on SCRAM."""
    settings = client_settings(sasl_broker, tmp_path, kafka_sasl_mechanism="SCRAM-SHA-512")
    ensure_topics(settings)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    run_worker.append(worker)
    worker.start()
    now = datetime.now(UTC)
    post = Post(
        id="auth:1",
        source="webhook:auth",
        kind="news",
        published_at=now,
        received_at=now,
        title="Acme shares plunge after the regulator opens an investigation",
        tickers=("ACME",),
    )
    sink = KafkaPostSink(settings)
    try:
        sink.publish([post], timeout_s=60)
    finally:
        sink.close()

    def stored() -> bool:
        store = Store(settings.database_url)
        try:
            row = store.get_post(post.id)
            return row is not None and row["score"] is not None
        finally:
            store.close()

    wait_until(stored, 120, "the post scored and stored")


def _run_cli(args: list[str], settings: Settings, timeout_s: float) -> tuple[int, str, float]:
    env = {
        **os.environ,
        "FINSENTRY_CONFIG": "none",
        "FINSENTRY_KAFKA_BOOTSTRAP": settings.bootstrap_servers,
        "FINSENTRY_KAFKA_TOPIC_PREFIX": settings.kafka_topic_prefix,
        "FINSENTRY_DATA_DIR": str(settings.data_dir),
        "FINSENTRY_STORE_URL": settings.database_url,
        "FINSENTRY_WORKER_WEB_PORT": str(free_port()),
        "FINSENTRY_ALERTS_WEB_PORT": str(free_port()),
        "FINSENTRY_INGEST_WEBHOOK_PORT": str(free_port()),
        # Somewhere to send alerts, so the alerts service gets as far as Kafka.
        "FINSENTRY_ALERTS_SLACK_WEBHOOK_URL": f"http://127.0.0.1:{free_port()}/hook",
        **kafka_auth_env(settings),
    }
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "finsentry", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    return result.returncode, result.stdout + result.stderr, time.monotonic() - started


def test_each_service_stops_at_once_on_wrong_credentials(
    sasl_broker: Settings, tmp_path: Path
) -> None:
    """Before, each client retried or waited on metadata with nothing said about why."""
    wrong = client_settings(sasl_broker, tmp_path, kafka_sasl_password="wrong-pw")
    ensure_topics(
        client_settings(sasl_broker, tmp_path, kafka_topic_prefix=wrong.kafka_topic_prefix)
    )
    csv = tmp_path / "posts.csv"
    csv.write_text("title,date,stock\nAcme falls,2024-05-01 10:00:00,ACME\n", encoding="utf-8")
    commands = {
        "worker": ["worker"],
        "alerts": ["alerts", "run"],
        "ingest": ["ingest", "webhook"],
        "backfill": ["backfill", str(csv), "--via-kafka", "--no-progress"],
    }
    for name, args in commands.items():
        code, output, seconds = _run_cli(args, wrong, timeout_s=120)
        assert code != 0, f"{name} kept running or succeeded:\n{output[-2000:]}"
        assert "refused this client" in output, f"{name}:\n{output[-2000:]}"
        assert "SASL_PLAINTEXT, PLAIN as user 'finsentry'" in output, name
        assert "wrong-pw" not in output, name
        assert seconds < 90, f"{name} took {seconds:.0f}s to stop"


def test_sasl_without_credentials_and_half_a_client_certificate_are_refused() -> None:
    with pytest.raises(ConfigError, match="needs kafka_sasl_username and kafka_sasl_password"):
        load_settings(kafka_security_protocol="SASL_SSL", kafka_sasl_username=USER)
    with pytest.raises(ConfigError, match="set both kafka_ssl_certfile and kafka_ssl_keyfile"):
        load_settings(kafka_ssl_certfile="client.pem")


def test_tls_options_carry_the_ca_and_the_client_certificate(tmp_path: Path) -> None:
    ca = trustme.CA()
    client = ca.issue_cert("finsentry-client")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    client.cert_chain_pems[0].write_to_path(str(tmp_path / "client.pem"))
    client.private_key_pem.write_to_path(str(tmp_path / "client.key"))
    settings = load_settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_password=PASSWORD,
        kafka_sasl_username=USER,
        kafka_ssl_cafile=tmp_path / "ca.pem",
        kafka_ssl_certfile=tmp_path / "client.pem",
        kafka_ssl_keyfile=tmp_path / "client.key",
    )
    options = client_options(settings)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    context = options["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [
        c["subject"] for c in ssl.create_default_context(cafile=tmp_path / "ca.pem").get_ca_certs()
    ]
    credentials = broker_credentials(settings)
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.ssl_context is not None and credentials.mechanism.value == "SCRAM-SHA-512"
    assert PASSWORD not in json.dumps(settings.masked_dump(), default=str)
    broken = load_settings(
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=tmp_path / "missing-ca.pem",
    )
    with pytest.raises(KafkaAccessError, match="Kafka TLS files unusable") as caught:
        client_options(broken)
    assert caught.value.refused


def test_the_embedded_broker_refuses_tls_with_a_reason(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, kafka_security_protocol="SSL")
    with pytest.raises(KafkaLauncherError, match="serves PLAINTEXT or SASL_PLAINTEXT only"):
        LocalKafka(settings).render_properties()


def test_the_sasl_password_stays_out_of_debug_logs(
    sasl_broker: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """kafka-python logs a PLAIN login's bytes, password included, at DEBUG."""
    settings = client_settings(sasl_broker, tmp_path, kafka_sasl_mechanism="PLAIN")
    with caplog.at_level(logging.DEBUG, logger="kafka"):
        check_access(settings)
    assert "SaslAuthenticateRequest" in caplog.text
    assert PASSWORD not in caplog.text


class _BrokerWithTls(LocalKafka):
    """The embedded broker with a second, TLS listener that asks for client certificates:
    what a real cluster's TLS looks like to finsentry's clients."""

    def __init__(self, settings: Settings, tls_port: int, server_pem: Path, ca: Path) -> None:
        super().__init__(settings)
        self.tls_port, self.server_pem, self.ca = tls_port, server_pem, ca

    def render_properties(self) -> Path:
        path = super().render_properties()
        text = path.read_text(encoding="utf-8")
        host, port = self.settings.kafka_host, self.settings.kafka_port
        text = text.replace(
            f"listeners=PLAINTEXT://{host}:{port},",
            f"listeners=PLAINTEXT://{host}:{port},SSL://{host}:{self.tls_port},",
        )
        text = text.replace(
            f"advertised.listeners=PLAINTEXT://{host}:{port}",
            f"advertised.listeners=PLAINTEXT://{host}:{port},SSL://{host}:{self.tls_port}",
        )
        text = text.replace(
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL",
        )
        text += (
            f"\nssl.keystore.type=PEM\nssl.keystore.location={self.server_pem}\n"
            f"ssl.truststore.type=PEM\nssl.truststore.location={self.ca}\n"
            "ssl.client.auth=required\n"
        )
        path.write_text(text, encoding="utf-8")
        return path


def test_tls_with_a_client_certificate_carries_posts(tmp_path: Path) -> None:
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    client = ca.issue_cert("finsentry-client")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    # Kafka reads a PEM keystore's key only as PKCS#8.
    key = serialization.load_pem_private_key(server.private_key_pem.bytes(), password=None)
    pkcs8 = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    chain = b"".join(pem.bytes() for pem in server.cert_chain_pems)
    (tmp_path / "server.pem").write_bytes(pkcs8 + chain)
    client.cert_chain_pems[0].write_to_path(str(tmp_path / "client.pem"))
    client.private_key_pem.write_to_path(str(tmp_path / "client.key"))
    tls_port = free_port()
    broker = _BrokerWithTls(
        load_settings(
            data_dir=tmp_path / "broker", kafka_port=free_port(), kafka_controller_port=free_port()
        ),
        tls_port,
        tmp_path / "server.pem",
        tmp_path / "ca.pem",
    )
    broker.start()
    try:
        tls = load_settings(
            data_dir=tmp_path / "var",
            kafka_bootstrap=f"127.0.0.1:{tls_port}",
            kafka_topic_prefix="tls.",
            kafka_partitions=1,
            kafka_security_protocol="SSL",
            kafka_ssl_cafile=tmp_path / "ca.pem",
            kafka_ssl_certfile=tmp_path / "client.pem",
            kafka_ssl_keyfile=tmp_path / "client.key",
        )
        check_access(tls)
        ensure_topics(tls)
        now = datetime.now(UTC)
        post = Post(
            id="tls:1",
            source="webhook:tls",
            kind="news",
            published_at=now,
            received_at=now,
            title="Acme beats estimates",
        )
        sink = KafkaPostSink(tls)
        try:
            sink.publish([post], timeout_s=30)
        finally:
            sink.close()
        consumer = KafkaConsumer(
            tls.topic("posts"),
            bootstrap_servers=tls.bootstrap_servers,
            auto_offset_reset="earliest",
            consumer_timeout_ms=20_000,
            **client_options(tls),
        )
        try:
            assert [Post.from_json(m.value).id for m in consumer] == ["tls:1"]
        finally:
            consumer.close()
        # Without the client certificate the TLS listener refuses the client.
        no_cert = load_settings(
            data_dir=tmp_path / "var",
            kafka_bootstrap=f"127.0.0.1:{tls_port}",
            kafka_security_protocol="SSL",
            kafka_ssl_cafile=tmp_path / "ca.pem",
        )
        with pytest.raises(KafkaAccessError, match="refused this client"):
            check_access(no_cert)
    finally:
        broker.stop()
