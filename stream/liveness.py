"""Tells a stuck worker from an idle one, for the worker's liveness check. No Faust import.

A worker is stuck when input waits on a partition it reads (the partition's high water is
past the next offset its stream would see) and no input has reached the stream for
``stall_after_s``. An idle worker has nothing waiting; a busy one keeps seeing input.
Faust's own livelock warnings compare the high water with the fetch position, so they stay
silent when the fetcher has read ahead into a stream that no longer drains.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

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

    def restart_clock(self) -> None:
        """Nothing flows during a rebalance; the silence then is not a stall."""
        self._last_input = self.clock()

    def stalled(self, high_waters: Mapping[TopicPartition, int | None]) -> str | None:
        """Why the worker is stuck, or None. Partitions it never saw input on are not judged."""
        silent_s = self.clock() - self._last_input
        if silent_s < self.stall_after_s:
            return None
        waiting = {
            tp: high - self._next[tp]
            for tp, high in high_waters.items()
            if high is not None and tp in self._next and high > self._next[tp]
        }
        if not waiting:
            return None
        where = ", ".join(f"{topic}[{partition}]" for topic, partition in sorted(waiting))
        return (
            f"no input reached the stream for {silent_s:.0f}s while "
            f"{sum(waiting.values())} messages wait on {where}"
        )
