"""Batched, idempotent writes of the stream's outputs to the store, off the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

from finsentry.schema import Alert, ScoredPost, SignalPoint
from finsentry.store import Store
from stream.metrics import StreamMetrics


class StoreSink:
    def __init__(self, store: Store, metrics: StreamMetrics) -> None:
        self.store = store
        self.metrics = metrics

    async def write_posts(self, posts: Sequence[ScoredPost]) -> None:
        await asyncio.to_thread(self.store.upsert_posts, posts)
        now = datetime.now(UTC)
        for post in posts:
            self.metrics.end_to_end_seconds.observe((now - post.received_at).total_seconds())

    async def write_points(self, points: Sequence[SignalPoint]) -> None:
        await asyncio.to_thread(self.store.upsert_signal_points, points)

    async def write_corrections(self, points: Sequence[SignalPoint]) -> None:
        """Late posts' corrections: the stored baseline, z and spike flag stay."""
        await asyncio.to_thread(self.store.upsert_signal_points, points, keep_judgement=True)

    async def write_alerts(self, alerts: Sequence[Alert]) -> None:
        await asyncio.to_thread(self.store.upsert_alerts, alerts)
