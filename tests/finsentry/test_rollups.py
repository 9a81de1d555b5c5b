"""The rollup time grid: spans tile a range exactly and bucket widths tile the rollups."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from finsentry.rollups import (
    DAY,
    HOUR,
    bucket_of,
    bucket_width,
    epoch_seconds,
    from_epoch,
    resolutions_within,
    spans,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 5, tzinfo=UTC)
moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


@given(start=moments, length=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=90)))
def test_spans_cover_the_range_once_in_order(start: datetime, length: timedelta) -> None:
    end = start + length
    found = spans(start, end)
    if start == end:
        assert found == []
        return
    assert found[0][1] == start and found[-1][2] == end
    for (_, _, hi), (_, lo, _) in pairwise(found):
        assert hi == lo
    for resolution, lo, hi in found:
        assert lo < hi
        if resolution is not None:
            assert epoch_seconds(lo) % resolution == 0 and epoch_seconds(hi) % resolution == 0
            assert lo == from_epoch(epoch_seconds(lo))


@given(start=moments, length=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=90)))
def test_raw_windows_are_read_only_at_the_ragged_edges(start: datetime, length: timedelta) -> None:
    raw = [hi - lo for resolution, lo, hi in spans(start, start + length) if resolution is None]
    # Under an hour at either edge; under two hours in all when no whole hour lies inside.
    assert len(raw) <= 2 and sum(raw, timedelta(0)) < timedelta(hours=2)
    if len(raw) == 2:
        assert all(span < timedelta(hours=1) for span in raw)
    found = spans(start, start + length)
    assert all(hi - lo < timedelta(hours=6) for resolution, lo, hi in found if resolution == HOUR)
    blocks = [hi - lo for resolution, lo, hi in found if resolution == 3 * HOUR]
    assert all(span < timedelta(days=2) for span in blocks)


def test_a_month_is_days_with_blocks_hours_and_windows_at_the_edges() -> None:
    start, end = T0 + timedelta(hours=4, minutes=10), T0 + timedelta(days=30, hours=4)
    assert spans(start, end) == [
        (None, start, T0 + timedelta(hours=5)),
        (HOUR, T0 + timedelta(hours=5), T0 + timedelta(hours=6)),
        (3 * HOUR, T0 + timedelta(hours=6), T0 + timedelta(days=1)),
        (DAY, T0 + timedelta(days=1), T0 + timedelta(days=30)),
        (3 * HOUR, T0 + timedelta(days=30), T0 + timedelta(days=30, hours=3)),
        (HOUR, T0 + timedelta(days=30, hours=3), end),
    ]


def test_a_fraction_of_a_second_past_an_edge_is_not_a_whole_bucket() -> None:
    start = T0 + timedelta(microseconds=1)
    assert spans(start, T0 + timedelta(hours=2))[0] == (None, start, T0 + timedelta(hours=1))


def test_buckets_are_floored_to_the_epoch_grid() -> None:
    assert bucket_of(T0 + timedelta(minutes=59, seconds=59.9), HOUR) == epoch_seconds(T0)
    assert bucket_of(T0 + timedelta(hours=25), DAY) == epoch_seconds(T0) + DAY


@given(least_windows=st.integers(1, 10_000), window_s=st.sampled_from([60, 300, 420, 900, 7200]))
def test_bucket_widths_are_wide_enough_and_tile_the_rollups(
    least_windows: int, window_s: int
) -> None:
    least = least_windows * window_s
    width = bucket_width(least, window_s)
    assert width >= least
    if width < HOUR:
        assert width % window_s == 0 and HOUR % width == 0
        assert resolutions_within(width) == ()
    elif width < DAY:
        assert width % HOUR == 0 and DAY % width == 0
        usable = resolutions_within(width)
        assert usable == ((3 * HOUR, HOUR) if width % (3 * HOUR) == 0 else (HOUR,))
        assert width // usable[0] <= 4  # a bucket reads at most four rollup rows per key
    else:
        assert width % DAY == 0 and resolutions_within(width) == (DAY, 3 * HOUR, HOUR)


def test_bucket_width_is_the_narrowest_on_the_ladder() -> None:
    assert bucket_width(600, 300) == 600
    assert bucket_width(2_100, 300) == 3_600  # a week of windows in 300 columns: hours
    assert bucket_width(8_700, 300) == 10_800  # 30 days in 300 columns: three hours
    assert bucket_width(90_000, 300) == 2 * DAY
