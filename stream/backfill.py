"""Backfill core: dedup, score, windows and spikes over posts in event-time order.

The stream worker's pure pieces in the worker's order: ``Deduplicator`` (exact id, then the
text fingerprint within the horizon), the inference engine, ``SignalEngine`` (windows closed
by the watermark, then the spike detector). The input is sorted, so no post is late and the
watermark closes the windows the stream closes; at the end the windows still open are closed
too (flushed), since no later post will come. No Kafka, no Faust.

Scoring of one batch overlaps the reading and deduplication of the next and the windowing of
the one before, on the engine's thread. After a batch the run can snapshot its whole state
(position in the ordered input, dedup horizon, open windows, spike baselines, counters) as
JSON; a run started from that snapshot continues exactly as the uninterrupted run would,
batch boundaries included, so its scores, windows and alerts are identical.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from finsentry.config import Settings
from finsentry.schema import Alert, Post, ScoredPost, SignalPoint
from stream.backfill_input import Ordered
from stream.dedup import Deduplicator
from stream.spikes import SignalEngine

log = logging.getLogger(__name__)


class Scorer(Protocol):
    """What the backfill needs of models.engine.Engine."""

    @property
    def version(self) -> str: ...

    def classify(self, texts: Sequence[str]) -> Sequence[Mapping[str, Any]]: ...


class EventOrderedSeen(dict[str, list[Any]]):
    """Dedup state (``Deduplicator``'s ``[event time, origin]`` per key) whose insertion order
    is event-time order: a key seen again moves to the end. With sorted input the entries past
    the horizon are then a prefix, dropped cheaply."""

    def __setitem__(self, key: str, value: list[Any]) -> None:
        self.pop(key, None)
        super().__setitem__(key, value)

    def forget_before(self, cutoff: float) -> None:
        stale = list(itertools.takewhile(lambda item: item[1][0] < cutoff, self.items()))
        for key, _ in stale:
            del self[key]


@dataclass
class Counters:
    read: int = 0  # posts taken from the ordered input
    duplicates_id: int = 0
    duplicates_fingerprint: int = 0
    scored: int = 0
    unscorable: int = 0
    windows: int = 0  # signal points written
    spikes: int = 0
    alerts: int = 0
    late: int = 0


@dataclass
class BatchOutput:
    posts: list[ScoredPost]
    points: list[SignalPoint]
    alerts: list[Alert]
    consumed: int  # input posts this batch took, duplicates included
    state: dict[str, Any] | None  # snapshot after this batch, when one was due
    final: bool = False


@dataclass
class _Batch:
    unique: list[Post] = field(default_factory=list)
    consumed: int = 0
    last_event: float = 0.0
    # The reading side of the state right after this batch: the next batch is read before
    # this one is windowed, so a snapshot of this batch takes these rather than the live ones.
    position: int = 0
    file_done: list[int] = field(default_factory=list)
    read_counts: dict[str, int] = field(default_factory=dict)
    seen: list[list[Any]] | None = None  # taken only when a checkpoint is due


@dataclass
class _Scored:
    posts: list[ScoredPost]
    failed: list[tuple[Post, Exception]]


class BackfillRun:
    """One backfill over an ordered input, from the start or from a snapshot."""

    def __init__(
        self,
        settings: Settings,
        scorer: Scorer,
        *,
        files: int,
        snapshot: Mapping[str, Any] | None = None,
        batch_size: int | None = None,
        checkpoint_every_s: float | None = None,
        on_unscorable: Callable[[Post, Exception], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.scorer = scorer
        self.batch_size = batch_size or settings.backfill_batch_size
        self.checkpoint_every_s = (
            settings.backfill_checkpoint_interval_s
            if checkpoint_every_s is None
            else checkpoint_every_s
        )
        self.on_unscorable = on_unscorable
        self.clock = clock
        state = snapshot or {}
        self.position = int(state.get("position", 0))
        self.file_done: list[int] = list(state.get("file_done", [0] * files))
        self.counters = Counters(**state.get("counters", {}))
        self.seen = EventOrderedSeen((key, claim) for key, claim in state.get("seen", []))
        self.window_state: dict[str, Any] = dict(state.get("windows", {}))
        self.spike_state: dict[str, Any] = dict(state.get("spikes", {}))
        self.dedup = Deduplicator(self.seen, settings.dedup_horizon_s)
        self.signals = SignalEngine.from_settings(
            settings,
            corrections=False,
            window_state=self.window_state,
            spike_state=self.spike_state,
        )
        self._last_checkpoint = clock()

    def run(
        self, ordered: Iterator[Ordered], stop: threading.Event | None = None
    ) -> Iterator[BatchOutput]:
        """Yield one output per batch, in order; the last is the flush, unless stopped.

        The first ``position`` posts of ``ordered`` are those the snapshot already covers.
        A stop ends the run after the batch in progress, with a snapshot.
        """
        remaining = itertools.islice(ordered, self.position, None)
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="finsentry-backfill")
        pending: tuple[_Batch, Future[_Scored]] | None = None
        try:
            while True:
                stopping = stop is not None and stop.is_set()
                batch = None if stopping else self._next_batch(remaining)
                future = pool.submit(self._score, batch.unique) if batch else None
                if pending is not None:
                    done, scored = pending
                    yield self._window(done, scored.result(), force_state=stopping)
                if batch is None or future is None:
                    break
                pending = (batch, future)
        finally:
            pool.shutdown(wait=True)
        if not stopping:
            yield self._flush()

    def _next_batch(self, remaining: Iterator[Ordered]) -> _Batch | None:
        batch = _Batch()
        for item in remaining:
            post = item.post
            batch.consumed += 1
            self.file_done[item.file_index] += 1
            batch.last_event = post.published_at.timestamp()
            verdict = self.dedup.check(post)
            if verdict.duplicate_of == "id":
                self.counters.duplicates_id += 1
            elif verdict.duplicate_of == "fingerprint":
                self.counters.duplicates_fingerprint += 1
            else:
                batch.unique.append(post)
                if len(batch.unique) >= self.batch_size:
                    break
        if batch.consumed == 0:
            return None
        self.position += batch.consumed
        self.counters.read += batch.consumed
        self.seen.forget_before(batch.last_event - self.settings.dedup_horizon_s)
        batch.position = self.position
        batch.file_done = list(self.file_done)
        batch.read_counts = {name: getattr(self.counters, name) for name in _READ_COUNTERS}
        if self.clock() - self._last_checkpoint >= self.checkpoint_every_s:
            batch.seen = self._seen_snapshot()
        return batch

    def _seen_snapshot(self) -> list[list[Any]]:
        return [[key, claim] for key, claim in self.seen.items()]

    def _score(self, posts: list[Post]) -> _Scored:
        """Score a batch; if the batch fails, one by one, keeping the posts that fail."""
        if not posts:
            return _Scored([], [])
        try:
            verdicts = self.scorer.classify([post.text for post in posts])
            scored = [ScoredPost.from_post(p, **v) for p, v in zip(posts, verdicts, strict=True)]
            return _Scored(scored, [])
        except Exception:
            log.exception("batch of %d failed; scoring one by one", len(posts))
        result = _Scored([], [])
        for post in posts:
            try:
                (verdict,) = self.scorer.classify([post.text])
                result.posts.append(ScoredPost.from_post(post, **verdict))
            except Exception as exc:
                result.failed.append((post, exc))
        return result

    def _window(self, batch: _Batch, result: _Scored, *, force_state: bool) -> BatchOutput:
        points: list[SignalPoint] = []
        alerts: list[Alert] = []
        for post, exc in result.failed:
            self.counters.unscorable += 1
            if self.on_unscorable is not None:
                self.on_unscorable(post, exc)
        scored = result.posts
        for post in scored:
            output = self.signals.add_post(post)
            points += output.points
            alerts += output.alerts
            self.counters.late += len(output.late_keys)
        self._count(scored, points, alerts)
        state = None
        if batch.seen is not None or force_state:
            # When stopping, nothing after this batch was read: the live dedup state is its.
            state = self._snapshot(batch, batch.seen or self._seen_snapshot())
        return BatchOutput(scored, points, alerts, batch.consumed, state)

    def _flush(self) -> BatchOutput:
        output = self.signals.flush()
        self._count([], output.points, output.alerts)
        return BatchOutput([], output.points, output.alerts, 0, None, final=True)

    def _count(
        self, scored: list[ScoredPost], points: list[SignalPoint], alerts: list[Alert]
    ) -> None:
        self.counters.scored += len(scored)
        self.counters.windows += len(points)
        self.counters.spikes += sum(point.is_spike for point in points)
        self.counters.alerts += len(alerts)

    def _snapshot(self, batch: _Batch, seen: list[list[Any]]) -> dict[str, Any]:
        """The whole state right after ``batch`` (the next one may already be read)."""
        self._last_checkpoint = self.clock()
        counters = {**asdict(self.counters), **batch.read_counts}
        state = {
            "position": batch.position,
            "file_done": batch.file_done,
            "seen": seen,
            "windows": self.window_state,
            "spikes": self.spike_state,
            "counters": counters,
        }
        copied: dict[str, Any] = json.loads(json.dumps(state))
        return copied

    def snapshot(self) -> dict[str, Any]:
        """The state now, between batches (after the flush: what a finished run ends with)."""
        batch = _Batch(
            position=self.position,
            file_done=list(self.file_done),
            read_counts={name: getattr(self.counters, name) for name in _READ_COUNTERS},
        )
        return self._snapshot(batch, self._seen_snapshot())


_READ_COUNTERS = ("read", "duplicates_id", "duplicates_fingerprint")
