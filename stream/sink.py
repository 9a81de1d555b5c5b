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

    async def write_signals(self, points: Sequence[SignalPoint], alerts: Sequence[Alert]) -> None:
        """Alerts first, so a reader who sees a window's signal point also sees its alert."""
        if alerts:
            await asyncio.to_thread(self.store.upsert_alerts, alerts)
        if points:
            await asyncio.to_thread(self.store.upsert_signal_points, points)
