"""``finsentry status``: is each service alive and ready, where, and where its log is.

While ``finsentry up`` runs, its status file says what it started (including a demo's own
ports and logs); otherwise the services configured by the settings are probed, which also
covers services started one by one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from finsentry.config import Settings
from finsentry.health import http_ok
from finsentry.kafka_auth import client_options
from finsentry.localkafka import broker_answers
from finsentry.runtime import pid_alive
from finsentry.up import alerts_not_configured, running_supervisor, services, status_file


@dataclass(frozen=True)
class Probe:
    name: str
    pid: int | None
    live: bool
    ready: bool
    where: str
    log_file: str
    note: str = ""


def _alive(pid: int | None) -> int | None:
    return pid if pid is not None and pid_alive(pid) else None


def _probe(
    settings: Settings,
    name: str,
    pid: int | None,
    where: str,
    health: str | None,
    ready: str | None,
    log: str,
) -> Probe:
    if name == "kafka":
        answers = broker_answers(where, timeout_s=2.0, options=client_options(settings))
        return Probe(name, _alive(pid), answers, answers, where, log)
    live = health is not None and http_ok(health)
    is_ready = ready is not None and http_ok(ready)
    return Probe(name, _alive(pid), live, is_ready, where, log)


def _read_pid(path: os.PathLike[str]) -> int | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def probe_all(settings: Settings) -> tuple[list[Probe], str]:
    """Probes of what ``up`` runs, else of the configured services; and where they came from."""
    if running_supervisor(settings) is not None:
        body = json.loads(status_file(settings).read_text(encoding="utf-8"))
        rows = [
            _probe(
                settings,
                row["name"],
                row["pid"],
                row["where"],
                row["health_url"],
                row["ready_url"],
                row["log_file"],
            )
            for row in body["children"]
            if row["name"] != "replay"
        ]
        rows += [
            Probe(name, None, False, False, "-", "-", why)
            for name, why in body.get("skipped", {}).items()
        ]
        return rows, f"finsentry up (pid {body['supervisor_pid']})"
    probes = []
    alerts_skip = alerts_not_configured(settings)
    for service in services(settings, alerts_skip=alerts_skip):
        if service.skipped is not None:
            probes.append(
                Probe(service.name, None, False, False, service.where, "-", service.skipped)
            )
            continue
        probes.append(
            _probe(
                settings,
                service.name,
                _read_pid(service.pid_file),
                service.where,
                service.health_url,
                service.ready_url,
                str(service.log_file),
            )
        )
    return probes, "configured services (no finsentry up running)"


def show_status(settings: Settings, console: Console) -> int:
    """Print the table; 0 when every service that should run is live and ready, else 1."""
    probes, origin = probe_all(settings)
    table = Table(title=f"finsentry status: {origin}")
    for column in ("service", "pid", "live", "ready", "where", "log"):
        table.add_column(column, overflow="fold")

    def mark(ok: bool) -> str:
        return "[green]yes[/]" if ok else "[red]no[/]"

    for probe in probes:
        if probe.note:
            table.add_row(probe.name, "-", "[dim]skipped[/]", "-", probe.note, "-")
            continue
        table.add_row(
            probe.name,
            str(probe.pid or "-"),
            mark(probe.live),
            mark(probe.ready),
            probe.where,
            probe.log_file,
        )
    console.print(table)
    return 0 if all(p.live and p.ready for p in probes if not p.note) else 1
