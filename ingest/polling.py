"""Runs polled sources (RSS feeds, subreddits, StockTwits symbols) on their own intervals.

One thread visits whichever source is due next, so each source keeps its polite interval
and one slow or broken source only delays, never stops, the others. A source may ask for a
longer pause (a 429's Retry-After). While the sink is down ``poll_once`` blocks inside
``publish``, which pauses all polling until Kafka is back: nothing is fetched that could
not be delivered.
"""

from __future__ import annotations

import email.utils
import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

from ingest.sink import PublishError

log = logging.getLogger(__name__)


class PolledSource(Protocol):
    name: str
    interval_s: float

    def poll_once(self, stop: threading.Event) -> float | None:
        """Fetch and publish what is new; return a delay to wait instead of the interval."""


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def run_polling(
    sources: Sequence[PolledSource],
    stop: threading.Event,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Poll until ``stop`` is set. Every source is polled once at start."""
    if not sources:
        raise ValueError("no sources to poll: configure at least one")
    due = {id(source): clock() for source in sources}
    while not stop.is_set():
        source = min(sources, key=lambda s: due[id(s)])
        wait = due[id(source)] - clock()
        if wait > 0:
            stop.wait(wait)
            continue
        delay: float | None = None
        try:
            delay = source.poll_once(stop)
        except PublishError as exc:
            if stop.is_set():
                break
            log.error("%s: publish failed: %s", source.name, exc)
        except Exception:
            log.exception("%s: poll failed; other sources continue", source.name)
        due[id(source)] = clock() + max(source.interval_s, delay or 0.0)
