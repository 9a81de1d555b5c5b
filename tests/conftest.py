"""Session-wide fixtures: isolated settings and a real Kafka broker."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from finsentry.config import Settings, load_settings
from finsentry.localkafka import LocalKafka
from finsentry.store import Store, metadata
from stream.process import WorkerProcess
from tests.support import free_port

TEST_BOOTSTRAP_ENV = "FINSENTRY_TEST_KAFKA_BOOTSTRAP"

# Property tests check behaviour, not speed: a busy 2-core machine must not fail them on time.
hypothesis_settings.register_profile(
    "finsentry", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile("finsentry")


def pytest_configure(config: pytest.Config) -> None:
    """Keep a developer's own FINSENTRY_* environment and finsentry.toml out of the tests."""
    for name in list(os.environ):
        if name.startswith("FINSENTRY_") and not name.startswith("FINSENTRY_TEST_"):
            del os.environ[name]
    os.environ["FINSENTRY_CONFIG"] = "none"
    os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Default settings with all local state under a fresh temporary directory."""
    return load_settings(data_dir=tmp_path / "var")


@pytest.fixture
def run_worker() -> Iterator[list[WorkerProcess]]:
    """Worker processes a test starts (append them); any still running are killed after it."""
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        if worker.process is not None and worker.process.poll() is None:
            worker.kill()


@pytest.fixture(scope="session")
def kafka_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings pointing at a live broker, with a topic prefix unique to this session.

    Reuses the broker named by FINSENTRY_TEST_KAFKA_BOOTSTRAP when set; otherwise starts
    the embedded broker on free ports for the session and stops it afterwards.
    """
    data_dir = tmp_path_factory.mktemp("finsentry")
    prefix = f"test-{uuid.uuid4().hex[:8]}."
    external = os.environ.get(TEST_BOOTSTRAP_ENV)
    if external:
        yield load_settings(
            data_dir=data_dir,
            kafka_bootstrap=external,
            kafka_topic_prefix=prefix,
            kafka_partitions=3,
        )
        return
    broker = LocalKafka(
        load_settings(
            data_dir=data_dir / "broker",
            kafka_port=free_port(),
            kafka_controller_port=free_port(),
        )
    )
    broker.start()
    try:
        yield load_settings(
            data_dir=data_dir,
            kafka_bootstrap=broker.bootstrap,
            kafka_topic_prefix=prefix,
            kafka_partitions=3,
        )
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL server on a free 127.0.0.1 port, for the session.

    Uses Debian's server binaries (`apt-get install postgresql`, which .ci/run does); as root
    the server runs as the `postgres` user, since PostgreSQL refuses to run as root.
    """
    initdbs = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not initdbs:
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
    bindir = Path(initdbs[-1]).parent
    base = Path(tempfile.mkdtemp(prefix="finsentry-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(base, user="postgres", group="postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data = base / "data"
    port = free_port()

    def pg(*args: str) -> None:
        subprocess.run([*as_user, *args], check=True, capture_output=True, cwd=base)

    pg(str(bindir / "initdb"), "-D", str(data), "-U", "finsentry", "--auth=trust", "-E", "UTF8")
    pg(
        str(bindir / "pg_ctl"),
        "-D",
        str(data),
        "-l",
        str(base / "server.log"),
        "-w",
        "-o",
        f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off",
        "start",
    )
    try:
        yield f"postgresql://finsentry@127.0.0.1:{port}/postgres"
    finally:
        pg(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=pytest.mark.unit),
        pytest.param("postgresql", marks=pytest.mark.integration),
    ]
)
def sql_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The same test on SQLite (a file) and PostgreSQL (a real server, tables dropped after)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    db = Store(url)
    yield db
    if db.dialect == "postgresql":
        metadata.drop_all(db.engine)
    db.close()
