"""``finsentry worker``: the Faust stream worker."""

from __future__ import annotations

import gc
import logging

import typer


def worker(
    loglevel: str = typer.Option("info", help="crit, error, warn, info or debug"),
) -> None:
    """Run the stream worker until SIGTERM or Ctrl-C (both stop it cleanly)."""
    import faust

    from finsentry.cli_settings import settings_or_exit
    from finsentry.kafka_auth import KafkaAccessError, stop_if_refused
    from finsentry.store import Store
    from models.engine import load_engine
    from models.registry import registered_dir
    from stream.agents import WorkerContext, register_agents
    from stream.app import create_app, declare_tables, declare_topics
    from stream.metrics import StreamMetrics
    from stream.sink import StoreSink

    settings = settings_or_exit()
    try:
        stop_if_refused(settings, logging.getLogger("stream"))
    except KafkaAccessError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    metrics = StreamMetrics()
    app = create_app(settings)
    topics = declare_topics(app, settings)
    tables = declare_tables(app, settings)
    context = WorkerContext(
        settings=settings,
        engine=load_engine(settings),
        load_engine=lambda update: load_engine(settings, registered_dir(settings, update.version)),
        sink=StoreSink(Store(settings.database_url), metrics),
        metrics=metrics,
    )
    register_agents(app, topics, tables, context)
    # What is loaded by now (torch, transformers, ONNX Runtime, Faust, the model: ~590,000
    # objects) lives as long as the worker, yet every full collection walked it: ~460 ms
    # holding the GIL, about every 7 s under load (bench/stream.py). Frozen, ~25 ms. Frozen
    # objects are still freed when unreferenced; only cycles among them are never collected.
    gc.collect()
    gc.freeze()
    faust.Worker(app, loglevel=loglevel.upper()).execute_from_commandline()
