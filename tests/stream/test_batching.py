from __future__ import annotations

import asyncio

import pytest

from stream.batching import next_batch

pytestmark = pytest.mark.unit


def test_a_full_batch_is_taken_at_once_in_order() -> None:
    async def main() -> tuple[list[int], list[int]]:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for n in range(10):
            queue.put_nowait(n)
        return await next_batch(queue, 4, 60.0), await next_batch(queue, 4, 60.0)

    assert asyncio.run(main()) == ([0, 1, 2, 3], [4, 5, 6, 7])


def test_a_short_batch_is_handed_over_within_the_wait() -> None:
    async def main() -> tuple[list[int], float]:
        queue: asyncio.Queue[int] = asyncio.Queue()
        queue.put_nowait(1)
        loop = asyncio.get_running_loop()
        started = loop.time()
        batch = await next_batch(queue, 64, 0.05)
        return batch, loop.time() - started

    batch, waited = asyncio.run(main())
    assert batch == [1]
    assert 0.04 <= waited < 5.0


def test_items_that_arrive_during_the_wait_join_the_batch() -> None:
    async def main() -> list[int]:
        queue: asyncio.Queue[int] = asyncio.Queue()

        async def feed() -> None:
            for n in range(3):
                await queue.put(n)
                await asyncio.sleep(0.01)

        feeder = asyncio.ensure_future(feed())
        batch = await next_batch(queue, 3, 10.0)
        await feeder
        return batch

    assert asyncio.run(main()) == [0, 1, 2]


def test_the_first_item_is_awaited_without_a_deadline() -> None:
    async def main() -> bool:
        queue: asyncio.Queue[int] = asyncio.Queue()
        waiting = asyncio.ensure_future(next_batch(queue, 8, 0.01))
        await asyncio.sleep(0.05)
        still_waiting = not waiting.done()
        waiting.cancel()
        return still_waiting

    assert asyncio.run(main())


def test_the_size_must_be_positive() -> None:
    async def main() -> None:
        await next_batch(asyncio.Queue(), 0, 1.0)

    with pytest.raises(ValueError, match="size must be at least 1, not 0"):
        asyncio.run(main())
