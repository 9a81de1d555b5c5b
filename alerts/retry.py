"""Exponential backoff for transient delivery failures; pure, so tests need no sleeping."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from finsentry.config import Settings


@dataclass(frozen=True)
class RetryPolicy:
    """Wait ``base * factor**(attempt-1)``, capped at ``max``; the peer's Retry-After wins
    when it asks for longer, up to ``max`` too (a peer asking for years, or for more seconds
    than a timedelta holds, must not park or crash the service). After ``max_attempts``
    attempts, counted across restarts by the caller, a delivery is given up."""

    base_s: float = 2.0
    factor: float = 2.0
    max_s: float = 600.0
    max_attempts: int = 8

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            base_s=settings.alerts_retry_base_s,
            factor=settings.alerts_retry_factor,
            max_s=settings.alerts_retry_max_s,
            max_attempts=settings.alerts_retry_max_attempts,
        )

    def delay(self, attempt: int, retry_after_s: float | None = None) -> timedelta | None:
        """Wait before the attempt after ``attempt`` (1-based); None means give up."""
        if attempt < 1:
            raise ValueError(f"attempt numbers start at 1, got {attempt}")
        if attempt >= self.max_attempts:
            return None
        # Multiplied step by step and capped each time, so no factor or attempt can overflow.
        backoff = min(self.base_s, self.max_s)
        for _ in range(attempt - 1):
            if backoff >= self.max_s:
                break
            backoff = min(backoff * self.factor, self.max_s)
        if retry_after_s is not None:
            backoff = max(backoff, min(retry_after_s, self.max_s))
        return timedelta(seconds=backoff)
