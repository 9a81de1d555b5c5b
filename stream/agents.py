"""Faust agents: thin loops that call the pure core and move messages between topics.

posts ─validate─► valid-posts (keyed by text fingerprint) ─dedup─► unique-posts
      ─score (batched, model thread)─► scored ─fan-in─► signal-input (1 partition)
      ─windows + spikes─► signals, alerts;  scored / signals / alerts ─sink─► store
model-updates ─► hot swap of the engine between two batches.
Table writes happen per event, never inside ``take()`` (faust-streaming issue #497).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, cast

import faust

from finsentry.config import Settings
from finsentry.schema import (
    Alert,
    DeadLetter,
    ModelUpdate,
    Post,
    SchemaError,
    ScoredPost,
    SignalPoint,
)
from stream.app import SINK_BATCH, StreamTables, StreamTopics
from stream.dedup import Deduplicator
from stream.metrics import StreamMetrics
from stream.parsing import make_dead_letter, parse_post
from stream.sink import StoreSink
from stream.spikes import SignalEngine
from stream.staging import StagedMapping
from stream.windows import Observation, keys_for, observe

log = logging.getLogger(__name__)

LAG_REFRESH_S = 5.0  # how often the consumer-lag gauges are refreshed


class Scorer(Protocol):
    """What the agents need of models.engine.Engine."""

    @property
    def version(self) -> str: ...

    async def classify_async(self, texts: Sequence[str]) -> Sequence[Mapping[str, object]]: ...

    def close(self) -> None: ...


@dataclasses.dataclass
class WorkerContext:
    settings: Settings
    engine: Scorer
    load_engine: Callable[[Path], Scorer]
    sink: StoreSink
    metrics: StreamMetrics


def register_agents(
    app: faust.App, topics: StreamTopics, tables: StreamTables, ctx: WorkerContext
) -> None:
    settings = ctx.settings
    metrics = ctx.metrics
    metrics.model_version.labels(ctx.engine.version).set(1)

    async def dead_letter(letter: DeadLetter) -> None:
        metrics.dead_lettered.labels(letter.reason).inc()
        log.warning(
            "dead letter from %s[%d]@%d: %s: %s",
            letter.source_topic,
            letter.partition,
            letter.offset,
            letter.reason,
            letter.error[:200],
        )
        await topics.deadletter.send(value=letter.to_json())

    @app.agent(topics.posts)
    async def validate(stream: Any) -> None:
        async for event in stream.events():
            metrics.posts_in.inc()
            message = event.message
            result = parse_post(
                event.value,
                max_bytes=settings.stream_max_message_bytes,
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
            )
            if isinstance(result, DeadLetter):
                await dead_letter(result)
                continue
            verdict_key = Deduplicator.routing_key(result)
            await topics.valid.send(key=verdict_key.encode(), value=result.to_json())

    @app.agent(topics.valid)
    async def dedup(stream: Any) -> None:
        deduplicator = Deduplicator(tables.seen, settings.dedup_horizon_s)
        async for raw in stream:
            post = Post.from_json(raw)
            verdict = deduplicator.check(post)
            if verdict.duplicate_of is not None:
                metrics.duplicates.labels(verdict.duplicate_of).inc()
                continue
            await topics.unique.send(key=post.id.encode(), value=raw)

    @app.agent(topics.unique)
    async def score(stream: Any) -> None:
        async for batch in stream.take(
            settings.stream_batch_size, within=settings.stream_batch_within_s
        ):
            posts = [Post.from_json(raw) for raw in batch]
            engine = ctx.engine  # a hot swap takes effect between batches, never inside one
            started = time.perf_counter()
            scored = await _score(engine, posts, dead_letter, topics)
            metrics.inference_seconds.observe(time.perf_counter() - started)
            metrics.batch_size.observe(len(posts))
            metrics.scored.inc(len(scored))
            for post in scored:
                await topics.scored.send(key=post.id.encode(), value=post.to_json())

    @app.agent(topics.scored)
    async def fan_in(stream: Any) -> None:
        async for raw in stream:
            post = ScoredPost.from_json(raw)
            payload = {"keys": keys_for(post), "obs": dataclasses.asdict(observe(post))}
            await topics.signal_input.send(key=b"all", value=json.dumps(payload).encode())

    @app.agent(topics.signal_input)
    async def signal(stream: Any) -> None:
        async for raw in stream:
            payload = json.loads(raw)
            window_state = StagedMapping(tables.windows)
            spike_state = StagedMapping(tables.spikes)
            engine = SignalEngine.from_settings(
                settings, window_state=window_state, spike_state=spike_state
            )
            output = engine.add(payload["keys"], Observation(**payload["obs"]))
            metrics.late.inc(len(output.late_keys))
            sent = [
                await topics.signals.send(key=p.key.encode(), value=p.to_json())
                for p in output.points
            ]
            sent += [
                await topics.alerts.send(key=a.key.encode(), value=a.to_json())
                for a in output.alerts
            ]
            await asyncio.gather(*sent)  # delivered before the state moves on
            window_state.commit()
            spike_state.commit()
            metrics.windows_closed.inc(len(output.points))
            metrics.alerts.inc(len(output.alerts))

    @app.agent(topics.scored)
    async def sink_posts(stream: Any) -> None:
        async for batch in stream.take(SINK_BATCH, within=1.0):
            await ctx.sink.write_posts([ScoredPost.from_json(raw) for raw in batch])

    @app.agent(topics.signals)
    async def sink_signals(stream: Any) -> None:
        async for batch in stream.take(SINK_BATCH, within=1.0):
            await ctx.sink.write_points([SignalPoint.from_json(raw) for raw in batch])

    @app.agent(topics.alerts)
    async def sink_alerts(stream: Any) -> None:
        async for batch in stream.take(SINK_BATCH, within=0.5):
            await ctx.sink.write_alerts([Alert.from_json(raw) for raw in batch])

    @app.agent(topics.model_updates)
    async def swap_model(stream: Any) -> None:
        async for raw in stream:
            try:
                update = ModelUpdate.from_json(raw)
            except SchemaError as exc:
                log.error("ignoring bad model update: %s", exc)
                continue
            if update.version == ctx.engine.version:
                continue
            new_engine = await asyncio.to_thread(ctx.load_engine, Path(update.path))
            old, ctx.engine = ctx.engine, new_engine
            metrics.model_version.clear()
            metrics.model_version.labels(new_engine.version).set(1)
            log.info("model swapped: %s -> %s", old.version, new_engine.version)
            await asyncio.to_thread(old.close)  # lets a batch still on the old engine finish

    @app.timer(LAG_REFRESH_S)
    async def report_lag() -> None:
        consumer = app.consumer
        for tp in consumer.assignment():
            if not tp.topic.startswith(settings.kafka_topic_prefix):
                continue  # Faust's own changelog and assignor topics
            position = await consumer.position(tp)
            highwater = consumer.highwater(tp)
            if position is not None and highwater is not None:
                lag = max(0, highwater - position)
                metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(lag)

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        body = generate_latest(metrics.registry)
        return web.bytes(body, content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        return web.json({"status": "ok", "model_version": ctx.engine.version})

    @app.page("/ready")
    async def ready(web: Any, request: Any) -> Any:
        """Ready: tables recovered from their changelogs and no rebalance under way."""
        recovered = cast(Any, app.tables).recovery.completed.is_set()
        ok = recovered and not app.rebalancing
        detail = {"recovered": recovered, "rebalancing": bool(app.rebalancing)}
        return web.json({"status": "ok" if ok else "failing", **detail}, status=200 if ok else 503)


async def _score(
    engine: Scorer,
    posts: list[Post],
    dead_letter: Callable[[DeadLetter], Any],
    topics: StreamTopics,
) -> list[ScoredPost]:
    """Score a batch; if the batch fails, score one by one and dead-letter the culprits."""
    try:
        verdicts = await engine.classify_async([post.text for post in posts])
        return [ScoredPost.from_post(p, **v) for p, v in zip(posts, verdicts, strict=True)]
    except Exception:
        log.exception("batch of %d failed; retrying one by one", len(posts))
    scored = []
    for post in posts:
        try:
            (verdict,) = await engine.classify_async([post.text])
            scored.append(ScoredPost.from_post(post, **verdict))
        except Exception as exc:
            await dead_letter(
                make_dead_letter(
                    post.to_json(),
                    "unscorable",
                    repr(exc),
                    topic=topics.unique.get_topic_name(),
                    partition=0,
                    offset=0,
                )
            )
    return scored
