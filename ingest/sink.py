"""Where sources hand their posts: a small interface, with an in-memory one for unit tests.

``publish`` is synchronous on purpose: it returns only once every post is durable (for Kafka:
acknowledged by all in-sync replicas), so a source may then advance its checkpoint or answer
its caller. While the destination is down it keeps retrying, which pauses the calling source;
it gives up only at the caller's deadline or stop signal, raising ``PublishError``. A post that
no retry can deliver (too large for Kafka, dated beyond ``future_tolerance_s``) is refused
instead and returned with its reason, so one such item cannot stall its source for good.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from finsentry.schema import Post


class PublishError(RuntimeError):
    """Posts were not acknowledged in time; the caller must not treat them as delivered."""

    def __init__(self, message: str, unacknowledged: Sequence[Post]) -> None:
        super().__init__(message)
        self.unacknowledged = list(unacknowledged)


@dataclass(frozen=True)
class Refused:
    """A post refused for good (retrying cannot help), and why: the source reports it as a
    rejection and carries on."""

    post: Post
    reason: str


class PostSink(Protocol):
    def publish(
        self,
        posts: Sequence[Post],
        *,
        timeout_s: float | None = None,
        stop: threading.Event | None = None,
    ) -> list[Refused]:
        """Deliver every post not refused, or raise PublishError; never returns with a post
        unacknowledged and not refused."""

    def close(self) -> None: ...


def story_key(post: Post) -> bytes:
    """Partition key: the post's fingerprint (normalised title and body), as the stream's dedup.

    Syndicated copies of one story, and every re-send of one post, share it, so they land on
    one partition where the stream's per-partition dedup can see them together; the stream
    dedups a post that arrives keyed so in place, without re-keying it first.
    """
    return post.fingerprint.encode("ascii")


class MemorySink:
    """Keeps published posts in a list. Unit tests only; ``down`` simulates an outage."""

    def __init__(self) -> None:
        self.posts: list[Post] = []
        self.down = False

    def publish(
        self,
        posts: Sequence[Post],
        *,
        timeout_s: float | None = None,
        stop: threading.Event | None = None,
    ) -> list[Refused]:
        if self.down:
            raise PublishError(f"memory sink is down; {len(posts)} post(s) not taken", posts)
        self.posts.extend(posts)
        return []

    def close(self) -> None:
        return None
