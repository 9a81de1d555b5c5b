"""The ``finsentry`` command. Each group is a thin shell over its package."""

from __future__ import annotations

import json

import typer

from finsentry.config import ConfigError, get_settings
from finsentry.kafka_cli import kafka_app
from models.cli import classify_command, evaluate_command, models_app, train_command

app = typer.Typer(
    help="finsentry: streaming financial sentiment monitor.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(kafka_app, name="kafka")
app.add_typer(models_app, name="models")
app.command("train")(train_command)
app.command("evaluate")(evaluate_command)
app.command("classify")(classify_command)


@app.command("config")
def show_config() -> None:
    """Print the effective settings (env, finsentry.toml, defaults) with secrets masked."""
    try:
        settings = get_settings()
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(json.dumps(settings.masked_dump(), indent=2, default=str))
