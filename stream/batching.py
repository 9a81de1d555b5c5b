"""Micro-batches from an asyncio queue: what the scorer takes instead of Faust's ``take()``.

``Stream.take()`` fills its buffer from a background reader and hands it over through a
shared future; after a worker restart that hand-over was seen to wedge (the reader waiting
on a future nobody resolves, the batch loop finding its buffer empty), so the worker idled
for good. Here the agent's own loop admits each event and puts it on a bounded queue, and
one task takes batches off it: while the model scores one batch the loop admits the next,
and a full queue holds the loop back. Plain asyncio, no Faust.
"""

from __future__ import annotations

import asyncio
from typing import TypeVar

T = TypeVar("T")


async def next_batch(queue: asyncio.Queue[T], size: int, within_s: float) -> list[T]:
    """Wait for one item, then take up to ``size`` in all, waiting at most ``within_s`` more."""
    if size < 1:
        raise ValueError(f"size must be at least 1, not {size}")
    batch = [await queue.get()]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while len(batch) < size:
        if not queue.empty():
            batch.append(queue.get_nowait())
            continue
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        try:
            batch.append(await asyncio.wait_for(queue.get(), remaining))
        except TimeoutError:
            break
    return batch
