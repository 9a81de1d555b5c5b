"""Duplicate suppression before scoring: exact id first, then a text fingerprint.

State lives in any MutableMapping (a dict in backfill and tests, a Faust table in the
worker), mapping a key to the event time (epoch seconds) it was last seen, so a restarted
worker resumes with what it had seen.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Literal

from finsentry.schema import Post
from finsentry.text import fingerprint

DuplicateKind = Literal["id", "fingerprint"]


@dataclass(frozen=True)
class DedupVerdict:
    duplicate_of: DuplicateKind | None
    fingerprint: str

    @property
    def is_duplicate(self) -> bool:
        return self.duplicate_of is not None


class Deduplicator:
    """Decides whether a post repeats one seen within ``horizon_s`` of event time."""

    def __init__(self, seen: MutableMapping[str, float], horizon_s: float) -> None:
        self.seen = seen
        self.horizon_s = horizon_s

    @staticmethod
    def routing_key(post: Post) -> str:
        """Partition key that sends every copy of a story to the same deduplicator."""
        return fingerprint(post.text)

    def check(self, post: Post) -> DedupVerdict:
        """Classify the post and remember it; a duplicate does not refresh the horizon."""
        at = post.published_at.timestamp()
        text_print = fingerprint(post.text)
        keys: tuple[tuple[str, DuplicateKind], ...] = (
            (f"id:{post.id}", "id"),
            (f"fp:{text_print}", "fingerprint"),
        )
        for key, kind in keys:
            previous = self.seen.get(key)
            if previous is not None and abs(at - previous) <= self.horizon_s:
                return DedupVerdict(kind, text_print)
        for key, _ in keys:
            self.seen[key] = at
        return DedupVerdict(None, text_print)

    def prune(self, now_s: float) -> int:
        """Forget entries older than the horizon; returns how many were dropped."""
        stale = [key for key, at in self.seen.items() if now_s - at > self.horizon_s]
        for key in stale:
            del self.seen[key]
        return len(stale)
