"""``finsentry kafka ...``: the embedded broker's lifecycle and the topic set."""

from __future__ import annotations

import time

import typer
from rich.console import Console
from rich.table import Table

from finsentry.cli_settings import settings_or_exit
from finsentry.config import Settings
from finsentry.kafka_auth import client_options
from finsentry.localkafka import BrokerStatus, KafkaLauncherError, LocalKafka, broker_answers

kafka_app = typer.Typer(
    help="Run the embedded Apache Kafka broker and manage its topics.", no_args_is_help=True
)
console = Console()


def _external(settings: Settings) -> bool:
    if settings.embedded_kafka:
        return False
    ok = broker_answers(settings.bootstrap_servers, options=client_options(settings))
    state = "answers" if ok else "does NOT answer"
    console.print(
        f"FINSENTRY_KAFKA_BOOTSTRAP={settings.bootstrap_servers}: external cluster, "
        f"nothing to start or stop; it {state} a metadata request."
    )
    return True


def _launcher(settings: Settings) -> LocalKafka:
    try:
        return LocalKafka(settings)
    except KafkaLauncherError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc


def _print_status(status: BrokerStatus) -> None:
    table = Table(show_header=False, box=None)
    table.add_row("Kafka", status.version)
    table.add_row("running", f"yes (pid {status.pid})" if status.running else "no")
    table.add_row("ready", "yes" if status.ready else "no")
    table.add_row("bootstrap", status.bootstrap)
    table.add_row("data", str(status.data_dir))
    table.add_row("log", str(status.log_file))
    console.print(table)


@kafka_app.command()
def start() -> None:
    """Start the broker (resolving jars and formatting storage on first use) and wait for it."""
    settings = settings_or_exit()
    if _external(settings):
        return
    began = time.monotonic()
    try:
        status, started = _launcher(settings).start()
    except KafkaLauncherError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    if started:
        console.print(f"Kafka ready at {status.bootstrap} in {time.monotonic() - began:.1f}s")
    else:
        console.print(f"Kafka already running (pid {status.pid}); nothing to do")
    _print_status(status)


@kafka_app.command()
def stop() -> None:
    """Stop the broker by its PID and wait until it has exited."""
    settings = settings_or_exit()
    if _external(settings):
        return
    if _launcher(settings).stop():
        console.print("Kafka stopped")
    else:
        console.print("Kafka was not running")


@kafka_app.command()
def status() -> None:
    """Show whether the broker runs and answers; exit code 1 when it is not ready."""
    settings = settings_or_exit()
    if _external(settings):
        return
    current = _launcher(settings).status()
    _print_status(current)
    if not current.ready:
        raise typer.Exit(1)


@kafka_app.command()
def topics() -> None:
    """Create the topic set of DESIGN.md with the configured partition counts."""
    from kafka.errors import KafkaError

    from finsentry.topics import ensure_topics

    settings = settings_or_exit()
    try:
        states = ensure_topics(settings)
    except KafkaError as exc:
        console.print(f"[red]error:[/] Kafka at {settings.bootstrap_servers}: {exc!r}")
        raise typer.Exit(1) from exc
    table = Table("topic", "partitions", "state")
    for state in states:
        note = "created" if state.created else "exists"
        if state.partitions != state.wanted_partitions:
            note += f"; configured {state.wanted_partitions}, existing topics are not resized"
        table.add_row(state.name, str(state.partitions), note)
    console.print(table)
