"""Ordered, overlapped batches: the model scores one batch while the next one is gathered.

Each batch goes through two stages: ``score`` (the model, one batch at a time) and
``finish`` (publish, store, acknowledge). Batch N is scored only once batch N-1 is scored,
and finished only once batch N-1 is finished, so outputs keep the input order. ``submit``
returns while at most ``depth`` batches are in flight, so the caller can gather the next
batch while the model works; it raises what a batch raised. Plain asyncio, no Faust.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")

_Slot = tuple[asyncio.Event, "asyncio.Future[None]"]  # (scored, finished)


class BatchPipeline(Generic[T]):
    def __init__(self, depth: int = 2) -> None:
        if depth < 1:
            raise ValueError(f"depth must be at least 1, not {depth}")
        self.depth = depth
        self._in_flight: deque[_Slot] = deque()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def submit(
        self, score: Callable[[], Awaitable[T]], finish: Callable[[T], Awaitable[None]]
    ) -> None:
        previous = self._in_flight[-1] if self._in_flight else None
        scored = asyncio.Event()
        finished = asyncio.ensure_future(_run(previous, scored, score, finish))
        self._in_flight.append((scored, finished))
        while len(self._in_flight) > self.depth:
            await self._in_flight.popleft()[1]
        while self._in_flight and self._in_flight[0][1].done():
            self._in_flight.popleft()[1].result()  # raises what the batch raised

    async def drain(self) -> None:
        """Wait until every submitted batch is finished."""
        while self._in_flight:
            await self._in_flight.popleft()[1]

    async def cancel(self) -> None:
        """Abandon the batches in flight (their inputs stay unacknowledged)."""
        pending = [finished for _, finished in self._in_flight]
        self._in_flight.clear()
        for finished in pending:
            finished.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


async def _run(
    previous: _Slot | None,
    scored: asyncio.Event,
    score: Callable[[], Awaitable[T]],
    finish: Callable[[T], Awaitable[None]],
) -> None:
    try:
        if previous is not None:
            await previous[0].wait()
        result = await score()
    finally:
        scored.set()  # the next batch may use the model now, even if this one failed
    if previous is not None:
        await previous[1]
    await finish(result)
