"""Start, watch and stop a set of child processes as one unit (``finsentry up``).

Each child is a ``ChildSpec``: command, environment, readiness check, health URL, log file.
Children start in order, each awaited by its readiness check before the next one starts
(the worker needs Kafka, the dashboard needs the store the worker creates). A child that
exits after it was ready is restarted with exponential backoff, reset once it has run
``stable_after_s``; one that keeps failing makes the supervisor give up. A ready child with a
liveness probe that fails ``liveness_failures`` times in a row (asked every
``liveness_interval_s``) is stopped and restarted the same way: it runs, but is stuck.
Stopping goes in reverse order, by PID: SIGTERM, then SIGKILL of its process group after the
grace period.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

RestartPolicy = Literal["always", "on-failure", "never"]
State = Literal["pending", "starting", "ready", "backoff", "done", "failed", "stopped"]
Report = Callable[[str], None]


class StartError(RuntimeError):
    """A child did not become ready on first start; the message names it and its log."""


@dataclass(frozen=True)
class Backoff:
    """Delay before the n-th consecutive restart: base, base*factor, ... capped at max."""

    base_s: float = 1.0
    factor: float = 2.0
    max_s: float = 30.0

    def delay(self, failures: int) -> float:
        if failures < 1:
            return 0.0
        return float(min(self.max_s, self.base_s * self.factor ** (failures - 1)))


def _always_ready() -> bool:
    return True


@dataclass(frozen=True)
class ChildSpec:
    """One supervised process. ``env`` is laid over the supervisor's own environment."""

    name: str
    # A callable is called at each start (the broker renders its config and checks ports).
    command: Sequence[str] | Callable[[], Sequence[str]]
    log_file: Path
    env: Mapping[str, str] = field(default_factory=dict)
    ready: Callable[[], bool] = _always_ready
    health_url: str | None = None
    ready_url: str | None = None
    where: str = ""
    ready_timeout_s: float = 300.0
    restart: RestartPolicy = "always"
    stop_grace_s: float = 30.0
    pid_file: Path | None = None
    on_ready: Callable[[], None] | None = None
    live: Callable[[], bool] | None = None  # liveness probe, asked once the child is ready


@dataclass
class Child:
    spec: ChildSpec
    state: State = "pending"
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    ready_at: float | None = None
    restarts: int = 0
    failures: int = 0  # consecutive exits that count against the restart limit
    next_start_at: float = 0.0
    last_exit: int | None = None
    live_failures: int = 0  # consecutive failed liveness probes
    next_live_check_at: float = 0.0

    @property
    def pid(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None
        return self.process.pid


@dataclass(frozen=True)
class StatusRow:
    name: str
    state: str
    pid: int | None
    restarts: int
    where: str
    log_file: str
    health_url: str | None = None
    ready_url: str | None = None


class Supervisor:
    """Owns the children; ``poll`` is one supervision step, driven by the caller's loop."""

    def __init__(
        self,
        specs: Sequence[ChildSpec],
        *,
        backoff: Backoff | None = None,
        max_failures: int = 5,
        stable_after_s: float = 60.0,
        liveness_interval_s: float = 15.0,
        liveness_failures: int = 3,
        status_file: Path | None = None,
        skipped: Mapping[str, str] | None = None,
        report: Report = print,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        names = [spec.name for spec in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"child names must be unique, got {names}")
        self.children = [Child(spec) for spec in specs]
        self.backoff = backoff or Backoff()
        self.max_failures = max_failures
        self.stable_after_s = stable_after_s
        self.liveness_interval_s = liveness_interval_s
        self.liveness_failures = liveness_failures
        self.status_file = status_file
        self.skipped = dict(skipped or {})  # services not started, and why (status file only)
        self.report = report
        self.clock = clock
        self.gave_up: str | None = None

    def child(self, name: str) -> Child:
        for child in self.children:
            if child.spec.name == name:
                return child
        raise KeyError(name)

    # starting ---------------------------------------------------------------------------
    def start_all(self, stop: threading.Event) -> bool:
        """Start every child in order, each until ready; False if ``stop`` was set first.

        Raises StartError when a child exits or times out before its first readiness.
        """
        for child in self.children:
            if stop.is_set():
                return False
            self._spawn(child)
            deadline = self.clock() + child.spec.ready_timeout_s
            while not self._check_ready(child):
                code = child.process.poll() if child.process else None
                if code is not None:
                    self._exited(child, code)
                    raise StartError(
                        f"{child.spec.name} exited with code {code} before it was ready; "
                        f"last lines of {child.spec.log_file}:\n{log_tail(child.spec.log_file)}"
                    )
                if self.clock() > deadline:
                    raise StartError(
                        f"{child.spec.name} was not ready within {child.spec.ready_timeout_s:g}s;"
                        f" last lines of {child.spec.log_file}:\n{log_tail(child.spec.log_file)}"
                    )
                if stop.wait(0.2):
                    return False
        return True

    def _spawn(self, child: Child) -> None:
        spec = child.spec
        command = list(spec.command() if callable(spec.command) else spec.command)
        spec.log_file.parent.mkdir(parents=True, exist_ok=True)
        with spec.log_file.open("ab") as log:
            child.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **spec.env},
                # Its own process group: a terminal's Ctrl-C reaches the supervisor only,
                # which then stops the children in order.
                start_new_session=True,
            )
        if spec.pid_file is not None:
            write_atomically(spec.pid_file, str(child.process.pid))
        child.state = "starting"
        child.started_at = self.clock()
        child.ready_at = None
        self._write_status()

    def _check_ready(self, child: Child) -> bool:
        if child.state == "ready":
            return True
        if child.process is None or child.process.poll() is not None:
            return False
        try:
            ready = child.spec.ready()
        except Exception:  # a probe that cannot get an answer yet means "not ready"
            ready = False
        if not ready:
            return False
        if child.spec.on_ready is not None:
            try:
                child.spec.on_ready()
            except Exception as exc:  # e.g. topics not created yet: try again next check
                self.report(f"{child.spec.name} answers, but its start-up step failed: {exc!r}")
                return False
        child.state = "ready"
        child.ready_at = self.clock()
        child.live_failures = 0
        child.next_live_check_at = child.ready_at + self.liveness_interval_s
        self._write_status()
        return True

    # supervising ------------------------------------------------------------------------
    def poll(self) -> None:
        """One step: collect exits, restart what is due, promote what became ready."""
        now = self.clock()
        for child in self.children:
            if child.state in ("starting", "ready") and child.process is not None:
                code = child.process.poll()
                if code is not None:
                    self._exited(child, code)
                    continue
                if child.state == "starting":
                    if self._check_ready(child):
                        self.report(f"{child.spec.name} is ready again (pid {child.pid})")
                    elif now - child.started_at > child.spec.ready_timeout_s:
                        self.report(
                            f"{child.spec.name} not ready within "
                            f"{child.spec.ready_timeout_s:g}s; stopping it"
                        )
                        self._terminate(child)
                        self._exited(child, child.process.returncode)
                    continue
                if child.ready_at is not None and now - child.ready_at >= self.stable_after_s:
                    child.failures = 0
                if not self._live(child, now):
                    self.report(
                        f"{child.spec.name} failed its health check {child.live_failures} "
                        "times in a row; stopping it"
                    )
                    self._terminate(child)
                    self._exited(child, child.process.returncode)
            elif child.state == "backoff" and now >= child.next_start_at:
                child.restarts += 1
                try:
                    self._spawn(child)
                except Exception as exc:  # e.g. a port taken meanwhile: another failure
                    self.report(f"{child.spec.name} could not be started: {exc}")
                    self._exited(child, None)

    def _live(self, child: Child, now: float) -> bool:
        """False once the child's liveness probe has failed too often in a row."""
        if child.spec.live is None or now < child.next_live_check_at:
            return True
        child.next_live_check_at = now + self.liveness_interval_s
        try:
            alive = child.spec.live()
        except Exception:  # a probe that gets no answer counts as a failure
            alive = False
        child.live_failures = 0 if alive else child.live_failures + 1
        return child.live_failures < self.liveness_failures

    def _exited(self, child: Child, code: int | None) -> None:
        spec = child.spec
        child.last_exit = code
        if spec.pid_file is not None:
            spec.pid_file.unlink(missing_ok=True)
        if code == 0 and spec.restart != "always":
            child.state = "done"
            self.report(f"{spec.name} finished")
            self._write_status()
            return
        if spec.restart == "never":
            child.state = "failed"
            self.report(f"{spec.name} exited with code {code}; not restarted (policy never)")
            self._write_status()
            return
        child.failures += 1
        if child.failures > self.max_failures:
            child.state = "failed"
            self.gave_up = (
                f"{spec.name} exited {child.failures} times in a row (last code {code}); "
                f"giving up. Last lines of {spec.log_file}:\n{log_tail(spec.log_file)}"
            )
            self.report(self.gave_up)
            self._write_status()
            return
        delay = self.backoff.delay(child.failures)
        child.state = "backoff"
        child.next_start_at = self.clock() + delay
        self.report(
            f"{spec.name} exited with code {code}; restarting in {delay:.1f}s "
            f"(failure {child.failures} of at most {self.max_failures}); log {spec.log_file}"
        )
        self._write_status()

    # stopping ---------------------------------------------------------------------------
    def stop_all(self) -> None:
        """Stop children in reverse start order, each by its PID."""
        for child in reversed(self.children):
            if child.process is not None and child.process.poll() is None:
                self.report(f"stopping {child.spec.name} (pid {child.process.pid})")
                self._terminate(child)
                self.report(f"{child.spec.name} stopped (exit {child.process.returncode})")
            if child.spec.pid_file is not None:
                child.spec.pid_file.unlink(missing_ok=True)
            if child.state not in ("done", "failed", "pending"):
                child.state = "stopped"
        if self.status_file is not None:
            self.status_file.unlink(missing_ok=True)

    def _terminate(self, child: Child) -> None:
        process = child.process
        assert process is not None
        try:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=child.spec.stop_grace_s)
        except subprocess.TimeoutExpired:
            self.report(
                f"{child.spec.name} did not stop within {child.spec.stop_grace_s:g}s: SIGKILL"
            )
        _kill_group(process.pid)
        process.wait()

    # status -----------------------------------------------------------------------------
    def rows(self) -> list[StatusRow]:
        return [
            StatusRow(
                name=c.spec.name,
                state=c.state,
                pid=c.pid,
                restarts=c.restarts,
                where=c.spec.where,
                log_file=str(c.spec.log_file),
                health_url=c.spec.health_url,
                ready_url=c.spec.ready_url,
            )
            for c in self.children
        ]

    def _write_status(self) -> None:
        if self.status_file is None:
            return
        body = {
            "supervisor_pid": os.getpid(),
            "children": [row.__dict__ for row in self.rows()],
            "skipped": self.skipped,
        }
        write_atomically(self.status_file, json.dumps(body, indent=2))


def _kill_group(pid: int) -> None:
    """Whatever is left of the child's process group (the child itself, or anything it
    spawned) is killed; the group id is the child's PID (start_new_session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def write_atomically(path: Path, text: str) -> None:
    """Write to a temporary file and rename it over ``path``: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def log_tail(path: Path, lines: int = 20) -> str:
    if not path.is_file():
        return "(no log yet)"
    with path.open("rb") as handle:
        handle.seek(max(0, path.stat().st_size - 64_000))
        text = handle.read().decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])
