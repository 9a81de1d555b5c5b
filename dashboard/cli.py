"""``finsentry dashboard``: serve the analyst dashboard."""

from __future__ import annotations

import signal

import typer

from finsentry.config import ConfigError, load_settings


def dashboard(
    host: str | None = typer.Option(None, help="bind address (default: dashboard_host)"),
    port: int | None = typer.Option(None, help="port (default: dashboard_port)"),
) -> None:
    """Serve the Dash dashboard over the store (127.0.0.1:8050 unless configured)."""
    overrides = {
        k: v for k, v in {"dashboard_host": host, "dashboard_port": port}.items() if v is not None
    }
    try:
        settings = load_settings(**overrides)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    from dashboard.app import DashboardConfigError, check_access, serve

    def stop(*_: object) -> None:
        # werkzeug's serve_forever returns on KeyboardInterrupt; the store is closed after.
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        check_access(settings)
        store_url = settings.masked_dump()["effective_store_url"]
        typer.echo(
            f"finsentry dashboard on http://{settings.dashboard_host}:"
            f"{settings.dashboard_port} (store {store_url})"
        )
        serve(settings)
    except DashboardConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    except KeyboardInterrupt:
        pass  # raised before serving began
    typer.echo("dashboard stopped")
