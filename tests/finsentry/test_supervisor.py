"""The supervisor with plain child processes (``python -c`` sleepers): start order and
readiness, restart with backoff, the restart limit, ordered stop, SIGKILL after the grace."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path

import pytest
from rich.console import Console

from finsentry.supervisor import Backoff, ChildSpec, StartError, Supervisor
from finsentry.up import Service, status_table
from tests.support import process_alive, wait_until

FAST = Backoff(base_s=0.05, factor=2.0, max_s=0.2)


def sleeper(
    tmp: Path, name: str, *, before: str = "", on_term: str = "raise SystemExit(0)"
) -> list[str]:
    """A child that runs ``before``, marks itself started, then sleeps until SIGTERM."""
    code = f"""
import os, signal, sys, time
from pathlib import Path
tmp = Path({str(tmp)!r})
{before}
def on_term(*_):
    with open(tmp / "stopped", "a") as f:
        f.write({name!r} + "\\n")
    {on_term}
signal.signal(signal.SIGTERM, on_term)
(tmp / ({name!r} + ".started")).write_text(str(os.getpid()))
while True:
    time.sleep(0.05)
"""
    return [sys.executable, "-c", code]


def started(tmp: Path, name: str) -> bool:
    return (tmp / f"{name}.started").is_file()


def spec(tmp: Path, name: str, command: list[str], **kwargs: object) -> ChildSpec:
    values: dict[str, object] = {
        "ready": lambda: started(tmp, name),
        "ready_timeout_s": 30.0,
        "stop_grace_s": 10.0,
        "pid_file": tmp / "run" / f"{name}.pid",
        "where": f"where-{name}",
    }
    values.update(kwargs)
    return ChildSpec(name=name, command=command, log_file=tmp / "logs" / f"{name}.log", **values)  # type: ignore[arg-type]


@pytest.fixture
def supervised(tmp_path: Path):
    made: list[Supervisor] = []

    def make(specs: list[ChildSpec], **kwargs: object) -> tuple[Supervisor, list[str]]:
        lines: list[str] = []
        values: dict[str, object] = {"backoff": FAST, "report": lines.append}
        values.update(kwargs)
        supervisor = Supervisor(specs, **values)  # type: ignore[arg-type]
        made.append(supervisor)
        return supervisor, lines

    yield make
    for supervisor in made:
        supervisor.stop_all()


@pytest.mark.unit
def test_backoff_doubles_up_to_its_cap() -> None:
    backoff = Backoff(base_s=1.0, factor=2.0, max_s=10.0)
    assert [backoff.delay(n) for n in range(0, 7)] == [0.0, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


@pytest.mark.unit
def test_child_names_must_be_unique(tmp_path: Path) -> None:
    command = sleeper(tmp_path, "a")
    with pytest.raises(ValueError, match="unique"):
        Supervisor([spec(tmp_path, "a", command), spec(tmp_path, "a", command)])


@pytest.mark.unit
def test_status_table_names_every_service_where_and_log(tmp_path: Path) -> None:
    from finsentry.supervisor import StatusRow

    rows = [StatusRow("worker", "ready", 123, 2, "http://127.0.0.1:1", "/logs/worker.log")]
    skipped = [
        Service("scheduler", (), "-", None, None, tmp_path, tmp_path, skipped="not installed")
    ]
    console = Console(record=True, width=200)
    console.print(status_table(rows, skipped, "t"))
    text = console.export_text()
    worker_line = next(line for line in text.splitlines() if "worker" in line)
    for cell in ("ready", "123", "2", "http://127.0.0.1:1", "/logs/worker.log"):
        assert cell in worker_line
    assert "skipped" in text and "not installed" in text


@pytest.mark.integration
def test_children_start_in_order_each_after_the_previous_is_ready(
    tmp_path: Path, supervised
) -> None:
    # b refuses to start unless a is ready: a supervisor that did not wait would fail here.
    slow_a = sleeper(tmp_path, "a", before="time.sleep(0.5)")
    needs_a = sleeper(
        tmp_path, "b", before="sys.exit(3) if not (tmp / 'a.started').exists() else None"
    )
    supervisor, _ = supervised([spec(tmp_path, "a", slow_a), spec(tmp_path, "b", needs_a)])
    assert supervisor.start_all(threading.Event())
    assert [row.state for row in supervisor.rows()] == ["ready", "ready"]
    for row in supervisor.rows():
        assert row.pid is not None and process_alive(row.pid)
        assert (tmp_path / "run" / f"{row.name}.pid").read_text() == str(row.pid)


@pytest.mark.integration
def test_a_child_that_exits_before_ready_fails_the_start_with_its_log(
    tmp_path: Path, supervised
) -> None:
    command = [sys.executable, "-c", "print('port 1234 is taken'); raise SystemExit(4)"]
    supervisor, _ = supervised([spec(tmp_path, "x", command, ready=lambda: False)])
    with pytest.raises(StartError, match=r"x exited with code 4 before it was ready(.|\n)*taken"):
        supervisor.start_all(threading.Event())


@pytest.mark.integration
def test_a_child_never_ready_fails_the_start_after_its_deadline(tmp_path: Path, supervised) -> None:
    command = sleeper(tmp_path, "x")
    supervisor, _ = supervised(
        [spec(tmp_path, "x", command, ready=lambda: False, ready_timeout_s=0.5)]
    )
    with pytest.raises(StartError, match=r"x was not ready within 0\.5s"):
        supervisor.start_all(threading.Event())


@pytest.mark.integration
def test_a_crashed_child_is_restarted_with_backoff_and_reported(tmp_path: Path, supervised) -> None:
    supervisor, lines = supervised([spec(tmp_path, "w", sleeper(tmp_path, "w"))])
    assert supervisor.start_all(threading.Event())
    first = supervisor.child("w").pid
    assert first is not None
    (tmp_path / "w.started").unlink()
    os.kill(first, signal.SIGKILL)

    def restarted() -> bool:
        supervisor.poll()
        child = supervisor.child("w")
        return child.restarts == 1 and child.state == "ready"

    wait_until(restarted, 30, "w restarted and ready again")
    child = supervisor.child("w")
    assert child.restarts == 1 and child.pid not in (None, first)
    assert child.last_exit == -signal.SIGKILL
    assert any(
        "w exited with code -9; restarting in 0.1s (failure 1 of at most 5)" in line
        for line in lines
    ), lines
    assert any("w is ready again" in line for line in lines)


@pytest.mark.integration
def test_a_child_that_fails_its_liveness_probe_is_restarted(tmp_path: Path, supervised) -> None:
    """A child can run and still be stuck: three failed probes in a row restart it."""
    answers = iter([True, False, False, True, False, False, False])  # then alive for good
    probes: list[bool] = []

    def live() -> bool:
        probes.append(next(answers, True))
        return probes[-1]

    child_spec = spec(tmp_path, "w", sleeper(tmp_path, "w"), live=live)
    supervisor, lines = supervised([child_spec], liveness_interval_s=0.0, liveness_failures=3)
    assert supervisor.start_all(threading.Event())
    first = supervisor.child("w").pid
    (tmp_path / "w.started").unlink()

    def restarted() -> bool:
        supervisor.poll()
        child = supervisor.child("w")
        return child.restarts == 1 and child.state == "ready"

    wait_until(restarted, 30, "w restarted after three failed probes")
    assert probes[:7] == [True, False, False, True, False, False, False]
    assert supervisor.child("w").pid not in (None, first)
    assert "w failed its health check 3 times in a row; stopping it" in lines
    assert (tmp_path / "stopped").read_text() == "w\n"  # asked to stop (SIGTERM) first


@pytest.mark.integration
def test_a_child_that_keeps_crashing_makes_the_supervisor_give_up(
    tmp_path: Path, supervised
) -> None:
    flaky = [sys.executable, "-c", "import time; time.sleep(0.3); raise SystemExit(7)"]
    supervisor, _ = supervised([spec(tmp_path, "f", flaky, ready=lambda: True)], max_failures=2)
    assert supervisor.start_all(threading.Event())

    def gave_up() -> bool:
        supervisor.poll()
        return supervisor.gave_up is not None

    wait_until(gave_up, 30, "the supervisor to give up on f")
    child = supervisor.child("f")
    assert child.state == "failed" and child.restarts == 2 and child.last_exit == 7
    assert "f exited 3 times in a row (last code 7); giving up" in (supervisor.gave_up or "")


@pytest.mark.integration
def test_a_run_that_stays_up_resets_the_failure_count(tmp_path: Path, supervised) -> None:
    supervisor, _ = supervised([spec(tmp_path, "w", sleeper(tmp_path, "w"))], stable_after_s=0.2)
    assert supervisor.start_all(threading.Event())
    child = supervisor.child("w")
    for n in range(1, 4):
        pid = child.pid
        assert pid is not None
        (tmp_path / "w.started").unlink()
        os.kill(pid, signal.SIGKILL)
        wait_until(
            lambda n=n: (supervisor.poll(), child.restarts == n and child.state == "ready")[1],
            30,
            "restarted",
        )
        assert child.failures == 1
        wait_until(lambda: (supervisor.poll(), child.failures == 0)[1], 30, "counted stable")
    assert child.restarts == 3


@pytest.mark.integration
def test_a_one_shot_child_that_succeeds_is_done_not_restarted(tmp_path: Path, supervised) -> None:
    once = [sys.executable, "-c", "import time; time.sleep(0.3)"]
    supervisor, lines = supervised(
        [spec(tmp_path, "once", once, ready=lambda: True, restart="on-failure")]
    )
    assert supervisor.start_all(threading.Event())
    wait_until(lambda: (supervisor.poll(), supervisor.child("once").state == "done")[1], 30, "done")
    assert supervisor.child("once").restarts == 0
    assert "once finished" in lines


@pytest.mark.integration
def test_stop_goes_in_reverse_order_and_kills_what_ignores_sigterm(
    tmp_path: Path, supervised
) -> None:
    stubborn = sleeper(
        tmp_path,
        "c",
        # Ignores SIGTERM after noting it, and leaves a grandchild in its process group.
        before=(
            "import subprocess; g = subprocess.Popen([sys.executable, '-c', "
            "'import time; time.sleep(120)']); (tmp / 'grandchild').write_text(str(g.pid))"
        ),
        on_term="pass",
    )
    specs = [
        spec(tmp_path, "a", sleeper(tmp_path, "a")),
        spec(tmp_path, "b", sleeper(tmp_path, "b")),
        spec(tmp_path, "c", stubborn, stop_grace_s=0.5),
    ]
    status = tmp_path / "run" / "up.json"
    supervisor, lines = supervised(specs, status_file=status)
    assert supervisor.start_all(threading.Event())
    body = json.loads(status.read_text())
    assert [c["name"] for c in body["children"]] == ["a", "b", "c"]
    assert body["supervisor_pid"] == os.getpid()
    pids = [row.pid for row in supervisor.rows()]
    grandchild = int((tmp_path / "grandchild").read_text())

    supervisor.stop_all()

    assert (tmp_path / "stopped").read_text().split() == ["c", "b", "a"]
    assert "c did not stop within 0.5s: SIGKILL" in lines
    for pid in [*pids, grandchild]:
        assert pid is not None and not process_alive(pid)
    assert [row.state for row in supervisor.rows()] == ["stopped"] * 3
    assert not status.exists()
    assert not list((tmp_path / "run").glob("*.pid"))


@pytest.mark.integration
def test_a_stop_during_start_up_returns_without_starting_the_rest(
    tmp_path: Path, supervised
) -> None:
    stop = threading.Event()
    stop.set()
    supervisor, _ = supervised([spec(tmp_path, "a", sleeper(tmp_path, "a"))])
    assert supervisor.start_all(stop) is False
    assert supervisor.child("a").process is None


@pytest.mark.integration
def test_a_failing_start_up_step_is_reported_and_retried(tmp_path: Path, supervised) -> None:
    calls: list[int] = []

    def create_topics() -> None:
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("broker not accepting admin requests yet")

    supervisor, lines = supervised(
        [spec(tmp_path, "k", sleeper(tmp_path, "k"), on_ready=create_topics)]
    )
    assert supervisor.start_all(threading.Event())
    assert len(calls) == 3 and supervisor.child("k").state == "ready"
    assert sum("start-up step failed" in line for line in lines) == 2
