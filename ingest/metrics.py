"""Per-source counters and the one log line each poll cycle writes."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

log = logging.getLogger("ingest")


@dataclass
class SourceMetrics:
    """Running totals for one source (a feed, a subreddit, a replay file)."""

    source: str
    fetched: int = 0
    published: int = 0
    rejected: int = 0
    errors: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(
        self, *, fetched: int = 0, published: int = 0, rejected: int = 0, errors: int = 0
    ) -> None:
        with self._lock:
            self.fetched += fetched
            self.published += published
            self.rejected += rejected
            self.errors += errors

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {
                "fetched": self.fetched,
                "published": self.published,
                "rejected": self.rejected,
                "errors": self.errors,
            }

    def log_cycle(self, outcome: str, **cycle: int) -> None:
        """``rss:reuters cycle: 200 new=3 dup=17 rejected=0 | totals fetched=...``."""
        parts = " ".join(f"{k}={v}" for k, v in cycle.items())
        totals = " ".join(f"{k}={v}" for k, v in self.snapshot().items())
        log.info("%s cycle: %s %s | totals %s", self.source, outcome, parts, totals)
