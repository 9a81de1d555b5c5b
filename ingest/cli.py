"""``finsentry ingest ...``: run one source until Ctrl-C / SIGTERM, publishing to Kafka."""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from finsentry.cli_settings import settings_or_exit
from finsentry.config import RssFeed, Settings

if TYPE_CHECKING:
    from ingest.polling import PolledSource

ingest_app = typer.Typer(
    help="Sources into Kafka: RSS, webhook, replay, Reddit, StockTwits.", no_args_is_help=True
)
log = logging.getLogger("ingest")


def _settings() -> Settings:
    settings = settings_or_exit()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # kafka-python logs every reconnect at INFO; our own lines say what matters.
    logging.getLogger("kafka").setLevel(
        max(logging.WARNING, logging.getLevelName(settings.log_level))
    )
    return settings


def _stop_on_signals() -> threading.Event:
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
    stop = _stop_on_signals()
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
    _poll(_settings(), "rss", feed or [])


@ingest_app.command("reddit")
def reddit(
    sub: Annotated[list[str] | None, typer.Option(help="Subreddit (repeatable)")] = None,
) -> None:
    """Poll subreddit /new listings (default: ingest_reddit_subreddits)."""
    _poll(_settings(), "reddit", sub or [])


@ingest_app.command("stocktwits")
def stocktwits(
    symbol: Annotated[list[str] | None, typer.Option(help="Symbol (repeatable)")] = None,
) -> None:
    """Poll StockTwits symbol streams (default: ingest_stocktwits_symbols)."""
    _poll(_settings(), "stocktwits", symbol or [])


@ingest_app.command("webhook")
def webhook(
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default ingest_webhook_port)")] = None,
) -> None:
    """Serve POST /posts; answers 202 with the ids once Kafka has them."""
    from aiohttp import web

    from ingest.producer import KafkaPostSink
    from ingest.tickers import default_extractor
    from ingest.webhook import make_app

    settings = _settings()
    sink = KafkaPostSink(settings)
    try:
        web.run_app(
            make_app(settings, sink, default_extractor()),
            host=host or settings.ingest_webhook_host,
            port=settings.ingest_webhook_port if port is None else port,
            print=lambda msg: log.info("webhook: %s", msg.strip()),
        )
    finally:
        sink.close()


@ingest_app.command("replay")
def replay(
    files: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, readable=True)],
    preset: Annotated[str | None, typer.Option(help="cnbc | guardian | benzinga | generic")] = None,
    map_: Annotated[list[str] | None, typer.Option("--map", help="FIELD=COLUMN")] = None,
    time_format: Annotated[
        str | None, typer.Option(help="strptime format of the time column")
    ] = None,
    tz: Annotated[str, typer.Option(help="Zone of times without an offset")] = "UTC",
    source: Annotated[
        str | None, typer.Option(help="Source name (default replay:<preset|file>)")
    ] = None,
    kind: Annotated[str, typer.Option(help="news | social")] = "news",
    speed: Annotated[float | None, typer.Option(help="Event-time speed-up, e.g. 60")] = None,
    rate: Annotated[float | None, typer.Option(help="Posts per second")] = None,
    sort: Annotated[bool, typer.Option(help="Replay in event-time order")] = False,
    restart: Annotated[bool, typer.Option(help="Ignore the checkpoint")] = False,
    rejects: Annotated[Path | None, typer.Option(help="Write rejected rows as JSONL here")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar")] = True,
) -> None:
    """Replay dated files into Kafka, keeping each row's time; resumes from its checkpoint."""
    from finsentry.store import Store
    from ingest.producer import KafkaPostSink
    from ingest.replay import (
        PRESETS,
        Pacer,
        Rejection,
        ReplayError,
        detect_mapping,
        read_header,
        with_overrides,
    )
    from ingest.replay_run import replay_file
    from ingest.sink import PublishError
    from ingest.tickers import default_extractor
    from ingest.timeparse import iso_parser, strptime_parser

    settings = _settings()
    if kind not in ("news", "social"):
        raise typer.BadParameter("news or social", param_hint="--kind")
    post_kind: Literal["news", "social"] = "news" if kind == "news" else "social"
    overrides = dict(_pair(item) for item in map_ or [])
    store = Store(settings.database_url)
    sink = KafkaPostSink(settings)
    stop = _stop_on_signals()
    reject_file = rejects.open("a", encoding="utf-8") if rejects else None

    def report_to(path: Path) -> Callable[[Rejection], None]:
        def write(rejection: Rejection) -> None:
            if reject_file is not None:
                reject_file.write(json.dumps({"file": str(path), **asdict(rejection)}) + "\n")

        return write

    failed = False
    try:
        for path in files:
            if preset is not None and preset not in PRESETS:
                raise typer.BadParameter(f"unknown preset {preset!r}", param_hint="--preset")
            changes: dict[str, object] = {"kind": post_kind, "source": source}
            if time_format:
                changes["parse_time"] = strptime_parser(time_format, tz)
            elif tz != "UTC":
                changes["parse_time"] = iso_parser(tz)
            try:
                header = read_header(path)
                if preset or overrides:
                    base = PRESETS[preset or "generic"]
                else:
                    base = detect_mapping(header)
                mapping = with_overrides(base, overrides, **changes).fit_header(header, path)
                result = replay_file(
                    path,
                    mapping,
                    sink=sink,
                    store=store,
                    extractor=default_extractor(),
                    pacer=Pacer(speed=speed, rate=rate),
                    batch_size=settings.ingest_batch_size,
                    sort=sort,
                    restart=restart,
                    stop=stop,
                    progress=progress,
                    on_reject=report_to(path),
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
        if reject_file is not None:
            reject_file.close()
        sink.close()
        store.close()
    if failed:
        raise typer.Exit(2)


def _pair(item: str) -> tuple[str, str]:
    field, sep, column = item.partition("=")
    if not sep:
        raise typer.BadParameter(f"{item!r}: use FIELD=COLUMN", param_hint="--map")
    return field, column
