"""``finsentry backfill PATH...``: historical files through the same dedup, model, windows
and spikes as the stream, into the store (or, ``--via-kafka``, into the pipeline)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from ingest.cli import (
    KindOption,
    MapOption,
    PresetOption,
    RejectsOption,
    RejectsWriter,
    SourceOption,
    TimeFormatOption,
    TzOption,
    command_settings,
    mapping_options,
    require_kafka,
    stop_on_signals,
)

if TYPE_CHECKING:
    from finsentry.config import Settings
    from finsentry.schema import Alert
    from ingest.replay import Rejection
    from stream.backfill_input import InputFile


def backfill(
    paths: Annotated[
        list[Path], typer.Argument(help="Files or directories of .csv, .jsonl, .parquet")
    ],
    from_: Annotated[
        str | None,
        typer.Option("--from", help="First day or time (YYYY-MM-DD or ISO 8601; UTC default)"),
    ] = None,
    to: Annotated[
        str | None,
        typer.Option("--to", help="Last day (included) or a time (excluded)"),
    ] = None,
    notify: Annotated[
        bool,
        typer.Option(help="Publish the alerts found to the alerts topic, for delivery"),
    ] = False,
    via_kafka: Annotated[
        bool,
        typer.Option("--via-kafka", help="Publish the posts to the posts topic for the workers"),
    ] = False,
    restart: Annotated[bool, typer.Option(help="Ignore the checkpoint")] = False,
    preset: PresetOption = None,
    map_: MapOption = None,
    time_format: TimeFormatOption = None,
    tz: TzOption = "UTC",
    source: SourceOption = None,
    kind: KindOption = "news",
    rejects: RejectsOption = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars")] = True,
) -> None:
    """Backfill dated files in event-time order; resumes from its checkpoint."""
    from finsentry.store import Store
    from ingest.tickers import default_extractor
    from stream.backfill_input import BackfillError, TimeRange, expand_paths, plan_inputs
    from stream.backfill_job import (
        BackfillSummary,
        BackfillWriteError,
        publish_backfill,
        run_backfill,
    )

    settings = command_settings()
    options = mapping_options(preset, map_, time_format, tz, source, kind)
    if notify and via_kafka:
        _fail("--notify and --via-kafka exclude each other: via Kafka the stream workers raise "
              "the alerts and the alerts service sends them")  # fmt: skip
    if notify or via_kafka:
        require_kafka(settings)
    try:
        time_range = TimeRange.parse(from_, to)
        files, skipped = expand_paths(paths)
        for path in skipped:
            typer.echo(f"skipping {path}: not .csv, .jsonl or .parquet", err=True)
        inputs = plan_inputs(files, options)
    except BackfillError as exc:
        _fail(str(exc))
    store = Store(settings.database_url)
    stop = stop_on_signals()
    reject_file = RejectsWriter(rejects)

    def on_reject(item: InputFile, rejection: Rejection) -> None:
        reject_file.for_file(item.path)(rejection)

    summary: BackfillSummary
    try:
        if via_kafka:
            from ingest.producer import KafkaPostSink
            from ingest.sink import PublishError

            sink = KafkaPostSink(settings, client_id="finsentry-backfill")
            try:
                summary = publish_backfill(
                    inputs,
                    time_range,
                    settings=settings,
                    store=store,
                    sink=sink,
                    extractor=default_extractor(),
                    restart=restart,
                    stop=stop,
                    progress=progress,
                    on_reject=on_reject,
                )
            except PublishError as exc:
                typer.echo(f"stopped: {exc}; the checkpoint holds the last acknowledged batch")
                raise typer.Exit(1) from exc
            finally:
                sink.close()
        else:
            from models.engine import load_engine

            publish, close = _alert_publisher(settings) if notify else (None, None)
            engine = load_engine(settings)
            try:
                summary = run_backfill(
                    inputs,
                    time_range,
                    settings=settings,
                    store=store,
                    scorer=engine,
                    extractor=default_extractor(),
                    notify=publish,
                    restart=restart,
                    stop=stop,
                    progress=progress,
                    on_reject=on_reject,
                )
            except BackfillWriteError as exc:
                typer.echo(f"stopped: {exc}; the checkpoint holds the last stored batch", err=True)
                raise typer.Exit(1) from exc
            finally:
                engine.close()
                if close is not None:
                    close()
    finally:
        reject_file.close()
        store.close()
    for line in summary.lines():
        typer.echo(line)


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _alert_publisher(
    settings: Settings,
) -> tuple[Callable[[Sequence[Alert]], None], Callable[[], None]]:
    """Alerts onto the alerts topic, keyed by alert key as the stream sends them; returns
    only once Kafka acknowledged all (the checkpoint is written after)."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    from finsentry.kafka_auth import client_options

    try:
        producer = KafkaProducer(
            bootstrap_servers=settings.bootstrap_servers,
            **client_options(settings),
            client_id="finsentry-backfill-alerts",
            acks="all",
            enable_idempotence=True,
        )
    except KafkaError as exc:
        typer.echo(f"error: --notify: cannot reach Kafka at {settings.bootstrap_servers}: {exc!r}",
                   err=True)  # fmt: skip
        raise typer.Exit(1) from exc
    topic = settings.topic("alerts")

    def publish(alerts: Sequence[Alert]) -> None:
        futures = [producer.send(topic, key=a.key.encode(), value=a.to_json()) for a in alerts]
        producer.flush()
        for future in futures:
            future.get(timeout=settings.ingest_producer_delivery_timeout_s)

    return publish, lambda: producer.close(timeout=settings.ingest_producer_delivery_timeout_s)
