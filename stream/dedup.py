"""Duplicate suppression before scoring: exact id first, then a text fingerprint.

State lives in any MutableMapping (a dict in backfill and tests, a Faust table in the
worker), mapping a key to ``[event time (epoch seconds), origin]`` of the post that claimed
it, so a restarted worker resumes with what it had seen. The origin names the input message
(topic, partition, offset): the worker records a claim as soon as the post is admitted, before
it is scored, so a message delivered again after a crash finds its own claim and passes,
while a re-send of the post (another message) is still a duplicate. Claims older than the
horizon are pruned by event time (``PruneSchedule``), so the state stays bounded however
many distinct posts go by.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
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

    def prune(self, now_s: float, owned: Callable[[Any], bool] | None = None) -> int:
        """Forget entries older than the horizon, of them only those whose origin ``owned``
        accepts (the worker may delete only what its current input partition wrote);
        returns how many were dropped."""
        stale = [
            key
            for key, (at, origin) in self.seen.items()
            if now_s - at > self.horizon_s and (owned is None or owned(origin))
        ]
        for key in stale:
            del self.seen[key]
        return len(stale)


class PruneSchedule:
    """When to prune, per input partition: whenever its newest event time has moved a tenth
    of the horizon past the last prune, against a time one horizon behind it. A claim so
    lives two horizons behind the newest post, and a copy that arrives up to a horizon out
    of event-time order (a replay, a backlog read unevenly) still meets its original's.
    The state holds at most 2.1 horizons of posts, and the scan a prune costs is paid once
    per tenth of a horizon, not per post."""

    def __init__(self, horizon_s: float) -> None:
        self.horizon_s = horizon_s
        self.every_s = horizon_s / 10
        self._newest: dict[int, float] = {}
        self._pruned: dict[int, float] = {}

    def due(self, partition: int, event_s: float) -> float | None:
        """The time to prune against (``Deduplicator.prune``'s ``now_s``), or None when no
        prune is due."""
        newest = max(event_s, self._newest.get(partition, event_s))
        self._newest[partition] = newest
        last = self._pruned.setdefault(partition, newest)
        if newest - last < self.every_s:
            return None
        self._pruned[partition] = newest
        return newest - self.horizon_s
