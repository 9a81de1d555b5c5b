"""The stream worker as a child process: started, awaited until ready, stopped by PID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from finsentry.config import Settings
from finsentry.runtime import free_port, wait_until
from finsentry.topics import ensure_topics

READY_LINE = "[^Worker]: Ready"


def kafka_auth_env(settings: Settings) -> dict[str, str]:
    """The Kafka security settings as FINSENTRY_* variables, for a child process."""
    env = {
        "FINSENTRY_KAFKA_SECURITY_PROTOCOL": settings.kafka_security_protocol,
        "FINSENTRY_KAFKA_SASL_MECHANISM": settings.kafka_sasl_mechanism,
    }
    optional: dict[str, object] = {
        "FINSENTRY_KAFKA_SASL_USERNAME": settings.kafka_sasl_username,
        "FINSENTRY_KAFKA_SASL_PASSWORD": settings.kafka_sasl_password
        and settings.kafka_sasl_password.get_secret_value(),
        "FINSENTRY_KAFKA_SSL_CAFILE": settings.kafka_ssl_cafile,
        "FINSENTRY_KAFKA_SSL_CERTFILE": settings.kafka_ssl_certfile,
        "FINSENTRY_KAFKA_SSL_KEYFILE": settings.kafka_ssl_keyfile,
    }
    return env | {name: str(value) for name, value in optional.items() if value}


class WorkerProcess:
    """One ``finsentry worker``; settings reach it through FINSENTRY_* variables."""

    def __init__(
        self, settings: Settings, log_file: Path, *, web_port: int | None = None, **extra_env: str
    ) -> None:
        self.settings = settings
        self.log_file = log_file
        self.web_port = web_port or free_port()
        self.env = {
            **os.environ,
            "FINSENTRY_CONFIG": "none",
            "FINSENTRY_KAFKA_BOOTSTRAP": settings.bootstrap_servers,
            "FINSENTRY_KAFKA_TOPIC_PREFIX": settings.kafka_topic_prefix,
            "FINSENTRY_KAFKA_PARTITIONS": str(settings.kafka_partitions),
            "FINSENTRY_DATA_DIR": str(settings.data_dir),
            "FINSENTRY_STORE_URL": settings.database_url,
            "FINSENTRY_WORKER_WEB_PORT": str(self.web_port),
            "FINSENTRY_WINDOW_SIZE_S": str(settings.window_size_s),
            "FINSENTRY_ALLOWED_LATENESS_S": str(settings.allowed_lateness_s),
            **kafka_auth_env(settings),
            **extra_env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 180.0) -> None:
        ensure_topics(self.settings)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "finsentry", "worker"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
            )
        wait_until(lambda: self._ready_since(offset), timeout_s, f"worker ready ({self.log_file})")

    def _ready_since(self, offset: int) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"worker exited with {self.process.returncode}:\n{self.tail()}")
        with self.log_file.open("rb") as log:
            log.seek(offset)
            return READY_LINE.encode() in log.read()

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout_s)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=30)

    def tail(self, lines: int = 40) -> str:
        text = self.log_file.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"
