"""The embedded broker: clear refusals (unit) and its real lifecycle (integration)."""

from __future__ import annotations

import base64
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from finsentry.config import Settings, get_settings, load_settings
from finsentry.localkafka import KafkaLauncherError, LocalKafka, broker_answers, new_cluster_id
from finsentry.topics import INTERNAL_TOPICS, TOPIC_NAMES, ensure_topics
from tests.support import free_port


def broker_settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": tmp_path / "var",
        "kafka_port": free_port(),
        "kafka_controller_port": free_port(),
    }
    values.update(overrides)
    return load_settings(**values)


@pytest.mark.unit
def test_regression_cluster_id_never_starts_with_a_dash() -> None:
    """kafka-storage read a cluster id like "-Xb3..." as an option and refused to format
    (one chance in 64 per new broker; it hit the session broker of a test run)."""
    ids = [new_cluster_id() for _ in range(5_000)]
    assert not [i for i in ids if i.startswith("-")]
    assert {len(i) for i in ids} == {22}
    assert len({base64.urlsafe_b64decode(i + "==") for i in ids}) == len(ids)


@pytest.mark.unit
def test_external_cluster_is_never_started(tmp_path: Path) -> None:
    with pytest.raises(KafkaLauncherError, match="existing cluster"):
        LocalKafka(broker_settings(tmp_path, kafka_bootstrap="kafka-1:9092"))


@pytest.mark.unit
def test_missing_java_is_explained(tmp_path: Path) -> None:
    launcher = LocalKafka(broker_settings(tmp_path), java="no-such-java")
    with pytest.raises(KafkaLauncherError, match=r"Java \(`no-such-java`\) is not on PATH"):
        launcher.start()


@pytest.mark.unit
def test_missing_maven_is_explained(tmp_path: Path) -> None:
    settings = broker_settings(tmp_path, kafka_jar_cache=tmp_path / "empty-cache")
    launcher = LocalKafka(settings, mvn="no-such-mvn")
    with pytest.raises(KafkaLauncherError, match=r"Maven \(`no-such-mvn`\) is not on PATH"):
        launcher.start()


@pytest.mark.unit
def test_taken_port_is_named(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        launcher = LocalKafka(broker_settings(tmp_path, kafka_port=port))
        with pytest.raises(KafkaLauncherError, match=f"port {port} on 127.0.0.1 .kafka_port."):
            launcher.start()
    assert launcher.pid() is None


@pytest.mark.unit
def test_stale_pid_file_is_ignored(tmp_path: Path) -> None:
    launcher = LocalKafka(broker_settings(tmp_path))
    launcher.home.mkdir(parents=True)
    launcher.pid_file.write_text(str(os.getpid()))  # alive, but not a broker
    assert launcher.pid() is None
    assert not launcher.pid_file.exists()


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A broker this module starts and stops itself, separate from the session one."""
    launcher = LocalKafka(broker_settings(tmp_path_factory.mktemp("own-broker")))
    yield launcher
    launcher.stop()


@pytest.mark.integration
def test_lifecycle_start_noop_stop_and_persistence(own_broker: LocalKafka) -> None:
    status, started = own_broker.start()
    assert started and status.ready and status.pid is not None
    again, started_again = own_broker.start()
    assert not started_again and again.pid == status.pid

    states = {s.name: s for s in ensure_topics(own_broker.settings)}
    topic = own_broker.settings.topic
    assert set(states) == {topic(n) for n in (*TOPIC_NAMES, *INTERNAL_TOPICS)}
    assert all(s.created for s in states.values())
    assert states[topic("posts")].partitions == own_broker.settings.kafka_partitions
    assert states[topic("signal-input")].partitions == 1

    assert own_broker.stop()
    assert own_broker.pid() is None
    assert not _process_exists(status.pid)
    assert not broker_answers(own_broker.bootstrap, timeout_s=1.0)
    assert not own_broker.stop()

    restarted, _ = own_broker.start()
    assert restarted.ready and restarted.pid != status.pid
    # Data persists: the topics exist, so nothing is created again.
    assert not any(s.created for s in ensure_topics(own_broker.settings))


@pytest.mark.integration
def test_cli_start_is_a_noop_when_running(
    own_broker: LocalKafka, monkeypatch: pytest.MonkeyPatch
) -> None:
    from finsentry.cli import app

    own_broker.start()
    settings = own_broker.settings
    monkeypatch.setenv("FINSENTRY_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("FINSENTRY_KAFKA_PORT", str(settings.kafka_port))
    monkeypatch.setenv("FINSENTRY_KAFKA_CONTROLLER_PORT", str(settings.kafka_controller_port))
    get_settings.cache_clear()
    try:
        start = CliRunner().invoke(app, ["kafka", "start"])
        status = CliRunner().invoke(app, ["kafka", "status"])
    finally:
        get_settings.cache_clear()
    assert start.exit_code == 0, start.output
    assert "already running" in start.output
    assert status.exit_code == 0 and "yes (pid" in status.output


def _process_exists(pid: int | None) -> bool:
    return pid is not None and Path(f"/proc/{pid}").exists()
