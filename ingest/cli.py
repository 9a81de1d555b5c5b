"""``finsentry ingest ...``: run one source until Ctrl-C / SIGTERM, publishing to Kafka."""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from finsentry.cli_settings import settings_or_exit
from finsentry.config import RssFeed, Settings

if TYPE_CHECKING:
    from ingest.polling import PolledSource
    from ingest.replay import MappingOptions, Rejection

ingest_app = typer.Typer(
    help="Sources into Kafka: RSS, webhook, replay, Reddit, StockTwits.", no_args_is_help=True
)
log = logging.getLogger("ingest")


def command_settings() -> Settings:
    settings = settings_or_exit()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # kafka-python logs every reconnect at INFO; our own lines say what matters.
    logging.getLogger("kafka").setLevel(
        max(logging.WARNING, logging.getLevelName(settings.log_level))
    )
    return settings


def require_kafka(settings: Settings) -> None:
    """Stop at once, saying why, when the brokers refuse this client's credentials or
    protocol; an unreachable broker is only logged (the producer waits it out)."""
    from finsentry.kafka_auth import KafkaAccessError, stop_if_refused

    try:
        stop_if_refused(settings, log)
    except KafkaAccessError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


def stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        log.info("signal %d: finishing the current batch, then stopping", signum)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def _poll(settings: Settings, build: str, names: list[str]) -> None:
    from finsentry.store import Store
    from ingest.polling import run_polling
    from ingest.producer import KafkaPostSink
    from ingest.rss import RssPoller, make_client
    from ingest.social import RedditPoller, StockTwitsPoller
    from ingest.tickers import default_extractor

    require_kafka(settings)
    store = Store(settings.database_url)
    sink = KafkaPostSink(settings)
    client = make_client(settings)
    extractor = default_extractor()
    sources: list[PolledSource]
    if build == "rss":
        feeds = [*settings.ingest_rss_feeds, *(_feed(spec) for spec in names)]
        sources = [
            RssPoller(
                f, settings=settings, client=client, store=store, sink=sink, extractor=extractor
            )
            for f in feeds
        ]
    elif build == "reddit":
        sources = [
            RedditPoller(
                sub, extractor=extractor, settings=settings, client=client, store=store, sink=sink
            )
            for sub in names or settings.ingest_reddit_subreddits
        ]
    else:
        sources = [
            StockTwitsPoller(
                sym.upper(),
                extractor=extractor,
                settings=settings,
                client=client,
                store=store,
                sink=sink,
            )
            for sym in names or settings.ingest_stocktwits_symbols
        ]
    if not sources:
        typer.echo(f"error: no {build} sources configured", err=True)
        raise typer.Exit(2)
    stop = stop_on_signals()
    try:
        run_polling(sources, stop)
    finally:
        sink.close()
        client.close()
        store.close()


def _feed(spec: str) -> RssFeed:
    name, sep, url = spec.partition("=")
    if not sep:
        raise typer.BadParameter(f"{spec!r}: use NAME=URL", param_hint="--feed")
    return RssFeed(name=name, url=url)


@ingest_app.command("rss")
def rss(feed: Annotated[list[str] | None, typer.Option(help="Extra feed NAME=URL")] = None) -> None:
    """Poll the configured RSS/Atom feeds (ingest_rss_feeds) plus any --feed."""
    _poll(command_settings(), "rss", feed or [])


@ingest_app.command("reddit")
def reddit(
    sub: Annotated[list[str] | None, typer.Option(help="Subreddit (repeatable)")] = None,
) -> None:
    """Poll subreddit /new listings (default: ingest_reddit_subreddits)."""
    _poll(command_settings(), "reddit", sub or [])


@ingest_app.command("stocktwits")
def stocktwits(
    symbol: Annotated[list[str] | None, typer.Option(help="Symbol (repeatable)")] = None,
) -> None:
    """Poll StockTwits symbol streams (default: ingest_stocktwits_symbols)."""
    _poll(command_settings(), "stocktwits", symbol or [])


@ingest_app.command("webhook")
def webhook(
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default ingest_webhook_port)")] = None,
) -> None:
    """Serve POST /posts; answers 202 with the ids once Kafka has them."""
    from aiohttp import web

    from ingest.producer import KafkaPostSink
    from ingest.tickers import default_extractor
    from ingest.webhook import WebhookConfigError, check_binding, make_app

    settings = command_settings()
    bind = host or settings.ingest_webhook_host
    try:
        check_binding(settings, bind)
    except WebhookConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    require_kafka(settings)
    sink = KafkaPostSink(settings)
    try:
        web.run_app(
            make_app(settings, sink, default_extractor()),
            host=bind,
            port=settings.ingest_webhook_port if port is None else port,
            print=lambda msg: log.info("webhook: %s", msg.strip()),
        )
    finally:
        sink.close()


PresetOption = Annotated[
    str | None, typer.Option(help="cnbc | guardian | benzinga | generic (default: detected)")
]
MapOption = Annotated[list[str] | None, typer.Option("--map", help="FIELD=COLUMN (repeatable)")]
TimeFormatOption = Annotated[str | None, typer.Option(help="strptime format of the time column")]
TzOption = Annotated[str, typer.Option(help="Zone of times without an offset")]
SourceOption = Annotated[
    str | None, typer.Option(help="Source name (default replay:<preset|file>)")
]
KindOption = Annotated[str, typer.Option(help="news | social")]
RejectsOption = Annotated[Path | None, typer.Option(help="Write rejected rows as JSONL here")]


def mapping_options(
    preset: str | None,
    map_: list[str] | None,
    time_format: str | None,
    tz: str,
    source: str | None,
    kind: str,
) -> MappingOptions:
    """The column options shared by ``ingest replay`` and ``backfill``, checked."""
    from ingest.replay import MappingOptions, ReplayError, parse_overrides

    if kind not in ("news", "social"):
        raise typer.BadParameter("news or social", param_hint="--kind")
    try:
        overrides = parse_overrides(map_ or [])
    except ReplayError as exc:
        raise typer.BadParameter(str(exc), param_hint="--map") from exc
    return MappingOptions(
        preset=preset,
        overrides=overrides,
        time_format=time_format,
        tz=tz,
        source=source,
        kind="news" if kind == "news" else "social",
    )


class RejectsWriter:
    """Appends every rejected row as one JSON line (file, number, where, reason)."""

    def __init__(self, path: Path | None) -> None:
        self._handle = path.open("a", encoding="utf-8") if path else None

    def for_file(self, path: Path) -> Callable[[Rejection], None]:
        def write(rejection: Rejection) -> None:
            if self._handle is not None:
                self._handle.write(json.dumps({"file": str(path), **asdict(rejection)}) + "\n")

        return write

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()


@ingest_app.command("replay")
def replay(
    files: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, readable=True)],
    preset: PresetOption = None,
    map_: MapOption = None,
    time_format: TimeFormatOption = None,
    tz: TzOption = "UTC",
    source: SourceOption = None,
    kind: KindOption = "news",
    speed: Annotated[float | None, typer.Option(help="Event-time speed-up, e.g. 60")] = None,
    rate: Annotated[float | None, typer.Option(help="Posts per second")] = None,
    sort: Annotated[bool, typer.Option(help="Replay in event-time order")] = False,
    restart: Annotated[bool, typer.Option(help="Ignore the checkpoint")] = False,
    rejects: RejectsOption = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar")] = True,
) -> None:
    """Replay dated files into Kafka, keeping each row's time; resumes from its checkpoint."""
    from finsentry.store import Store
    from ingest.producer import KafkaPostSink
    from ingest.replay import Pacer, ReplayError, mapping_for
    from ingest.replay_run import replay_file
    from ingest.sink import PublishError
    from ingest.tickers import default_extractor

    settings = command_settings()
    require_kafka(settings)
    options = mapping_options(preset, map_, time_format, tz, source, kind)
    store = Store(settings.database_url)
    sink = KafkaPostSink(settings)
    stop = stop_on_signals()
    reject_file = RejectsWriter(rejects)

    failed = False
    try:
        for path in files:
            try:
                result = replay_file(
                    path,
                    mapping_for(path, options),
                    sink=sink,
                    store=store,
                    extractor=default_extractor(),
                    pacer=Pacer(speed=speed, rate=rate),
                    batch_size=settings.ingest_batch_size,
                    sort=sort,
                    restart=restart,
                    stop=stop,
                    progress=progress,
                    on_reject=reject_file.for_file(path),
                )
            except ReplayError as exc:
                typer.echo(f"error: {exc}", err=True)
                failed = True
                continue
            except PublishError as exc:
                typer.echo(
                    f"stopped: {exc}; the checkpoint holds the last acknowledged row", err=True
                )
                raise typer.Exit(1) from exc
            typer.echo(result.summary())
            if not result.completed:
                break
    finally:
        reject_file.close()
        sink.close()
        store.close()
    if failed:
        raise typer.Exit(2)
