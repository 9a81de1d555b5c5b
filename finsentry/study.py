"""Event study: do a ticker's spike days line up with its price falls?

Given daily closes per ticker (CSV ``ticker,date,close``) and the ticker's signal points, it
reports (``finsentry signals study --prices FILE``):
- the lift over chance: the share of spike days within ``within_days`` calendar days of a
  large down move (a daily return at or below ``-drop``), against the same share for all
  days with posts, so a ticker that is simply volatile does not look predictive;
- the Spearman rank correlation of a day's mean score with that day's return.
A day is a UTC calendar day; a return is a close against the ticker's previous close in
the file. The analysis is pure (``study``); ``daily_signals`` reads the store.
"""

from __future__ import annotations

import csv
import itertools
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

Day = tuple[str, date]  # (ticker, day)


class StudyError(ValueError):
    """The prices file cannot be used; the message names the file, row and column."""


@dataclass(frozen=True)
class DaySignal:
    mean_score: float
    posts: int
    spike: bool


@dataclass(frozen=True)
class StudyResult:
    spike_days: int
    spike_days_near_drop: int
    post_days: int
    post_days_near_drop: int
    correlated_days: int
    spearman: float | None

    @property
    def spike_share(self) -> float | None:
        return self.spike_days_near_drop / self.spike_days if self.spike_days else None

    @property
    def base_share(self) -> float | None:
        return self.post_days_near_drop / self.post_days if self.post_days else None

    @property
    def lift(self) -> float | None:
        spike, base = self.spike_share, self.base_share
        return spike / base if spike is not None and base else None


def read_prices(path: Path) -> dict[str, dict[date, float]]:
    """Closes per ticker and day from a CSV with the columns ticker, date, close."""
    try:
        handle = path.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise StudyError(f"{path}: cannot read: {exc.strerror}") from exc
    prices: dict[str, dict[date, float]] = defaultdict(dict)
    with handle:
        reader = csv.DictReader(handle)
        missing = {"ticker", "date", "close"} - set(reader.fieldnames or [])
        if missing:
            raise StudyError(f"{path}: missing column(s) {sorted(missing)}; need ticker,date,close")
        for row in reader:
            where = f"{path}:{reader.line_num}"
            try:
                day = date.fromisoformat(row["date"].strip())
            except ValueError as exc:
                raise StudyError(f"{where}: date {row['date']!r} is not YYYY-MM-DD") from exc
            try:
                close = float(row["close"])
            except ValueError as exc:
                raise StudyError(f"{where}: close {row['close']!r} is not a number") from exc
            if not math.isfinite(close) or close <= 0:
                raise StudyError(f"{where}: close {row['close']!r} must be a positive number")
            ticker = row["ticker"].strip().upper()
            if not ticker:
                raise StudyError(f"{where}: empty ticker")
            prices[ticker][day] = close
    if not prices:
        raise StudyError(f"{path}: no price rows")
    return dict(prices)


def daily_returns(prices: Mapping[str, Mapping[date, float]]) -> dict[Day, float]:
    """Each close against the ticker's previous close in the file."""
    returns = {}
    for ticker, closes in prices.items():
        days = sorted(closes)
        for before, day in itertools.pairwise(days):
            returns[(ticker, day)] = closes[day] / closes[before] - 1
    return returns


def study(
    returns: Mapping[Day, float],
    signals: Mapping[Day, DaySignal],
    *,
    drop: float = 0.03,
    within_days: int = 1,
) -> StudyResult:
    """Spike days near large down moves against all post days, and score-return correlation."""
    falls = {day for day, value in returns.items() if value <= -drop}

    def near_fall(ticker: str, day: date) -> bool:
        offsets = range(-within_days, within_days + 1)
        return any((ticker, day + timedelta(days=k)) in falls for k in offsets)

    covered = {ticker for ticker, _ in returns}
    post_days = [d for d in signals if d[0] in covered]
    spike_days = [d for d in post_days if signals[d].spike]
    paired = [(signals[d].mean_score, returns[d]) for d in post_days if d in returns]
    return StudyResult(
        spike_days=len(spike_days),
        spike_days_near_drop=sum(near_fall(*d) for d in spike_days),
        post_days=len(post_days),
        post_days_near_drop=sum(near_fall(*d) for d in post_days),
        correlated_days=len(paired),
        spearman=spearman([s for s, _ in paired], [r for _, r in paired]),
    )


def spearman(xs: list[float], ys: list[float]) -> float | None:
    """Rank correlation (average ranks for ties); None under 3 pairs or a constant side."""
    if len(xs) < 3:
        return None
    rx, ry = _ranks(xs), _ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    vx = sum((a - mx) ** 2 for a in rx)
    vy = sum((b - my) ** 2 for b in ry)
    return cov / math.sqrt(vx * vy) if vx and vy else None


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in order[start : end + 1]:
            ranks[position] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def daily_signals(points: Iterable[Mapping[str, Any]]) -> dict[Day, DaySignal]:
    """``ticker:`` signal points (store rows) merged per ticker and UTC day."""
    sums: dict[Day, list[Any]] = defaultdict(lambda: [0.0, 0, False])
    for point in points:
        kind, _, ticker = point["key"].partition(":")
        if kind != "ticker" or not point["count"]:
            continue
        entry = sums[(ticker, point["window_start"].date())]
        entry[0] += point["mean_score"] * point["count"]
        entry[1] += point["count"]
        entry[2] = entry[2] or bool(point["is_spike"])
    return {day: DaySignal(total / n, n, spike) for day, (total, n, spike) in sums.items()}
