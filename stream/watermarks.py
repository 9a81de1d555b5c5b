"""Event-time progress per input partition, and when a quiet one may be left out. No Faust.

The scorer reads the input partitions at uneven speeds (a backlog, a restart, a burst), so
the largest event time seen says nothing of the partitions still behind. As Flink does with
its per-split watermarks, the aggregator keeps a high mark per input partition (the latest
event time of the posts it has been sent from there) and lets windows close only up to the
lowest mark of the partitions that are active. A partition nothing was sent from yet has no
mark and holds everything back: its posts may be the oldest.

A partition with nothing to read would then freeze the windows. Like Flink's idleness and
Kafka Streams' ``max.task.idle.ms``, a partition that is caught up (its committed offset at
its end offset) and has had nothing new for ``idle_timeout_s`` is declared idle by the worker
that reads it, and stops holding the watermark back until posts from it arrive again.

The marks live in the aggregator's state mapping (a changelog-backed Faust table in the
worker), so they survive restarts and rebalances and every worker's batches meet them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

INPUTS_KEY = "__inputs__"

TopicPartition = tuple[str, int]


def input_name(topic: str, partition: int) -> str:
    """How an input partition is named in the marks (and in signal-input messages)."""
    return f"{topic}:{partition}"


@dataclass(frozen=True)
class Progress:
    """What one signal-input message tells of the input partitions.

    ``inputs`` names every input partition there is (when the sender knew them), ``highs``
    the latest event time per partition among the posts the message completes, ``woken``
    the partitions posts were just re-keyed to (they hold the watermark again, at their old
    mark, until those posts are read there), ``idle`` the partitions the sender found
    caught up and quiet.
    """

    inputs: tuple[str, ...] = ()
    highs: Mapping[str, float] = field(default_factory=dict)
    woken: tuple[str, ...] = ()
    idle: tuple[str, ...] = ()


class InputMarks:
    """The high mark and idleness of each input partition, kept in ``state``."""

    def __init__(self, state: MutableMapping[str, Any]) -> None:
        self.state = state

    def marks(self) -> dict[str, tuple[float | None, bool]]:
        """Each known partition's high mark (None before its first post) and idleness."""
        return {name: (high, idle) for name, (high, idle) in self.state.get(INPUTS_KEY, {}).items()}

    def update(self, progress: Progress) -> None:
        """Record a message's progress: new partitions, higher marks (a partition with a new
        post is active again), the woken ones, then the idle ones."""
        before = self.marks()
        marks = dict(before)
        for name in progress.inputs:
            marks.setdefault(name, (None, False))
        for name, high in progress.highs.items():
            old = marks.get(name, (None, False))[0]
            marks[name] = (high if old is None else max(old, high), False)
        for name in progress.woken:
            marks[name] = (marks.get(name, (None, False))[0], False)
        for name in progress.idle:
            marks[name] = (marks.get(name, (None, False))[0], True)
        if marks != before:  # a new value, never a mutated one: table-backed state sees it
            self.state[INPUTS_KEY] = {name: [high, idle] for name, (high, idle) in marks.items()}

    def low(self) -> float:
        """The event time every active partition has reached: the lowest high mark among
        them (-inf while one has none). With all idle, the highest mark: nothing is read
        anywhere, so nothing older can come but what the lateness allows for."""
        marks = self.marks().values()
        active = [high for high, idle in marks if not idle]
        if active:
            return -math.inf if None in active else min(h for h in active if h is not None)
        known = [high for high, _ in marks if high is not None]
        return max(known, default=-math.inf)


class IdleWatch:
    """Tells, from the committed and end offsets of the partitions a worker reads, which
    are caught up and have had nothing new for ``idle_after_s`` (each once per quiet spell)."""

    def __init__(self, idle_after_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if idle_after_s <= 0:
            raise ValueError(f"idle_after_s must be positive, not {idle_after_s}")
        self.idle_after_s = idle_after_s
        self.clock = clock
        self._quiet: dict[TopicPartition, tuple[int, float]] = {}  # end offset, since
        self._told: set[TopicPartition] = set()

    def newly_idle(
        self, committed: Mapping[TopicPartition, int], end_offsets: Mapping[TopicPartition, int]
    ) -> list[TopicPartition]:
        """The partitions that became idle since the last call, sorted. A partition's clock
        starts when it is first seen and again whenever its end offset moves."""
        now = self.clock()
        found = []
        for tp, end in end_offsets.items():
            last = self._quiet.get(tp)
            if last is None or last[0] != end:
                self._quiet[tp] = (end, now)
                self._told.discard(tp)
                continue
            caught_up = committed.get(tp, -1) >= end
            if caught_up and now - last[1] >= self.idle_after_s and tp not in self._told:
                self._told.add(tp)
                found.append(tp)
        return sorted(found)

    def woken(self, highwaters: Mapping[TopicPartition, int | None]) -> list[TopicPartition]:
        """The partitions told idle whose end offset has since moved (as the consumer's last
        fetch saw it, sooner than the next ``newly_idle``): their new posts may be older
        than the watermark the others have made, so they must hold it again at once."""
        now = self.clock()
        moved = []
        for tp in sorted(self._told):
            end = highwaters.get(tp)
            if end is not None and end > self._quiet[tp][0]:
                self._told.discard(tp)
                self._quiet[tp] = (end, now)
                moved.append(tp)
        return moved

    def told(self) -> list[TopicPartition]:
        """The partitions told idle and not woken since."""
        return sorted(self._told)
