"""``finsentry backfill`` as a user runs it: errors, idempotence, a kill and a resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner

from finsentry.cli import app
from finsentry.runtime import wait_until
from finsentry.store import Store, metadata
from tests.stream.backfill_data import guardian_slice

ROOT = Path(__file__).resolve().parents[2]
HALF_MARCH = ("--from", "2020-03-01", "--to", "2020-03-15")
# Wall-clock columns: when a row was written, not what was computed.
WALL_CLOCK = {"received_at", "stored_at", "updated_at", "created_at"}


@pytest.mark.unit
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.csv"], "missing.csv: no such file or directory"),
        (["{readme}"], "unknown format 'md'; use .csv, .jsonl or .parquet"),
        (["{data}", "--from", "2020-13-01"], "--from '2020-13-01': not a date"),
        (["{data}", "--to", "soon"], "--to 'soon': not a date"),
        (["{data}", "--from", "2020-03-02", "--to", "2020-03-01"], "is not before --to"),
        (["{data}", "--notify", "--via-kafka"], "--notify and --via-kafka exclude each other"),
        (["{data}", "--preset", "nope"], "unknown preset 'nope'"),
        (["{data}", "--map", "title"], "use FIELD=COLUMN"),
        (["{data}", "--map", "colour=Headlines"], "unknown field(s) ['colour']"),
        (["{data}", "--kind", "rumour"], "news or social"),
        (["{data}", "--tz", "Mars/Olympus"], "--tz 'Mars/Olympus': not a known time zone"),
        (["{empty}"], "no .csv, .jsonl or .parquet files in it"),
    ],
)
def test_bad_input_is_refused_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FINSENTRY_DATA_DIR", str(tmp_path / "var"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "README.md").write_text("not data")
    data = guardian_slice(tmp_path / "slice.csv", ("March 2020",))
    paths = {"data": str(data), "readme": str(tmp_path / "README.md"), "empty": "empty"}
    result = CliRunner().invoke(app, ["backfill", *(a.format(**paths) for a in args)])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "var" / "finsentry.db").exists(), "nothing may run on bad input"


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINSENTRY_")}
    env.update(
        FINSENTRY_CONFIG="none",
        FINSENTRY_DATA_DIR=str(tmp_path / "var"),
        FINSENTRY_STORE_URL=f"sqlite:///{tmp_path / 'store.db'}",
        FINSENTRY_WINDOW_SIZE_S="86400",
        FINSENTRY_ALLOWED_LATENESS_S="43200",
        FINSENTRY_MODEL_BACKEND="fp32",
        PYTHONPATH=str(ROOT),
        HF_HUB_OFFLINE="1",
        **extra,
    )
    return env


def backfill(
    tmp_path: Path, data: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "finsentry", "backfill", str(data), "--no-progress", *args]
    return subprocess.run(
        command, env=cli_env(tmp_path, **env), capture_output=True, text=True, timeout=600
    )


def dump(db: Path, *, ignore_wall_clock: bool = False) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, in key order."""
    store = Store(f"sqlite:///{db}")
    tables: dict[str, list[dict[str, Any]]] = {}
    try:
        with store.engine.connect() as conn:
            for table in metadata.sorted_tables:
                keys = [c for c in table.primary_key.columns] or list(table.columns)
                rows = [dict(r) for r in conn.execute(select(table).order_by(*keys)).mappings()]
                if ignore_wall_clock:
                    rows = [_computed(table.name, row) for row in rows]
                tables[table.name] = rows
    finally:
        store.close()
    return tables


def _computed(table: str, row: dict[str, Any]) -> dict[str, Any]:
    row = {k: v for k, v in row.items() if k not in WALL_CLOCK}
    if table == "job_state":
        row["value"] = {k: v for k, v in row["value"].items() if k != "started_at"}
    return row


@pytest.mark.integration
def test_a_second_run_changes_nothing(tmp_path: Path) -> None:
    data = guardian_slice(tmp_path / "march.csv", ("March 2020",))
    first = backfill(tmp_path, data, *HALF_MARCH)
    assert first.returncode == 0, first.stderr
    assert "backfill complete" in first.stdout
    before = dump(tmp_path / "store.db")
    assert len(before["posts"]) > 300 and len(before["signal_points"]) > 100
    assert all(row["is_backfill"] for row in before["posts"])
    assert all(row["is_backfill"] for row in before["alerts"])

    second = backfill(tmp_path, data, *HALF_MARCH)
    assert second.returncode == 0, second.stderr
    assert "already complete (checkpoint); nothing to do" in second.stdout
    assert dump(tmp_path / "store.db") == before  # not a row, not a timestamp changed

    again = backfill(tmp_path, data, *HALF_MARCH, "--restart")
    assert again.returncode == 0, again.stderr
    assert "backfill complete" in again.stdout
    assert dump(tmp_path / "store.db", ignore_wall_clock=True) == {
        name: [_computed(name, row) for row in rows] for name, rows in before.items()
    }


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


@pytest.mark.integration
def test_killed_run_resumes_to_the_same_store(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    data = guardian_slice(tmp_path / "march.csv", ("March 2020",))
    small_batches = {
        "FINSENTRY_BACKFILL_BATCH_SIZE": "16",
        "FINSENTRY_BACKFILL_CHECKPOINT_INTERVAL_S": "0",
        # A month of Guardian news is a short baseline: at the default false-alarm rate
        # (0.001) it raises no alert, and the alerts are part of what must match.
        "FINSENTRY_SPIKE_FALSE_ALARM_RATE": "0.05",
    }
    killed = tmp_path / "killed"
    killed.mkdir()
    command = [sys.executable, "-m", "finsentry", "backfill", str(data), "--no-progress"]
    process = subprocess.Popen(
        command,
        env=cli_env(killed, **small_batches),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    processes.append(process)
    wait_until(lambda: _position(killed / "store.db") >= 160, 300, "a few batches done")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    state = _job_state(killed / "store.db")
    assert state is not None and not state["completed"], "the kill should land mid-run"
    stopped_at = state["position"]

    resumed = backfill(killed, data, **small_batches)
    assert resumed.returncode == 0, resumed.stderr
    assert "backfill complete in" in resumed.stdout
    assert f"resumed after post {stopped_at}" in resumed.stdout

    calm = tmp_path / "uninterrupted"
    calm.mkdir()
    whole = backfill(calm, data, **small_batches)
    assert whole.returncode == 0, whole.stderr
    resumed_store = dump(killed / "store.db", ignore_wall_clock=True)
    assert resumed_store == dump(calm / "store.db", ignore_wall_clock=True)
    assert len(resumed_store["posts"]) > 700 and resumed_store["alerts"]


def _job_state(db: Path) -> dict[str, Any] | None:
    if not db.exists():
        return None
    store = Store(f"sqlite:///{db}", create=False)
    try:
        from finsentry.store import job_state

        with store.engine.connect() as conn:
            rows = conn.execute(select(job_state.c.value)).all()
    except OperationalError:  # the run has not created its tables yet
        return None
    finally:
        store.close()
    return rows[0][0] if rows else None


def _position(db: Path) -> int:
    state = _job_state(db)
    return int(state["position"]) if state else 0
