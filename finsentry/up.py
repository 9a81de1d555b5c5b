"""``finsentry up``: the whole product as one supervised unit on one machine.

The services and where they answer are one table (``services``), read both by ``up``, which
turns it into supervisor child specs, and by ``finsentry status``, which probes it. Settings
reach the children the way they reach any finsentry process (env, .env, finsentry.toml);
only what ``up`` decides itself (the demo profile, the alerts' deep-link target, a local
Slack stand-in) is laid over their environment as ``FINSENTRY_*`` variables.
"""

from __future__ import annotations

import io
import json
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from finsentry.config import Settings
from finsentry.health import http_ok
from finsentry.kafka_auth import client_options
from finsentry.localkafka import LocalKafka, broker_answers
from finsentry.runtime import pid_alive
from finsentry.supervisor import Backoff, ChildSpec, StartError, StatusRow, Supervisor
from finsentry.topics import ensure_topics

# Logs and pipes get wide lines; a terminal keeps its own width.
console = Console(width=None if sys.stdout.isatty() else 160)
PYTHON = (sys.executable, "-m", "finsentry")


@dataclass(frozen=True)
class Service:
    """A long-running part of the product: its command and where it answers."""

    name: str
    command: tuple[str, ...]
    where: str  # a URL, or host:port for Kafka
    health_url: str | None
    ready_url: str | None
    log_file: Path
    pid_file: Path
    skipped: str | None = None  # why it is not started (not configured, not installed)
    env: Mapping[str, str] = field(default_factory=dict)


def run_dir(settings: Settings) -> Path:
    return settings.data_dir / "run"


def status_file(settings: Settings) -> Path:
    return run_dir(settings) / "up.json"


def alerts_not_configured(settings: Settings) -> str | None:
    """Why the alerts service cannot run here, or None when it can."""
    from alerts.secrets import resolve_secrets

    if settings.alerts_routing_file is not None:
        return None
    if resolve_secrets(settings).slack_webhook_url is not None:
        return None
    return "not configured: set FINSENTRY_ALERTS_SLACK_WEBHOOK_URL or alerts_routing_file"


def _web_service(
    settings: Settings,
    name: str,
    command: tuple[str, ...],
    host: str,
    port: int,
    ready_path: str = "/ready",
    skipped: str | None = None,
) -> Service:
    url = f"http://{host}:{port}"
    return Service(
        name,
        (*PYTHON, *command),
        url,
        f"{url}/health",
        f"{url}{ready_path}",
        settings.data_dir / "logs" / f"{name}.log",
        run_dir(settings) / f"{name}.pid",
        skipped=skipped,
    )


def services(settings: Settings, *, alerts_skip: str | None = None) -> list[Service]:
    """The product's services in start order, for these settings."""
    table: list[Service] = []
    if settings.embedded_kafka:
        broker = LocalKafka(settings)
        where = settings.bootstrap_servers
        table.append(Service("kafka", (), where, None, None, broker.console_log, broker.pid_file))
    s = settings
    return [
        *table,
        _web_service(s, "worker", ("worker",), s.worker_web_host, s.worker_web_port),
        _web_service(
            s,
            "alerts",
            ("alerts", "run"),
            s.alerts_web_host,
            s.alerts_web_port,
            skipped=alerts_skip,
        ),
        _web_service(s, "dashboard", ("dashboard",), s.dashboard_host, s.dashboard_port),
        # The scheduler's /health is 503 until its jobs are scheduled: its readiness.
        _web_service(
            s,
            "scheduler",
            ("scheduler",),
            s.scheduler_web_host,
            s.scheduler_web_port,
            ready_path="/health",
        ),
    ]


def child_specs(settings: Settings, table: list[Service]) -> list[ChildSpec]:
    """Supervisor specs for the services that run; Kafka's readiness creates the topics."""
    specs: list[ChildSpec] = []
    for service in table:
        if service.skipped is not None:
            continue
        command: tuple[str, ...] | Callable[[], list[str]] = service.command
        ready: Callable[[], bool]
        live: Callable[[], bool] | None
        on_ready: Callable[[], None] | None = None
        grace = settings.up_stop_grace_s
        if service.name == "kafka":
            command = LocalKafka(settings).prepare
            bootstrap = settings.bootstrap_servers

            def ready(bootstrap: str = bootstrap) -> bool:
                return broker_answers(bootstrap, timeout_s=2.0, options=client_options(settings))

            def on_ready() -> None:
                ensure_topics(settings)

            grace = max(grace, 60.0)  # a broker flushes its logs on the way down
            live = None  # a loaded broker is slow to answer; its clients retry anyway
        else:
            assert service.ready_url is not None and service.health_url is not None
            ready_url, health_url = service.ready_url, service.health_url

            def ready(url: str = ready_url) -> bool:
                return http_ok(url, timeout_s=2.0)

            def live(url: str = health_url) -> bool:
                return http_ok(url, timeout_s=5.0)

        specs.append(
            ChildSpec(
                name=service.name,
                command=command,
                log_file=service.log_file,
                env=service.env,
                ready=ready,
                health_url=service.health_url,
                ready_url=service.ready_url,
                where=service.where,
                ready_timeout_s=settings.up_ready_timeout_s,
                restart="always",
                stop_grace_s=grace,
                pid_file=service.pid_file,
                on_ready=on_ready,
                live=live,
            )
        )
    return specs


def status_table(rows: list[StatusRow], skipped: list[Service], title: str) -> Table:
    table = Table(title=title)
    for column in ("service", "state", "pid", "restarts", "where", "log"):
        table.add_column(column, overflow="fold")
    colours = {"ready": "green", "done": "green", "starting": "yellow", "backoff": "yellow"}
    for row in rows:
        colour = colours.get(row.state, "red")
        table.add_row(
            row.name,
            f"[{colour}]{row.state}[/]",
            str(row.pid or "-"),
            str(row.restarts),
            row.where,
            row.log_file,
        )
    for service in skipped:
        table.add_row(service.name, "[dim]skipped[/]", "-", "-", service.skipped or "", "-")
    return table


def running_supervisor(settings: Settings) -> int | None:
    """PID of a ``finsentry up`` that already runs on this data dir, if any."""
    try:
        pid = int(json.loads(status_file(settings).read_text(encoding="utf-8"))["supervisor_pid"])
    except (OSError, ValueError, KeyError):
        return None
    return pid if pid_alive(pid) else None


def make_supervisor(
    settings: Settings, specs: list[ChildSpec], status: Path, skipped: list[Service]
) -> Supervisor:
    return Supervisor(
        specs,
        skipped={s.name: s.skipped or "" for s in skipped},
        backoff=Backoff(base_s=settings.up_backoff_base_s, max_s=settings.up_backoff_max_s),
        max_failures=settings.up_max_failures,
        stable_after_s=settings.up_stable_after_s,
        liveness_interval_s=settings.up_liveness_interval_s,
        liveness_failures=settings.up_liveness_failures,
        status_file=status,
        report=lambda line: console.print(
            f"[bold]up:[/] {escape(line)}", soft_wrap=True, emoji=False
        ),
    )


def stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def run_up(settings: Settings, *, demo: bool = False) -> int:
    """Start everything, supervise until SIGINT/SIGTERM, stop everything; the exit code."""
    from finsentry.demo import DemoRun

    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)  # a log file sees each report as it happens
    other = running_supervisor(settings)
    if other is not None:
        console.print(f"[red]finsentry up already runs on {settings.data_dir} (pid {other})[/]")
        return 2
    status = status_file(settings)
    stop = stop_on_signals()
    demo_run = DemoRun(settings, console) if demo else None
    child_settings = demo_run.settings if demo_run else settings
    extra_env: dict[str, str] = demo_run.env() if demo_run else {}
    if "alerts_dashboard_url" not in settings.model_fields_set:
        dashboard = f"http://{child_settings.dashboard_host}:{child_settings.dashboard_port}"
        extra_env["FINSENTRY_ALERTS_DASHBOARD_URL"] = dashboard
    alerts_skip = None if demo_run else alerts_not_configured(child_settings)
    table = [_with_env(s, extra_env) for s in services(child_settings, alerts_skip=alerts_skip)]
    broker_pid = LocalKafka(child_settings).pid() if child_settings.embedded_kafka else None
    if broker_pid is not None:
        reason = f"already running (pid {broker_pid}): used as is, not supervised"
        table = [replace(s, skipped=reason) if s.name == "kafka" else s for s in table]
    specs = child_specs(child_settings, table)
    if demo_run is not None:
        specs.append(demo_run.replay_spec())
    skipped = [s for s in table if s.skipped is not None]
    supervisor = make_supervisor(child_settings, specs, status, skipped)
    if not child_settings.embedded_kafka or broker_pid is not None:
        ensure_topics(child_settings)
    try:
        if not supervisor.start_all(stop):
            return 0
        console.print(status_table(supervisor.rows(), skipped, "finsentry up: running"))
        console.print("Ctrl-C (or SIGTERM) stops everything; `finsentry status` shows health.")
        while not stop.wait(0.5):
            supervisor.poll()
            if supervisor.gave_up is not None:
                return 1
            if demo_run is not None:
                demo_run.tick(supervisor)
        return 0
    except StartError as exc:
        console.print(f"[red]up: {exc}[/]")
        return 1
    finally:
        if demo_run is not None:
            demo_run.close()
        supervisor.stop_all()
        console.print(status_table(supervisor.rows(), skipped, "finsentry up: stopped"))


def _with_env(service: Service, env: Mapping[str, str]) -> Service:
    return replace(service, env={**service.env, **env})


def env_for(overrides: Mapping[str, Any]) -> dict[str, str]:
    """Settings overrides as the FINSENTRY_* variables a child process reads."""
    return {f"FINSENTRY_{name.upper()}": str(value) for name, value in overrides.items()}
