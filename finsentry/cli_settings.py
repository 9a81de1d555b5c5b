"""Settings for a command: loaded once, or a clear message and exit code 2."""

from __future__ import annotations

from typing import Any

import typer

from finsentry.config import ConfigError, Settings, load_settings


def settings_or_exit(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
