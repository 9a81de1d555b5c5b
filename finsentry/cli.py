"""The ``finsentry`` command. Each group is a thin shell over its package."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from alerts.cli import alerts_app
from dashboard.cli import dashboard
from finsentry.cli_settings import settings_or_exit
from finsentry.kafka_cli import kafka_app
from ingest.cli import ingest_app
from models.cli import classify_command, evaluate_command, models_app, train_command
from models.retrain_cli import retrain_command, scheduler_command
from stream.backfill_cli import backfill
from stream.cli import worker

app = typer.Typer(
    help="finsentry: streaming financial sentiment monitor.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(kafka_app, name="kafka")
app.command("worker")(worker)
app.add_typer(alerts_app, name="alerts")
app.command("dashboard")(dashboard)
app.add_typer(ingest_app, name="ingest")
app.add_typer(models_app, name="models")
app.command("train")(train_command)
app.command("evaluate")(evaluate_command)
app.command("classify")(classify_command)
app.command("retrain")(retrain_command)
app.command("scheduler")(scheduler_command)
app.command("backfill")(backfill)
signals_app = typer.Typer(help="What the stored signals say.", no_args_is_help=True)
app.add_typer(signals_app, name="signals")


@signals_app.command("study")
def signals_study(
    prices: Annotated[
        Path, typer.Option("--prices", help="CSV of daily closes: ticker,date,close.")
    ],
    drop: Annotated[
        float, typer.Option("--drop", min=0.0, help="A large down move: return <= -drop.")
    ] = 0.03,
    within_days: Annotated[int, typer.Option("--within-days", min=0, help="Days either side.")] = 1,
) -> None:
    """Event study: spike days against large price falls, and score against return."""
    from finsentry.store import Store
    from finsentry.study import StudyError, daily_returns, daily_signals, read_prices, study

    try:
        closes = read_prices(prices)
    except StudyError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    store = Store(settings_or_exit().database_url)
    try:
        rows = [p for ticker in closes for p in store.signal_series(f"ticker:{ticker}")]
    finally:
        store.close()
    result = study(daily_returns(closes), daily_signals(rows), drop=drop, within_days=within_days)

    def share(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1%}"

    lift = "n/a" if result.lift is None else f"{result.lift:.2f}x"
    rho = "n/a" if result.spearman is None else f"{result.spearman:+.3f}"
    typer.echo(
        f"spike days within {within_days} day(s) of a fall of {drop:.0%} or more: "
        f"{result.spike_days_near_drop} of {result.spike_days} ({share(result.spike_share)})\n"
        f"all days with posts: {result.post_days_near_drop} of {result.post_days} "
        f"({share(result.base_share)})\n"
        f"lift over chance: {lift}\n"
        f"rank correlation of daily mean score with daily return: {rho} "
        f"over {result.correlated_days} ticker-days"
    )


@app.command("config")
def show_config() -> None:
    """Print the effective settings (env, finsentry.toml, defaults) with secrets masked."""
    settings = settings_or_exit()
    typer.echo(json.dumps(settings.masked_dump(), indent=2, default=str))


@app.command("up")
def up(
    demo: bool = typer.Option(
        False, "--demo", help="Also replay bundled dated news, sped up: alerts within minutes."
    ),
) -> None:
    """Start, supervise and stop as one unit: Kafka, worker, alerts, dashboard, scheduler."""
    from finsentry.up import run_up

    raise typer.Exit(run_up(settings_or_exit(), demo=demo))


@app.command("status")
def status() -> None:
    """Health of each service (live, ready), where it answers and its log (exit 1 if any is not)."""
    from finsentry.status import show_status
    from finsentry.up import console

    raise typer.Exit(show_status(settings_or_exit(), console))
