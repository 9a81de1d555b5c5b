"""Tells a stuck worker from an idle or a busy one, for its liveness check. No Faust import.

Progress is the consumer group's committed offset: a worker acknowledges an input only once
what became of it is stored or in Kafka, and Faust commits what was acknowledged every few
seconds. A partition is stalled when its committed offset stays behind its end offset for
``stall_after_s``. An idle worker has committed everything; a busy one keeps committing.

Judging by what was committed, not by what reached the stream, also catches a stream that
lost its place: Faust 0.15.3 can drop fetched messages around a rebalance (a read offset
left past a seek back), and then reads on while its commit can never pass them. Faust's own
livelock warnings compare the fetch position with the high water, so they miss both that and
a fetcher that never resumed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import NamedTuple

TopicPartition = tuple[str, int]


class Behind(NamedTuple):
    """A partition's committed offset while behind its end, and since when it has not moved."""

    committed: int
    since: float


class StallWatch:
    def __init__(self, stall_after_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if stall_after_s <= 0:
            raise ValueError(f"stall_after_s must be positive, not {stall_after_s}")
        self.stall_after_s = stall_after_s
        self.clock = clock
        self._behind: dict[TopicPartition, Behind] = {}

    def rebalanced(self) -> None:
        """Nothing is committed during a rebalance, and the partitions may move: the clocks
        start again once it is over."""
        self._behind.clear()

    def stalled(
        self,
        committed: Mapping[TopicPartition, int],
        end_offsets: Mapping[TopicPartition, int | None],
    ) -> str | None:
        """Why the worker is stuck, or None. A partition whose offsets are unknown is not
        judged; one that is not behind starts its clock afresh once it falls behind."""
        now = self.clock()
        stuck: dict[TopicPartition, tuple[int, int, float]] = {}  # committed, waiting, for
        for tp, end in end_offsets.items():
            done = committed.get(tp)
            if end is None or done is None or end <= done:
                self._behind.pop(tp, None)
                continue
            behind = self._behind.get(tp)
            if behind is None or behind.committed != done:
                self._behind[tp] = Behind(done, now)
            elif now - behind.since >= self.stall_after_s:
                stuck[tp] = (done, end - done, now - behind.since)
        if not stuck:
            return None
        where = ", ".join(f"{t}[{p}]@{stuck[t, p][0]}" for t, p in sorted(stuck))
        waiting = sum(count for _, count, _ in stuck.values())
        silent_s = min(seconds for _, _, seconds in stuck.values())
        return (
            f"nothing committed for {silent_s:.0f}s while {waiting} messages wait past the "
            f"committed offset on {where}"
        )
