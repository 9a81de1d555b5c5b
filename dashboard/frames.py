"""Pure data shaping between the query layer and the figures: ranges, bands, paths, links.

No I/O and no Dash here, so every rule the analyst sees (what "last day" means, where the
baseline band lies, which links are safe) is tested without a server.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final
from urllib.parse import parse_qs, quote, unquote, urlsplit

import numpy as np
import pandas as pd

RANGES: Final = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}
# "Recent data" shows at least this much event time, and at least RECENT_WINDOWS market
# windows: the last day of a daily-window store is one bar, no trend.
RECENT_SPAN: Final = timedelta(days=30)
RECENT_WINDOWS: Final = 30
RANGE_LABELS: Final = {
    "recent": "Recent data",
    "hour": "Last hour",
    "day": "Last day",
    "week": "Last week",
    "custom": "Custom",
}


class RangeError(ValueError):
    """The analyst's time range cannot be used; the message says why."""


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime

    @property
    def label(self) -> str:
        return f"{self.start:%Y-%m-%d %H:%M} to {self.end:%Y-%m-%d %H:%M} UTC"


def resolve_range(
    choice: str,
    custom_start: str | None,
    custom_end: str | None,
    latest: datetime | None,
    now: datetime,
    recent_from: datetime | None = None,
) -> TimeRange:
    """The event-time range to show.

    Relative ranges end at the newest closed window in the store (``latest``), not at the
    wall clock, so a backfilled or lagging store still shows its last hour of data.
    ``recent`` reaches back RECENT_SPAN, or further, to ``recent_from`` (the start of the
    RECENT_WINDOWS-th newest market window), when the data is sparser than that.
    Custom dates are whole UTC days, the end day included.
    """
    anchor = latest or now
    if choice in RANGES:
        return TimeRange(anchor - RANGES[choice], anchor)
    if choice == "recent":
        start = anchor - RECENT_SPAN
        return TimeRange(min(start, recent_from) if recent_from else start, anchor)
    if choice != "custom":
        choices = [*RANGE_LABELS]
        raise RangeError(f"unknown range {choice!r}; choose one of {choices}")
    if not custom_start or not custom_end:
        raise RangeError("pick both a start and an end date for a custom range")
    start = _day(custom_start)
    end = _day(custom_end) + timedelta(days=1)
    if end <= start:
        raise RangeError(f"custom range ends ({custom_end}) before it starts ({custom_start})")
    return TimeRange(start, end)


def _day(text: str) -> datetime:
    try:
        day = date.fromisoformat(text[:10])
    except ValueError as exc:
        raise RangeError(f"{text!r} is not a date (YYYY-MM-DD)") from exc
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def baseline_band(series: pd.DataFrame, metric: str, z_threshold: float) -> pd.DataFrame:
    """Roughly where the spike detector would fire: baseline +/- threshold * a spread.

    The store keeps the baseline and the z statistic of the spike metric; the spread is
    recovered as (value - baseline) / z and carried forward over windows where z is 0. The
    detector judges counts (stream/spikes.py), so the band is a normal approximation of its
    threshold at the window's size, not the rule itself.
    """
    value = series[metric]
    spread = ((value - series["baseline"]) / series["z"]).abs()
    spread = spread.replace([np.inf, -np.inf], np.nan).where(series["z"].fillna(0) != 0)
    spread = spread.ffill()
    return pd.DataFrame(
        {
            "window_start": series["window_start"],
            "baseline": series["baseline"],
            "lower": series["baseline"] - z_threshold * spread,
            "upper": series["baseline"] + z_threshold * spread,
        }
    )


def key_path(key: str) -> str:
    return f"/key/{quote(key, safe='')}"


def alert_path(alert_id: str) -> str:
    return f"/alert/{quote(alert_id, safe='')}"


def parse_path(pathname: str | None) -> tuple[str, str | None]:
    """``/key/ticker%3AAAPL`` -> ("key", "ticker:AAPL"); unknown paths -> ("missing", path)."""
    path = pathname or "/"
    if path in ("/", ""):
        return "overview", None
    if path.rstrip("/") == "/model":
        return "model", None
    for page in ("key", "alert"):
        prefix = f"/{page}/"
        if path.startswith(prefix) and len(path) > len(prefix):
            return page, unquote(path[len(prefix) :])
    return "missing", path


def range_from_search(search: str | None) -> tuple[str, str] | None:
    """``?start=ISO&end=ISO`` (the alert messages' key links) as a custom range of whole
    days, or None when the link carries no usable range."""
    query = parse_qs((search or "").lstrip("?"))
    start, end = query.get("start", [""])[0], query.get("end", [""])[0]
    try:
        first, last = _day(start), _day(end)
    except RangeError:
        return None
    if last < first:
        return None
    return first.date().isoformat(), last.date().isoformat()


def safe_url(url: str | None) -> str | None:
    """Only http(s) links are rendered; anything else (``javascript:``) is shown as text."""
    if not url:
        return None
    scheme = urlsplit(url.strip()).scheme.lower()
    return url.strip() if scheme in ("http", "https") else None


def format_probs(probs: dict[str, float] | None) -> str:
    if not probs:
        return ""
    return " ".join(f"{name[:3]} {value:.2f}" for name, value in probs.items())


DESCENDING_FIRST: Final = ("published_at", "score")  # newest and most positive first


def sort_after_click(column: str, current: dict[str, str] | None) -> dict[str, str]:
    """The posts table's sort after a click on ``column``'s header: the sorted column flips
    direction; another column starts newest/highest first for time and score, A-Z otherwise."""
    if current and current.get("column") == column:
        flipped = "asc" if current.get("direction") == "desc" else "desc"
        return {"column": column, "direction": flipped}
    return {"column": column, "direction": "desc" if column in DESCENDING_FIRST else "asc"}
