"""The ``finsentry`` command. Each group is a thin shell over its package."""

from __future__ import annotations

import json

import typer

from alerts.cli import alerts_app
from dashboard.cli import dashboard
from finsentry.cli_settings import settings_or_exit
from finsentry.kafka_cli import kafka_app
from ingest.cli import ingest_app
from models.cli import classify_command, evaluate_command, models_app, train_command
from models.retrain_cli import retrain_command, scheduler_command
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
