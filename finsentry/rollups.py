"""The time grid of the signal rollups: which buckets exist and how a range splits over them.

The store keeps, beside every closed window, hourly, three-hourly and daily sums per key
(count, sum of scores, negative count, ...). A reader asking for [start, end) takes whole
days from the daily rows, the three-hour blocks and hours around them from those rows and
only the ragged edges from the windows themselves, so a 30-day ranking reads a few thousand
rows instead of every window, and a chart bucket reads at most a few rows.
Buckets are aligned to the UTC epoch and a window belongs to the bucket its start lies in,
as it does when the query layer merges windows itself. Plain arithmetic, no I/O.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

HOUR: Final = 3600
DAY: Final = 86_400
RESOLUTIONS: Final = (DAY, 3 * HOUR, HOUR)  # coarsest first; each divides the one before it
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

# A span of a range: (resolution in seconds, or None for the windows themselves, lo, hi).
Span = tuple[int | None, datetime, datetime]


def epoch_seconds(moment: datetime) -> int:
    """Whole seconds since the UTC epoch (floored, like the SQL side's bucket arithmetic)."""
    return (moment - EPOCH) // timedelta(seconds=1)


def bucket_of(moment: datetime, resolution: int) -> int:
    """Epoch second at which the ``resolution``-long bucket holding ``moment`` starts."""
    return epoch_seconds(moment) // resolution * resolution


def from_epoch(seconds: int) -> datetime:
    return EPOCH + timedelta(seconds=seconds)


def spans(start: datetime, end: datetime, resolutions: tuple[int, ...] = RESOLUTIONS) -> list[Span]:
    """Split [start, end) into adjacent spans, each read at the coarsest usable resolution.

    ``resolutions`` come coarsest first. A span at resolution r covers whole r-buckets only;
    what is left at either side goes to the next finer resolution and finally to the raw
    windows (``None``). The spans are in time order and cover the range exactly once.
    """
    if start >= end:
        return []
    if not resolutions:
        return [(None, start, end)]
    resolution, finer = resolutions[0], resolutions[1:]
    lo = bucket_of(start, resolution)
    if from_epoch(lo) < start:
        lo += resolution
    hi = bucket_of(end, resolution)
    if lo >= hi:
        return spans(start, end, finer)
    first, last = from_epoch(lo), from_epoch(hi)
    return [*spans(start, first, finer), (resolution, first, last), *spans(last, end, finer)]


def bucket_width(least: int, window_s: int) -> int:
    """The narrowest bucket at least ``least`` seconds wide that the rollups can serve.

    Under an hour: a divisor of the hour that is a whole number of windows (merged from the
    windows themselves). Then one or two hours (hourly rollups), 3, 6 or 12 hours
    (three-hourly rollups), then whole days (daily rollups): buckets never straddle a rollup
    bucket's edge, and none is made of more than a few rollup rows.
    """
    below_hour = [width for width in range(window_s, HOUR, window_s) if HOUR % width == 0]
    for width in (*below_hour, *(HOUR * hours for hours in (1, 2, 3, 6, 12))):
        if width >= least:
            return width
    return -(-least // DAY) * DAY


def resolutions_within(width: int) -> tuple[int, ...]:
    """The rollup resolutions whose buckets tile a bucket ``width`` seconds wide."""
    return tuple(resolution for resolution in RESOLUTIONS if width % resolution == 0)
