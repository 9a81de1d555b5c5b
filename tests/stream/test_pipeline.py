from __future__ import annotations

import asyncio
import functools
from collections.abc import Coroutine
from typing import Any

import pytest

from stream.pipeline import BatchPipeline

pytestmark = pytest.mark.unit


class Recorder:
    """Scores on one 'model' (a lock) and records the order of both stages."""

    def __init__(self, score_s: dict[int, float]) -> None:
        self.score_s = score_s
        self.log: list[tuple[str, int]] = []
        self.model = asyncio.Lock()

    async def score(self, n: int) -> int:
        assert not self.model.locked(), "two batches on the model at once"
        async with self.model:
            self.log.append(("score", n))
            await asyncio.sleep(self.score_s.get(n, 0.01))
        return n * 10

    async def finish(self, n: int, result: int) -> None:
        assert result == n * 10
        self.log.append(("finish", n))


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coro)


def test_batches_finish_in_order_even_when_a_later_one_is_quicker() -> None:
    rec = Recorder({0: 0.05, 1: 0.001})

    async def main() -> None:
        pipeline: BatchPipeline[int] = BatchPipeline(depth=2)
        for n in range(6):
            await pipeline.submit(functools.partial(rec.score, n), functools.partial(rec.finish, n))
            assert pipeline.in_flight <= 2
        await pipeline.drain()

    run(main())
    assert [n for stage, n in rec.log if stage == "score"] == list(range(6))
    assert [n for stage, n in rec.log if stage == "finish"] == list(range(6))


def test_submit_returns_while_the_model_works() -> None:
    async def main() -> None:
        started = asyncio.Event()
        release = asyncio.Event()

        async def slow_score() -> int:
            started.set()
            await release.wait()
            return 1

        async def finish(result: int) -> None:
            return None

        pipeline: BatchPipeline[int] = BatchPipeline(depth=2)
        await pipeline.submit(slow_score, finish)  # returns at once: the caller gathers more
        await started.wait()
        assert pipeline.in_flight == 1
        release.set()
        await pipeline.drain()
        assert pipeline.in_flight == 0

    run(main())


def test_a_failed_batch_surfaces_and_cancel_abandons_the_rest() -> None:
    async def main() -> None:
        finished: list[int] = []

        async def score_ok() -> int:
            await asyncio.sleep(0.01)
            return 1

        async def score_bad() -> int:
            raise RuntimeError("model broke")

        async def finish(result: int) -> None:
            finished.append(result)

        pipeline: BatchPipeline[int] = BatchPipeline(depth=1)
        await pipeline.submit(score_ok, finish)
        with pytest.raises(RuntimeError, match="model broke"):
            await pipeline.submit(score_bad, finish)
            await pipeline.drain()
        assert finished == [1]
        never = asyncio.Event()

        async def score_forever() -> int:
            await never.wait()
            return 2

        pipeline = BatchPipeline(depth=3)
        await pipeline.submit(score_forever, finish)
        await pipeline.cancel()
        assert pipeline.in_flight == 0 and finished == [1]

    run(main())


def test_depth_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        BatchPipeline(depth=0)
