"""The embedded single-node Apache Kafka (KRaft) that ``finsentry kafka start`` runs.

Jars come from Maven Central through ``deploy/kafka/pom.xml`` into a cache keyed by the pom's
hash, so a version bump re-resolves and every checkout shares one download. The broker's
data, rendered config, logs and PID file live under ``settings.kafka_dir`` and persist
across restarts.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

from finsentry.config import REPO_ROOT, Settings
from finsentry.kafka_auth import client_options
from finsentry.runtime import pid_alive

DEPLOY_DIR = REPO_ROOT / "deploy" / "kafka"
MIN_JAVA = 17
BROKER_MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL_CLASS = "kafka.tools.StorageTool"

# Brokers this process started, kept so their exit status can be collected on stop.
_children: dict[int, subprocess.Popen[bytes]] = {}


class KafkaLauncherError(RuntimeError):
    """The local broker could not be set up, started or stopped; the message says why."""


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    ready: bool
    pid: int | None
    bootstrap: str
    data_dir: Path
    log_file: Path
    version: str


def kafka_version(pom: Path = DEPLOY_DIR / "pom.xml") -> str:
    match = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom.read_text(encoding="utf-8"))
    if match is None:
        raise KafkaLauncherError(f"{pom}: no <kafka.version> property")
    return match.group(1)


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding. Like Kafka's own
    Uuid.randomUuid, never one starting with "-", which kafka-storage would take for an option."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def broker_answers(
    bootstrap: str, timeout_s: float = 3.0, options: Mapping[str, Any] | None = None
) -> bool:
    """True when a real metadata request to the bootstrap servers succeeds; ``options``
    are the clients' security settings (finsentry.kafka_auth.client_options)."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    if not any(_accepts_connections(server, timeout_s) for server in bootstrap.split(",")):
        return False  # spare kafka-python a bootstrap that can only fail
    timeout_ms = int(timeout_s * 1000)
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            request_timeout_ms=timeout_ms,
            bootstrap_timeout_ms=timeout_ms,
            client_id="finsentry-readiness",
            **(options or {}),
        )
    except (KafkaError, OSError, ValueError):
        return False
    try:
        admin.describe_cluster()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


def _accepts_connections(server: str, timeout_s: float) -> bool:
    host, _, port = server.strip().rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


def _java_major(java: str) -> int:
    result = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if match is None:
        raise KafkaLauncherError(f"could not read the Java version from `{java} -version`")
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


class LocalKafka:
    """Start, stop and inspect the embedded broker described by the settings."""

    def __init__(self, settings: Settings, *, java: str = "java", mvn: str = "mvn") -> None:
        if not settings.embedded_kafka:
            raise KafkaLauncherError(
                f"FINSENTRY_KAFKA_BOOTSTRAP={settings.kafka_bootstrap} points at an existing "
                "cluster: finsentry starts no broker of its own"
            )
        self.settings = settings
        self.java = java
        self.mvn = mvn
        self.home = settings.kafka_dir.resolve()
        self.data_dir = self.home / "data"
        self.logs_dir = self.home / "logs"
        self.pid_file = self.home / "kafka.pid"
        self.properties_file = self.home / "server.properties"
        self.console_log = self.logs_dir / "console.log"
        self.version = kafka_version()

    @property
    def bootstrap(self) -> str:
        return self.settings.bootstrap_servers

    def _options(self) -> dict[str, Any]:
        return client_options(self.settings)

    # jars -------------------------------------------------------------------------------
    def jar_dir(self) -> Path:
        pom_hash = hashlib.sha256((DEPLOY_DIR / "pom.xml").read_bytes()).hexdigest()[:12]
        return self.settings.kafka_jar_cache.expanduser() / f"{self.version}-{pom_hash}"

    def ensure_jars(self) -> Path:
        """Resolve the broker's jars once; later calls return the cached directory."""
        target = self.jar_dir()
        if (target / ".complete").is_file():
            return target / "lib"
        if shutil.which(self.mvn) is None:
            raise KafkaLauncherError(
                f"Maven (`{self.mvn}`) is not on PATH; it is needed once to fetch Kafka "
                "from Maven Central (Debian: apt-get install maven)"
            )
        staging = target.with_name(target.name + f".tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        command = [
            self.mvn,
            "-B",
            "-q",
            "-f",
            str(DEPLOY_DIR / "pom.xml"),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={staging / 'lib'}",
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise KafkaLauncherError(
                "Maven could not resolve Kafka's jars:\n" + (result.stdout + result.stderr)[-3000:]
            )
        (staging / ".complete").write_text(self.version, encoding="utf-8")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        return target / "lib"

    def _check_java(self) -> None:
        if shutil.which(self.java) is None:
            raise KafkaLauncherError(
                f"Java (`{self.java}`) is not on PATH; Kafka {self.version} needs Java "
                f"{MIN_JAVA}+ (Debian: apt-get install openjdk-17-jre-headless)"
            )
        major = _java_major(self.java)
        if major < MIN_JAVA:
            raise KafkaLauncherError(f"Java {major} found; Kafka {self.version} needs {MIN_JAVA}+")

    # config and storage -----------------------------------------------------------------
    def render_properties(self) -> Path:
        template = Template((DEPLOY_DIR / "server.properties").read_text(encoding="utf-8"))
        text = template.substitute(
            host=self.settings.kafka_host,
            port=self.settings.kafka_port,
            controller_port=self.settings.kafka_controller_port,
            log_dirs=self.data_dir,
            partitions=self.settings.kafka_partitions,
            protocol=self.settings.kafka_security_protocol,
            sasl="\n".join(self._sasl_properties()),
        )
        self.home.mkdir(parents=True, exist_ok=True)
        self.properties_file.write_text(text, encoding="utf-8")
        return self.properties_file

    def _sasl_user(self) -> tuple[str, str] | None:
        """The one SASL user of the embedded broker (the clients' own), or None."""
        s = self.settings
        if not s.kafka_security_protocol.startswith("SASL_"):
            return None
        if s.kafka_sasl_username is None or s.kafka_sasl_password is None:
            raise KafkaLauncherError("SASL needs kafka_sasl_username and kafka_sasl_password")
        user, password = s.kafka_sasl_username, s.kafka_sasl_password.get_secret_value()
        for name, value in (("kafka_sasl_username", user), ("kafka_sasl_password", password)):
            if not re.fullmatch(r"[A-Za-z0-9_.~!#$%^&*+@:/?-]+", value):
                raise KafkaLauncherError(
                    f"{name} for the embedded broker may hold only letters, digits and "
                    "_.~!#$%^&*+@:/?- (it is written into the broker's JAAS config)"
                )
        return user, password

    def _sasl_properties(self) -> list[str]:
        """PLAIN and SCRAM-SHA-512 on the client listener, for one user (SCRAM's is added to
        the storage when it is formatted); TLS listeners are a real cluster's business."""
        if self.settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
            raise KafkaLauncherError(
                "the embedded broker serves PLAINTEXT or SASL_PLAINTEXT only; for TLS "
                "(kafka_security_protocol SSL or SASL_SSL) point kafka_bootstrap at a cluster"
            )
        found = self._sasl_user()
        if found is None:
            return []
        user, password = found
        listener = "listener.name.sasl_plaintext"
        return [
            "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-512",
            f"sasl.mechanism.inter.broker.protocol={self.settings.kafka_sasl_mechanism}",
            f"{listener}.plain.sasl.jaas.config="
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="{user}" password="{password}" user_{user}="{password}";',
            f"{listener}.scram-sha-512.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{user}" password="{password}";',
        ]

    def _java_command(self, lib: Path, main_class: str, *args: str) -> list[str]:
        return [
            self.java,
            f"-Xms{self.settings.kafka_heap}",
            f"-Xmx{self.settings.kafka_heap}",
            "-XX:+UseG1GC",
            # The quick (C1) compiler only: the optimising one kept a core busy for minutes
            # after start. Measured here: start 3.4-3.7 s and 3.0-3.1 s of CPU against
            # 4.7-4.8 s and 5.3-5.8 s; under bench/stream.py's load 0.28 against 0.43 ms of
            # broker CPU per post. A long-lived production broker is a real cluster's.
            "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={self.logs_dir}",
            f"-Dlog4j2.configurationFile={DEPLOY_DIR / 'log4j2.xml'}",
            "-cp",
            f"{lib}/*",
            main_class,
            *args,
        ]

    def format_storage(self, lib: Path) -> bool:
        """Format the KRaft log dir on first use; returns False when already formatted."""
        if (self.data_dir / "meta.properties").is_file():
            return False
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        cluster_id = new_cluster_id()
        command = self._java_command(
            lib,
            STORAGE_TOOL_CLASS,
            "format",
            "--standalone",
            "-t",
            cluster_id,
            "-c",
            str(self.properties_file),
            *self._scram_user_arguments(),
        )
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise KafkaLauncherError(
                "formatting Kafka storage failed:\n" + (result.stdout + result.stderr)[-3000:]
            )
        return True

    def _scram_user_arguments(self) -> list[str]:
        found = self._sasl_user()
        if found is None:
            return []
        user, password = found
        return ["--add-scram", f"SCRAM-SHA-512=[name={user},password={password}]"]

    # process ----------------------------------------------------------------------------
    def pid(self) -> int | None:
        """PID of our broker if it is alive, else None (a stale PID file is removed)."""
        try:
            pid = int(self.pid_file.read_text(encoding="utf-8").strip())
        except (FileNotFoundError, ValueError):
            return None
        if _is_our_broker(pid, self.properties_file):
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def status(self) -> BrokerStatus:
        pid = self.pid()
        return BrokerStatus(
            running=pid is not None,
            ready=pid is not None and broker_answers(self.bootstrap, options=self._options()),
            pid=pid,
            bootstrap=self.bootstrap,
            data_dir=self.data_dir,
            log_file=self.logs_dir / "server.log",
            version=self.version,
        )

    def prepare(self) -> list[str]:
        """Check Java and ports, resolve jars, render config, format storage: the broker's
        command line, ready to run in the foreground (``start`` or a supervisor runs it)."""
        self._check_java()
        host = self.settings.kafka_host
        for name, port in (
            ("kafka_port", self.settings.kafka_port),
            ("kafka_controller_port", self.settings.kafka_controller_port),
        ):
            if not port_is_free(host, port):
                raise KafkaLauncherError(
                    f"port {port} on {host} ({name}) is taken by another process; stop it or "
                    f"set FINSENTRY_{name.upper()} to a free port"
                )
        lib = self.ensure_jars()
        self.render_properties()
        self.format_storage(lib)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        return self._java_command(lib, BROKER_MAIN_CLASS, str(self.properties_file))

    def start(self) -> tuple[BrokerStatus, bool]:
        """Start the broker and wait until it answers; returns (status, started_now)."""
        if self.pid() is not None:
            return self.status(), False
        command = self.prepare()
        with self.console_log.open("ab") as console:
            process = subprocess.Popen(
                command,
                stdout=console,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        _children[process.pid] = process
        self.pid_file.write_text(str(process.pid), encoding="utf-8")
        self._wait_ready(process)
        return self.status(), True

    def _wait_ready(self, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self.settings.kafka_start_timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                _children.pop(process.pid, None)
                self.pid_file.unlink(missing_ok=True)
                raise KafkaLauncherError(
                    f"the broker exited with code {process.returncode} during start-up; "
                    f"last lines of {self.console_log} and {self.logs_dir / 'server.log'}:\n"
                    + self._log_tail()
                )
            if broker_answers(self.bootstrap, timeout_s=2.0, options=self._options()):
                return
            time.sleep(0.25)
        self.stop()
        raise KafkaLauncherError(
            f"the broker did not answer within {self.settings.kafka_start_timeout_s:.0f}s; "
            f"see {self.logs_dir / 'server.log'}:\n" + self._log_tail()
        )

    def _log_tail(self, lines: int = 30) -> str:
        chunks = []
        for path in (self.console_log, self.logs_dir / "server.log"):
            if path.is_file():
                chunks.extend(path.read_text(encoding="utf-8", errors="replace").splitlines())
        return "\n".join(chunks[-lines:])

    def stop(self, timeout_s: float = 60.0) -> bool:
        """Stop the broker by PID and wait for it to exit; returns False if none ran."""
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        if not _wait_gone(pid, timeout_s):
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, 10.0)
        self.pid_file.unlink(missing_ok=True)
        return True


def _is_our_broker(pid: int, properties_file: Path) -> bool:
    """The PID is alive and is a Kafka broker started with our properties file."""
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        del _children[pid]
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    args = [part.decode(errors="replace") for part in cmdline]
    return BROKER_MAIN_CLASS in args and str(properties_file) in args


def _wait_gone(pid: int, timeout_s: float) -> bool:
    """Wait for the process to exit; our own children are reaped, others by init."""
    child = _children.get(pid)
    if child is not None:
        try:
            child.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return False
        del _children[pid]
        return True
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    return False
