"""Fitting the worker's outputs into what its producer may send. Plain Python, no Faust.

aiokafka refuses, by raising from ``send``, a record larger than the producer's
``max_request_size`` (Faust's default: 1,000,000 bytes). The scorer could then never
acknowledge its batch, and a restarted worker met the same batch again: 64 posts of emoji
titles made one 1.8 MB signal-input message and a crash loop. So outputs are measured
before they are sent: a batch's observations go out in as many messages as fit, and a post
whose own scored message cannot fit is dead-lettered instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

# A record batch's header and one record's framing (aiokafka's estimate), with room to spare.
RECORD_OVERHEAD_BYTES = 256

T = TypeVar("T")


def fits(key: bytes, value: bytes, max_request_size: int) -> bool:
    """Whether one record with this key and value is within the producer's request size."""
    return len(key) + len(value) + RECORD_OVERHEAD_BYTES <= max_request_size


def split_to_fit(
    items: Sequence[T], encode: Callable[[Sequence[T]], bytes], max_bytes: int
) -> list[bytes]:
    """``items`` encoded as consecutive runs, in order, each at most ``max_bytes``.

    The whole run is tried first (the usual case costs one encoding), then halves; a single
    item that alone does not fit raises ValueError.
    """
    encoded = encode(items)
    if len(encoded) <= max_bytes:
        return [encoded]
    if len(items) <= 1:
        raise ValueError(f"one item encodes to {len(encoded)} bytes; at most {max_bytes} fit")
    middle = len(items) // 2
    return [
        *split_to_fit(items[:middle], encode, max_bytes),
        *split_to_fit(items[middle:], encode, max_bytes),
    ]
