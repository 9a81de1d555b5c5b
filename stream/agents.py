"""Faust agents: thin loops that call the pure core and move messages between topics.

posts ─validate, dedup (per event)─► score (batched, model thread) ─► store, scored,
                                      signal-input (1 partition, one message per batch,
                                      with its input partitions' event-time marks)
posts not keyed by their fingerprint ─► valid-posts ─► dedup, score as above
signal-input ─windows + spikes─► signals, alerts, store
timer ─► signal-input: input partitions caught up and quiet (stream/watermarks.py)
model-updates ─► hot swap of the engine between two batches.
Table writes happen per event, in the stream's processor (faust-streaming issue #497).
Every input of the scorer is acknowledged in input order, those with nothing to score too
(see ``score``): Faust's commit checks only loosely that nothing is missing before the
offsets acknowledged since the last one. Nor does it wait for the producer: an input is
acknowledged only once Kafka has what was sent for it (scored, signal-input, a dead letter,
a re-keyed post).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol, cast

import faust
from faust.streams import current_event
from faust.types import TP

from finsentry.config import Settings
from finsentry.schema import (
    DeadLetter,
    ModelUpdate,
    Post,
    SchemaError,
    ScoredPost,
)
from stream.app import GroupOffsets, StreamTables, StreamTopics, input_topic_names
from stream.batching import next_batch
from stream.dedup import Deduplicator, PruneSchedule
from stream.liveness import StallWatch
from stream.metrics import StreamMetrics
from stream.outputs import RECORD_OVERHEAD_BYTES, fits, split_to_fit
from stream.parsing import make_dead_letter, parse_post
from stream.sink import StoreSink
from stream.spikes import SignalEngine
from stream.staging import StagedMapping
from stream.watermarks import IdleWatch, Progress, input_name
from stream.windows import observations_from_json, observations_to_json

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
    # Loads the registry's directory of an update's version; LookupError for one it lacks.
    load_engine: Callable[[ModelUpdate], Scorer]
    sink: StoreSink
    metrics: StreamMetrics


def register_agents(
    app: faust.App, topics: StreamTopics, tables: StreamTables, ctx: WorkerContext
) -> None:
    settings = ctx.settings
    metrics = ctx.metrics
    metrics.model_version.labels(ctx.engine.version).set(1)

    async def dead_letter(letter: DeadLetter) -> Awaitable[Any]:
        """Sends the letter; returns its delivery, awaited before the input is acknowledged."""
        metrics.dead_lettered.labels(letter.reason).inc()
        log.warning(
            "dead letter from %s[%d]@%d: %s: %s",
            letter.source_topic,
            letter.partition,
            letter.offset,
            letter.reason,
            letter.error[:200],
        )
        return cast(Awaitable[Any], await topics.deadletter.send(value=letter.to_json()))

    posts_topic = topics.posts.get_topic_name()
    valid_topic = topics.valid.get_topic_name()
    deduplicator = Deduplicator(tables.seen, settings.dedup_horizon_s)
    prunes = PruneSchedule(settings.dedup_horizon_s)
    watch = StallWatch(settings.worker_stall_timeout_s)
    idle_watch = IdleWatch(settings.idle_timeout_s)
    group_offsets = GroupOffsets(settings)
    input_topics = input_topic_names(topics)
    stalled_because: str | None = None  # why the stream is stuck, for /health
    last_seek_back = float("-inf")  # when the stream was last sent back to its committed offsets
    cannot_judge = False  # the broker could not be asked last time (logged once per outage)

    def keyed_for_dedup(message: Any, key: bytes) -> bool:
        """The message already sits where re-keying by ``key`` would put it (see below).

        Asks the consumer, which reads valid-posts and so always has its metadata; the
        producer's metadata may lack a topic (it drops one that a refresh reported with an
        error, and one it never sent to), and its key_partition then raises TypeError.
        """
        consumer = app.consumer
        return (
            message.key == key
            and consumer.topic_partitions(posts_topic) == consumer.topic_partitions(valid_topic)
            and consumer.key_partition(valid_topic, key) == message.partition
        )

    async def admit(raw: bytes) -> Intake:
        """Per event, before the scorer's batch: validate, route, dedup.

        Posts keyed by their fingerprint (as ingest keys them) are deduplicated where they
        arrive; others are re-keyed through valid-posts first, so every copy of a story meets
        the same deduplicator. This runs as a stream processor, where the current event is
        set, so the dedup table can be written per event (faust-streaming issue #497).

        Nothing may escape it: an exception raised in a processor ends the stream's background
        reader without a word, and the worker then idles forever. So a failure becomes a dead
        letter ("unprocessable"), and one that cannot even be dead-lettered crashes the
        worker, whose supervisor restarts it. Nor does it raise Skip: Faust acknowledges a
        skipped event at once, ahead of the posts still waiting for their batch.
        """
        event = current_event()
        assert event is not None, "processors run inside stream iteration"
        message = event.message
        try:
            return await admit_message(message, raw)
        except Exception as exc:
            log.exception(
                "cannot admit %s[%d]@%d", message.topic, message.partition, message.offset
            )
            letter = make_dead_letter(
                raw or b"",
                "unprocessable",
                repr(exc),
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
            )
            try:
                return Forwarded(await dead_letter(letter))
            except Exception as send_error:
                await app.crash(send_error)
            return None

    async def admit_message(message: Any, raw: bytes) -> Intake:
        if message.topic == posts_topic:
            metrics.posts_in.inc()
        result = parse_post(  # valid-posts is validated again: any producer can write to it
            raw,
            max_bytes=settings.stream_max_message_bytes,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            now=datetime.now(UTC),
            future_tolerance_s=settings.future_tolerance_s,
        )
        if isinstance(result, DeadLetter):
            return Forwarded(await dead_letter(result))
        post = result
        if message.topic == posts_topic:
            key = Deduplicator.routing_key(post).encode()
            if not keyed_for_dedup(message, key):
                partition = app.consumer.key_partition(valid_topic, key)
                to = None if partition is None else input_name(valid_topic, partition)
                delivery = await topics.valid.send(key=key, value=raw)
                return Forwarded(delivery, post.published_at.timestamp(), to)
        origin = origin_of(message)
        verdict = deduplicator.check(post, origin)
        prune_to = prunes.due(message.partition, post.published_at.timestamp())
        if prune_to is not None:  # a table's deletes go to the current event's partition
            deduplicator.prune(prune_to, lambda o: origin_partition(o) == message.partition)
        if verdict.duplicate_of is not None:
            metrics.duplicates.labels(verdict.duplicate_of).inc()
            return None
        return Admitted(post, message.topic, message.partition, message.offset)

    async def score_batch(batch: list[Admitted]) -> list[ScoredPost]:
        engine = ctx.engine  # a hot swap takes effect between batches, never inside one
        started = time.perf_counter()
        scored = await _score(engine, batch, dead_letter)
        metrics.inference_seconds.observe(time.perf_counter() - started)
        metrics.batch_size.observe(len(batch))
        metrics.scored.inc(len(scored))
        return scored

    def progress_of(batch: list[tuple[Intake, Any]]) -> Progress:
        """The input partitions, and how far in event time this batch takes each of them
        (stream/watermarks.py): posts scored or re-keyed count, duplicates do not."""
        highs: dict[str, float] = {}
        for item, event in batch:
            if isinstance(item, Admitted):
                at: float | None = item.post.published_at.timestamp()
            else:
                at = item.event_time if isinstance(item, Forwarded) else None
            if at is not None:
                name = input_name(event.message.topic, event.message.partition)
                highs[name] = max(at, highs.get(name, at))
        inputs = tuple(
            input_name(topic, partition)
            for topic in (posts_topic, valid_topic)
            for partition in range(app.consumer.topic_partitions(topic) or 0)
        )
        woken = {item.to for item, _ in batch if isinstance(item, Forwarded) and item.to}
        ends = {tp: app.consumer.highwater(TP(*tp)) for tp in idle_watch.told()}
        woken |= {input_name(*tp) for tp in idle_watch.woken(ends)}
        return Progress(inputs=inputs, highs=highs, woken=tuple(sorted(woken)))

    async def publish(scored: list[ScoredPost], batch: list[Admitted], progress: Progress) -> None:
        """Sends and stores a scored batch; returns once Kafka has both sends and the store
        has the posts, so acknowledging the inputs next can lose neither: a send returns
        once queued, and Faust's commit does not wait for the producer. A post whose scored
        message is over the producer's request size is dead-lettered (see stream/outputs.py)."""
        max_request = app.conf.producer_max_request_size
        origins = {item.post.id: item for item in batch}
        sent, kept = [], []
        for post in scored:
            key, value = post.id.encode(), post.to_json()
            if fits(key, value, max_request):
                sent.append(await topics.scored.send(key=key, value=value))
                kept.append(post)
                continue
            item = origins[post.id]
            error = f"its scored message is {len(value)} bytes; the producer takes {max_request}"
            letter = make_dead_letter(
                item.post.to_json(),
                "oversized",
                error,
                topic=item.topic,
                partition=item.partition,
                offset=item.offset,
            )
            sent.append(await dead_letter(letter))
        if kept or progress.highs:
            # One message per batch, with the partitions' progress. One too large is split,
            # in order, and the progress follows alone: no window may close on it before
            # every observation of the batch is in.
            limit = max_request - RECORD_OVERHEAD_BYTES
            whole = observations_to_json(kept, progress)
            values = (
                [whole]
                if len(whole) <= limit
                else [
                    *split_to_fit(kept, observations_to_json, limit),
                    observations_to_json([], progress),
                ]
            )
            for value in values:
                sent.append(await topics.signal_input.send(key=b"all", value=value))
        # No hop through ``scored`` to the store: it is for others. A crash before the
        # acknowledgement re-scores the batch, and the upsert makes that harmless.
        await ctx.sink.write_posts(kept)
        await asyncio.gather(*sent)

    async def score_batches(stream: Any, queue: asyncio.Queue[tuple[Intake, Any]]) -> None:
        """Batches off the queue, in input order; each input acknowledged once what became
        of it is stored or in Kafka."""
        try:
            while True:
                batch = await next_batch(
                    queue, settings.stream_batch_size, settings.stream_batch_within_s
                )
                admitted = [item for item, _ in batch if isinstance(item, Admitted)]
                scored = await score_batch(admitted) if admitted else []
                await publish(scored, admitted, progress_of(batch))
                await asyncio.gather(
                    *(item.delivery for item, _ in batch if isinstance(item, Forwarded))
                )
                for _, event in batch:
                    await stream.ack(event)
        except Exception as exc:  # the loop feeding the queue cannot see this: stop the worker
            log.exception("scoring failed; stopping the worker")
            await app.crash(exc)
            raise

    @app.agent(topics.intake)
    async def score(stream: Any) -> None:
        """Admits each event (a processor, so table writes see it); a task scores the batches.

        Acknowledged by hand (``noack``), in input order: an input is acknowledged once its
        batch is stored and its sends delivered, and one with nothing to score (a duplicate,
        a dead letter, a post re-keyed to valid-posts) only after the inputs before it and
        once what it sent on is delivered. Faust (0.15.3) commits the
        run of acknowledged offsets that starts at most one past the committed offset: a
        duplicate acknowledged at once, right after a post waiting for its batch, let a
        commit pass that post, which a crash then lost (tests/stream/test_worker.py).
        """
        manual = stream.noack()
        manual.add_processor(admit)
        queue: asyncio.Queue[tuple[Intake, Any]]
        queue = asyncio.Queue(2 * settings.stream_batch_size)
        scorer = asyncio.ensure_future(score_batches(manual, queue))
        try:
            async for admitted in manual:
                await queue.put((admitted, manual.current_event))
        finally:
            scorer.cancel()  # what it had not stored stays unacknowledged, so comes again
            await asyncio.gather(scorer, return_exceptions=True)

    @app.agent(topics.signal_input)
    async def signal(stream: Any) -> None:
        async for raw in stream:
            window_state = StagedMapping(tables.windows)
            spike_state = StagedMapping(tables.spikes)
            engine = SignalEngine.from_settings(
                settings, window_state=window_state, spike_state=spike_state
            )
            output = engine.add_input(*observations_from_json(raw))
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
            # Stored here, not through a hop over signals/alerts (those are for the alerts
            # service and others), alerts first: whoever sees a window's point sees its alert.
            if output.alerts:
                await ctx.sink.write_alerts(output.alerts)
            if output.points:
                await ctx.sink.write_points(output.points)
            if output.corrections:
                await ctx.sink.write_corrections(output.corrections)
            window_state.commit()  # one table write per changed window, not per post
            spike_state.commit()
            metrics.windows_closed.inc(len(output.points))
            metrics.windows_corrected.inc(len(output.corrections))
            metrics.alerts.inc(len(output.alerts))

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
            try:
                new_engine = await asyncio.to_thread(ctx.load_engine, update)
            except LookupError as exc:
                log.error("ignoring model update for %r, not loaded: %s", update.version, exc)
                continue
            old, ctx.engine = ctx.engine, new_engine
            metrics.model_version.clear()
            metrics.model_version.labels(new_engine.version).set(1)
            log.info("model swapped: %s -> %s", old.version, new_engine.version)
            await asyncio.to_thread(old.close)  # lets a batch still on the old engine finish

    def tables_recovered() -> bool:
        return bool(cast(Any, app.tables).recovery.completed.is_set())

    @app.timer(LAG_REFRESH_S)
    async def report_lag() -> None:
        """Consumer lag per input partition, and whether the worker is stuck (liveness)."""
        nonlocal stalled_because, cannot_judge
        consumer = app.consumer
        inputs = [tp for tp in consumer.assignment() if tp.topic in input_topics]
        for tp in inputs:
            position = await consumer.position(tp)
            highwater = consumer.highwater(tp)
            if position is not None and highwater is not None:
                lag = max(0, highwater - position)
                metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(lag)
        if app.rebalancing or not tables_recovered():
            watch.rebalanced()
            return
        try:
            reason, committed, idle = await stall_reason(inputs)
            if idle:
                log.info("input partitions caught up and quiet: %s", ", ".join(idle))
                notice = observations_to_json([], Progress(idle=tuple(idle)))
                await (await topics.signal_input.send(key=b"all", value=notice))
        except Exception:  # the broker is unreachable: that is not the worker's stall
            if not cannot_judge:
                log.warning("cannot judge whether the worker is stuck", exc_info=True)
            cannot_judge = True
            return
        cannot_judge = False
        if reason and stalled_because is None:
            log.error("worker stalled: %s; /health now fails", reason)
        elif reason is None and stalled_because is not None:
            log.info("worker flowing again")
        stalled_because = reason
        if reason and not consumer.unacked:
            await seek_back(consumer, committed)

    async def stall_reason(inputs: list[Any]) -> tuple[str | None, dict[Any, int], list[str]]:
        """Why the worker is stuck (or None), the committed offset of each input partition
        (the earliest offset where the group never committed, as
        consumer_auto_offset_reset="earliest" reads it), both asked of the broker, and the
        scorer's input partitions that have just become idle (stream/watermarks.py)."""
        if not inputs:
            return None, {}, []
        consumer = app.consumer
        committed = await group_offsets.committed([(tp.topic, tp.partition) for tp in inputs])
        never_committed = [tp for tp in inputs if (tp.topic, tp.partition) not in committed]
        if never_committed:
            earliest = await consumer.earliest_offsets(*never_committed)
            committed |= {(tp.topic, tp.partition): offset for tp, offset in earliest.items()}
        ends = await consumer.highwaters(*inputs)
        end_of = {(tp.topic, tp.partition): end for tp, end in ends.items()}
        reason = watch.stalled(committed, end_of)
        scorer_ends = {tp: e for tp, e in end_of.items() if tp[0] in (posts_topic, valid_topic)}
        idle = [input_name(*tp) for tp in idle_watch.newly_idle(committed, scorer_ends)]
        return reason, {tp: committed[tp.topic, tp.partition] for tp in inputs}, idle

    async def seek_back(consumer: Any, committed: dict[Any, int]) -> None:
        """Input waits past the committed offsets and the worker holds nothing unacknowledged:
        its consumer has lost its place (or its flow), so fetch again from what was committed,
        as a restart would. At most once per stall timeout; redelivered posts are scored
        again, which the store's upsert absorbs."""
        nonlocal last_seek_back
        now = time.monotonic()
        if now - last_seek_back < settings.worker_stall_timeout_s:
            return
        last_seek_back = now
        log.warning("nothing unacknowledged in hand: seeking the input back to what was committed")
        consumer.stop_flow()  # nothing fetched between the seek and the resume, as in a recovery
        for tp, offset in committed.items():  # not Faust's seek to committed offsets, which
            await consumer.seek(tp, offset)  # leaves a partition with none where it stands
        app.flow_control.resume()
        consumer.resume_flow()

    @app.on_before_shutdown.connect
    async def close_group_offsets(sender: Any, /, *args: Any, **kwargs: Any) -> None:
        await group_offsets.close()

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        body = generate_latest(metrics.registry)
        return web.bytes(body, content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        """Live: the web server answers and the stream is not stuck (see stream/liveness.py)."""
        if stalled_because is not None:
            body = {"status": "stalled", "reason": stalled_because}
            return web.json({**body, "model_version": ctx.engine.version}, status=503)
        return web.json({"status": "ok", "model_version": ctx.engine.version})

    @app.page("/ready")
    async def ready(web: Any, request: Any) -> Any:
        """Ready: tables recovered from their changelogs and no rebalance under way."""
        recovered = tables_recovered()
        ok = recovered and not app.rebalancing
        detail = {"recovered": recovered, "rebalancing": bool(app.rebalancing)}
        return web.json({"status": "ok" if ok else "failing", **detail}, status=200 if ok else 503)


def origin_of(message: Any) -> str:
    """Names the input message: a redelivery has the same origin, a re-send does not."""
    return f"{message.topic}:{message.partition}:{message.offset}"


def origin_partition(origin: str) -> int:
    """The input partition an ``origin_of`` names: the changelog partition its claim is on."""
    return int(origin.rsplit(":", 2)[1])


class Admitted(NamedTuple):
    """A post let through to scoring, with the input message it came in."""

    post: Post
    topic: str
    partition: int
    offset: int


class Forwarded(NamedTuple):
    """An input sent on instead of scored (a dead letter, a post re-keyed to valid-posts):
    acknowledged once Kafka has the message, or a crash would lose it. A re-keyed post
    keeps its event time and the valid-posts partition it went to (its watermark's due)."""

    delivery: Awaitable[Any]
    event_time: float | None = None
    to: str | None = None


Intake = Admitted | Forwarded | None  # None: a duplicate, nothing to score or send


async def _score(
    engine: Scorer,
    batch: list[Admitted],
    dead_letter: Callable[[DeadLetter], Awaitable[Awaitable[Any]]],
) -> list[ScoredPost]:
    """Score a batch; if the batch fails, score one by one and dead-letter the culprits."""
    try:
        verdicts = await engine.classify_async([item.post.text for item in batch])
        return [
            ScoredPost.from_post(item.post, **v) for item, v in zip(batch, verdicts, strict=True)
        ]
    except Exception:
        log.exception("batch of %d failed; retrying one by one", len(batch))
    scored = []
    for item in batch:
        try:
            (verdict,) = await engine.classify_async([item.post.text])
            scored.append(ScoredPost.from_post(item.post, **verdict))
        except Exception as exc:
            delivery = await dead_letter(
                make_dead_letter(
                    item.post.to_json(),
                    "unscorable",
                    repr(exc),
                    topic=item.topic,
                    partition=item.partition,
                    offset=item.offset,
                )
            )
            await delivery
    return scored
