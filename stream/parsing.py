"""Turning raw Kafka values into Posts, or into dead letters that say why not."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

from finsentry.schema import DeadLetter, Post, SchemaError

MAX_ERROR_CHARS = 2_000
# Raw bytes kept in a dead letter; the rest of an oversized input is dropped (raw_bytes
# still tells its true size), so the letter itself fits Kafka's default message limit.
MAX_KEPT_RAW_BYTES = 256 * 1024


def make_dead_letter(
    raw: bytes,
    reason: str,
    error: str,
    *,
    topic: str,
    partition: int,
    offset: int,
) -> DeadLetter:
    """A dead letter keeps the raw bytes (at most MAX_KEPT_RAW_BYTES) and their true size."""
    return DeadLetter(
        reason=reason,  # type: ignore[arg-type]
        error=error[:MAX_ERROR_CHARS],
        source_topic=topic,
        partition=partition,
        offset=offset,
        raw_base64=base64.b64encode(raw[:MAX_KEPT_RAW_BYTES]).decode("ascii"),
        raw_bytes=len(raw),
        failed_at=datetime.now(UTC),
    )


def parse_post(
    raw: bytes | None,
    *,
    max_bytes: int,
    topic: str,
    partition: int,
    offset: int,
    now: datetime,
    future_tolerance_s: float,
) -> Post | DeadLetter:
    """A valid Post, or a DeadLetter carrying the reason, the raw bytes and their origin.

    A post published more than ``future_tolerance_s`` after ``now`` is refused
    (``future_event_time``): one such post would carry the watermark past every later one.
    """

    def dead(reason: str, error: str) -> DeadLetter:
        return make_dead_letter(
            raw or b"",
            reason,
            error,
            topic=topic,
            partition=partition,
            offset=offset,
        )

    if raw is None:
        return dead("invalid", "empty message value (tombstone)")
    if len(raw) > max_bytes:
        return dead("oversized", f"{len(raw)} bytes is over the {max_bytes}-byte limit")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return dead("undecodable", f"not UTF-8: {exc}")
    try:
        post = Post.from_json(text)
    except SchemaError as exc:
        schema_error = exc
    else:
        ahead = (post.published_at - now).total_seconds()
        if ahead > future_tolerance_s:
            return dead(
                "future_event_time",
                f"published_at {post.published_at.isoformat()} is {ahead:.0f}s ahead of the "
                f"worker's clock; future_tolerance_s allows {future_tolerance_s:g}s",
            )
        return post
    try:  # only a rejected input is parsed again, to tell bad JSON from a bad post
        json.loads(text)
    except json.JSONDecodeError as exc:
        return dead("not_json", f"not JSON: {exc}")
    return dead("invalid", str(schema_error))
