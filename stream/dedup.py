"""Duplicate suppression before scoring: exact id first, then a text fingerprint.

State lives in any MutableMapping (a dict in backfill and tests, a Faust table in the
worker), mapping a key to ``[event time (epoch seconds), origin]`` of the post that claimed
it, so a restarted worker resumes with what it had seen. The origin names the input message
(topic, partition, offset): the worker records a claim as soon as the post is admitted, before
it is scored, so a message delivered again after a crash finds its own claim and passes,
while a re-send of the post (another message) is still a duplicate.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any, Literal

from finsentry.schema import Post

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

    def __init__(self, seen: MutableMapping[str, Any], horizon_s: float) -> None:
        self.seen = seen
        self.horizon_s = horizon_s

    @staticmethod
    def routing_key(post: Post) -> str:
        """Partition key that sends every copy of a story to the same deduplicator."""
        return post.fingerprint

    def check(self, post: Post, origin: str | None = None) -> DedupVerdict:
        """Classify the post and remember it; a duplicate does not refresh the horizon.

        ``origin`` identifies the message carrying the post: the same message seen again
        (a redelivery) is not a duplicate of itself.
        """
        at = post.published_at.timestamp()
        text_print = post.fingerprint
        keys: tuple[tuple[str, DuplicateKind], ...] = (
            (f"id:{post.id}", "id"),
            (f"fp:{text_print}", "fingerprint"),
        )
        for key, kind in keys:
            previous = self.seen.get(key)
            if previous is None:
                continue
            previous_at, previous_origin = previous
            if origin is not None and previous_origin == origin:
                return DedupVerdict(None, text_print)  # redelivered: it claimed both keys
            if abs(at - previous_at) <= self.horizon_s:
                return DedupVerdict(kind, text_print)
        for key, _ in keys:
            self.seen[key] = [at, origin]
        return DedupVerdict(None, text_print)

    def prune(self, now_s: float) -> int:
        """Forget entries older than the horizon; returns how many were dropped."""
        stale = [key for key, (at, _) in self.seen.items() if now_s - at > self.horizon_s]
        for key in stale:
            del self.seen[key]
        return len(stale)
