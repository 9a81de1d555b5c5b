from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from finsentry.config import (
    ConfigError,
    cron_trigger,
    get_settings,
    load_settings,
    mask_url_password,
)

pytestmark = pytest.mark.unit


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "finsentry.toml"
    monkeypatch.setenv("FINSENTRY_CONFIG", str(path))
    return path


def test_defaults_are_local_and_safe() -> None:
    settings = load_settings()
    assert settings.embedded_kafka
    assert settings.bootstrap_servers == "127.0.0.1:9092"
    assert settings.database_url == "sqlite:///var/finsentry.db"
    assert (settings.dashboard_host, settings.dashboard_port) == ("127.0.0.1", 8050)
    assert settings.topic("posts") == "finsentry.posts"


def test_precedence_kwargs_over_env_over_toml_over_default(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_file.write_text(
        'window_size_s = 60\n[kafka]\nport = 9300\ntopic_prefix = "toml."\n'
        "[spike]\nfalse_alarm_rate = 0.01\n"
    )
    monkeypatch.setenv("FINSENTRY_KAFKA_PORT", "9400")
    settings = load_settings(spike_false_alarm_rate=0.002)
    assert settings.spike_false_alarm_rate == 0.002  # keyword beats the file
    assert settings.kafka_port == 9400  # env beats the file
    assert settings.kafka_topic_prefix == "toml."  # file beats the default
    assert settings.window_size_s == 60  # top-level keys work as well as sections
    assert settings.kafka_controller_port == 9093  # default


def test_dict_setting_in_toml_is_not_flattened(config_file: Path) -> None:
    config_file.write_text("kafka_topic_partitions = { posts = 12 }\n")
    settings = load_settings()
    assert settings.partitions_for("posts") == 12
    assert settings.partitions_for("alerts") == settings.kafka_partitions


def test_unknown_toml_key_is_named(config_file: Path) -> None:
    config_file.write_text("[kafka]\nprot = 1\n")
    with pytest.raises(ConfigError, match=r"unknown setting.*kafka_prot"):
        load_settings()


def test_broken_toml_names_the_file(config_file: Path) -> None:
    config_file.write_text("[kafka\n")
    with pytest.raises(ConfigError, match=r"finsentry\.toml: not valid TOML"):
        load_settings()


def test_missing_explicit_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FINSENTRY_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match="no such file"):
        load_settings()


@pytest.mark.parametrize(
    ("env", "value", "message"),
    [
        ("FINSENTRY_KAFKA_PORT", "70000", "kafka_port"),
        ("FINSENTRY_WINDOW_SIZE_S", "0", "window_size_s"),
        ("FINSENTRY_MODEL_DEVICE", "tpu", "model_device"),
        ("FINSENTRY_KAFKA_CONTROLLER_PORT", "9092", "must differ"),
    ],
)
def test_bad_values_are_named(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, message: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError, match=message):
        load_settings()


def test_external_bootstrap_disables_the_embedded_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINSENTRY_KAFKA_BOOTSTRAP", "kafka-1:9092,kafka-2:9092")
    settings = load_settings()
    assert not settings.embedded_kafka
    assert settings.bootstrap_servers == "kafka-1:9092,kafka-2:9092"


def test_masked_dump_hides_secrets() -> None:
    settings = load_settings(
        dashboard_password=SecretStr("hunter2"),
        store_url="postgresql://finsentry:s3cret@db:5432/finsentry",
    )
    text = json.dumps(settings.masked_dump(), default=str)
    assert "hunter2" not in text
    assert "s3cret" not in text
    assert "postgresql://finsentry:***@db:5432/finsentry" in text


def test_masked_dump_hides_credentials_in_every_url() -> None:
    """Feed tokens (nested in ingest_rss_feeds, or in a query string) and a password with an
    unencoded ``@`` or ``/`` were printed by ``finsentry config`` before."""
    settings = load_settings(
        ingest_rss_feeds=[
            {"name": "paid", "url": "https://feeds.example/rss?token=t0k3nA&fmt=xml#top"},
            {"name": "basic", "url": "https://reader:pw0rdB@feeds.example/rss"},
        ],
        alerts_dashboard_url="https://desk:d4shC@dash.example/?key=k3yD",
        store_url="postgresql://finsentry:s3c@r/tE@db:5432/finsentry",
    )
    text = json.dumps(settings.masked_dump(), default=str)
    for secret in ("t0k3nA", "pw0rdB", "d4shC", "k3yD", "s3c@r/tE", "r/tE"):
        assert secret not in text
    assert "https://feeds.example/rss?token=***&fmt=***#top" in text
    assert "https://reader:***@feeds.example/rss" in text
    assert "postgresql://finsentry:***@db:5432/finsentry" in text


def test_mask_url_password_leaves_plain_values() -> None:
    assert mask_url_password("127.0.0.1:9092") == "127.0.0.1:9092"
    assert mask_url_password("sqlite:///var/x.db") == "sqlite:///var/x.db"


def test_config_command_prints_masked_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from finsentry.cli import app

    monkeypatch.setenv("FINSENTRY_DASHBOARD_PASSWORD", "hunter2")
    monkeypatch.setenv("FINSENTRY_KAFKA_PORT", "9555")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["config"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["kafka_port"] == 9555
    assert shown["dashboard_password"] == "**********"
    assert "hunter2" not in result.output


def test_config_command_reports_bad_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from finsentry.cli import app

    monkeypatch.setenv("FINSENTRY_KAFKA_PORT", "not-a-port")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["config"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2
    assert "kafka_port" in result.output


def test_retrain_schedule_and_gate_settings_are_checked_when_loaded() -> None:
    assert str(cron_trigger("*/5 * * * * *", "UTC")).startswith("cron[")
    assert load_settings(retrain_cron="30 2 * * mon-fri").retrain_cron == "30 2 * * mon-fri"
    with pytest.raises(ConfigError, match=r"retrain_cron.*has 3 fields; expected 5"):
        load_settings(retrain_cron="1 2 3")
    with pytest.raises(ConfigError, match=r"retrain_cron.*cron expression '61 \* \* \* \*'"):
        load_settings(retrain_cron="61 * * * *")
    with pytest.raises(ConfigError, match=r"retrain_timezone.*unknown time zone 'Mars/Base'"):
        load_settings(retrain_timezone="Mars/Base")
    with pytest.raises(ConfigError, match=r"retrain_gate_metrics.*bad: \['twitter_topic.f1'\]"):
        load_settings(retrain_gate_metrics=("twitter_topic.accuracy", "twitter_topic.f1"))
