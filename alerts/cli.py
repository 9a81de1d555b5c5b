"""``finsentry alerts run | test | history``: a thin shell over alerts.service and the store."""

from __future__ import annotations

import logging
import signal
import threading
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from alerts.errors import AlertsError, NotifyError, RoutingError
from alerts.grouping import Batch
from alerts.message import build_content
from alerts.routing import Channel, build_routing
from finsentry.cli_settings import settings_or_exit
from finsentry.schema import Alert, Evidence, alert_id

alerts_app = typer.Typer(help="Slack and e-mail alerts: the service, a test send, history.")


@alerts_app.command("run")
def run() -> None:
    """Consume the alerts topic and deliver by the routing rules until SIGINT/SIGTERM."""
    from alerts.service import run_service
    from finsentry.kafka_auth import KafkaAccessError

    settings = settings_or_exit()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        counters = run_service(settings, stop)
    except (AlertsError, KafkaAccessError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(
        f"stopped: consumed {counters.consumed}, invalid {counters.invalid}, "
        f"delivered {counters.delivered}, failed {counters.failed}"
    )


@alerts_app.command("test")
def test(
    channel: Annotated[Channel, typer.Option(help="Which configured channel to try.")],
    to: Annotated[
        list[str] | None,
        typer.Option(help="E-mail recipient (repeatable); default: every email_to of the routing."),
    ] = None,
) -> None:
    """Send one clearly marked test message through the real configured channel."""
    from alerts.routing import load_routing
    from alerts.secrets import resolve_secrets
    from alerts.service import build_notifiers

    settings = settings_or_exit()
    try:
        secrets = resolve_secrets(settings)
        notifier = build_notifiers(settings, secrets, {channel})[channel]
        recipients = list(to or [])
        if channel == "email" and not recipients and settings.alerts_routing_file:
            routing = load_routing(settings.alerts_routing_file)
            recipients = sorted({addr for r in routing.routes for addr in r.email_to})
        if channel == "email" and not recipients:
            raise RoutingError("no recipients: pass --to or set email_to in the routing file")
        entry = {"name": "test", "channels": [channel], "email_to": recipients, "group_wait": 0}
        route = build_routing({"routes": [entry]}).routes[0]
        batch = Batch(route, channel, ("market",), (sample_alert(),), sequence=1, group_total=1)
        note = notifier.send(
            build_content(batch, settings.alerts_dashboard_url, is_test=True), route
        )
        notifier.close()
    except (AlertsError, NotifyError) as exc:
        typer.echo(f"error: test message on {channel} not delivered: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"test message delivered on {channel}" + (f" ({note})" if note else ""))


def sample_alert(now: datetime | None = None) -> Alert:
    """A plausible alert for test sends; its evidence says it is a test."""
    end = (now or datetime.now(UTC)).replace(second=0, microsecond=0)
    start = end - timedelta(minutes=5)
    return Alert(
        id=alert_id("market", start),
        key="market",
        window_start=start,
        window_end=end,
        severity="warning",
        z=3.5,
        neg_share=0.61,
        mean_score=-0.32,
        count=24,
        baseline=0.22,
        evidence=(
            Evidence(id="test:1", title="finsentry test message: no action needed", score=-0.5),
        ),
        model_version="test",
    )


@alerts_app.command("history")
def history(
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="How many rows.")] = 50,
    status: Annotated[
        str | None, typer.Option(help="Only this status: pending, retrying, delivered, failed.")
    ] = None,
) -> None:
    """List recent deliveries, newest first, with attempts and the last error."""
    from rich.console import Console
    from rich.table import Table

    from finsentry.store import DELIVERY_STATUSES, Store

    if status is not None and status not in DELIVERY_STATUSES:
        typer.echo(f"error: --status must be one of {', '.join(DELIVERY_STATUSES)}", err=True)
        raise typer.Exit(2)
    store = Store(settings_or_exit().database_url)
    try:
        if status is None:
            rows = store.recent_deliveries(limit)
        else:
            rows = sorted(
                store.deliveries_with_status([status]), key=lambda r: r.updated_at, reverse=True
            )[:limit]
        keys = {row.alert_id: _key_of(store.get_alert(row.alert_id)) for row in rows}
    finally:
        store.close()
    table = Table(title=f"{len(rows)} most recent deliveries")
    for column in ("updated (UTC)", "alert", "key", "channel", "status", "attempts", "error"):
        table.add_column(column, overflow="fold")
    colours = {"delivered": "green", "failed": "red", "retrying": "yellow", "pending": "cyan"}
    for row in rows:
        table.add_row(
            row.updated_at.strftime("%Y-%m-%d %H:%M:%S"),
            row.alert_id,
            keys[row.alert_id],
            row.channel,
            f"[{colours[row.status]}]{row.status}[/]",
            str(row.attempts),
            row.error or "",
        )
    Console(width=200).print(table)


def _key_of(row: dict[str, Any] | None) -> str:
    return str(row["key"]) if row else "?"
