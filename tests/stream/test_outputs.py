from __future__ import annotations

import json
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.outputs import RECORD_OVERHEAD_BYTES, fits, split_to_fit

pytestmark = pytest.mark.unit


def encode(items: Sequence[str]) -> bytes:
    return json.dumps(list(items), ensure_ascii=False).encode()


@given(st.lists(st.text(max_size=40), max_size=60), st.integers(min_value=250, max_value=2_000))
def test_runs_fit_and_keep_every_item_in_order(items: list[str], max_bytes: int) -> None:
    messages = split_to_fit(items, encode, max_bytes)
    assert all(len(message) <= max_bytes for message in messages)
    assert [item for message in messages for item in json.loads(message)] == items


def test_what_fits_whole_is_one_message() -> None:
    assert split_to_fit(["a", "b"], encode, 100) == [b'["a", "b"]']


def test_one_item_too_large_alone_is_an_error() -> None:
    with pytest.raises(ValueError, match="one item encodes to 14 bytes; at most 10 fit"):
        split_to_fit(["a", "0123456789"], encode, 10)


def test_fits_counts_key_value_and_framing() -> None:
    assert fits(b"k", b"v" * (999 - RECORD_OVERHEAD_BYTES), 1_000)
    assert not fits(b"k", b"v" * (1_000 - RECORD_OVERHEAD_BYTES), 1_000)
