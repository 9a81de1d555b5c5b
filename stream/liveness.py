"""Tells a stuck worker from an idle one, for the worker's liveness check. No Faust import.

A worker is stuck when input waits on a partition it reads (the partition's end offset is
past the next offset its stream would see) and no input has reached the stream for
``stall_after_s``. An idle worker has nothing waiting; a busy one keeps seeing input.
Faust's own livelock warnings compare the high water with the fetch position, so they stay
silent when the fetcher has read ahead into a stream that no longer drains, and they know
no high water at all for a partition the fetcher never read.

Where the stream stands on a partition is the offset after the last message it saw; on a
partition it has seen nothing on since the last rebalance, it is where the stream resumes:
the group's committed offset (``resume_from``). A restarted worker whose stream never gets
its input is so judged like one that stopped mid-way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping

TopicPartition = tuple[str, int]


class StallWatch:
    def __init__(self, stall_after_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if stall_after_s <= 0:
            raise ValueError(f"stall_after_s must be positive, not {stall_after_s}")
        self.stall_after_s = stall_after_s
        self.clock = clock
        self._next: dict[TopicPartition, int] = {}
        self._last_input = clock()

    def saw(self, topic: str, partition: int, offset: int) -> None:
        """A message reached the stream (whatever then became of it)."""
        self._next[(topic, partition)] = offset + 1
        self._last_input = self.clock()

    def rebalanced(self) -> None:
        """Nothing flows during a rebalance, and the partitions may move: the silence then
        is not a stall, and where the stream stands is known again once it resumes."""
        self._last_input = self.clock()
        self._next.clear()

    def due(self) -> bool:
        """Silent long enough that waiting input would make a stall: worth asking the broker."""
        return self.clock() - self._last_input >= self.stall_after_s

    def unplaced(self, partitions: Iterable[TopicPartition]) -> list[TopicPartition]:
        """The partitions the stream has seen nothing on since the last rebalance."""
        return sorted(tp for tp in partitions if tp not in self._next)

    def resume_from(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Where the stream resumes on partitions it has seen nothing on (committed offsets)."""
        for tp, offset in offsets.items():
            self._next.setdefault(tp, offset)

    def stalled(self, end_offsets: Mapping[TopicPartition, int | None]) -> str | None:
        """Why the worker is stuck, or None. A partition whose place is unknown is not judged."""
        if not self.due():
            return None
        silent_s = self.clock() - self._last_input
        waiting = {
            tp: end - self._next[tp]
            for tp, end in end_offsets.items()
            if end is not None and tp in self._next and end > self._next[tp]
        }
        if not waiting:
            return None
        where = ", ".join(f"{topic}[{partition}]" for topic, partition in sorted(waiting))
        return (
            f"no input reached the stream for {silent_s:.0f}s while "
            f"{sum(waiting.values())} messages wait on {where}"
        )
