"""Dated slices of the bundled Guardian headlines for the backfill tests."""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

from finsentry.config import REPO_ROOT
from ingest.timeparse import TimeParseError, parse_day
from stream.backfill_input import TimeRange

GUARDIAN = REPO_ROOT / "data" / "fin_news_headlines" / "guardian_headlines.csv"


def guardian_slice(path: Path, months: tuple[str, ...]) -> Path:
    """The bundled Guardian rows of the given months ('March 2020'), in file order."""
    with GUARDIAN.open(encoding="utf-8", newline="") as source:
        rows = list(csv.reader(source))
    header, body = rows[0], rows[1:]
    kept = [row for row in body if row and row[0].strip().endswith(months)]
    with path.open("w", encoding="utf-8", newline="") as target:
        csv.writer(target).writerows([header, *kept])
    return path


def copy_range(source: Path, target: Path, time_range: TimeRange) -> datetime:
    """The rows of a Guardian file a backfill's range keeps (replay has no range of its own),
    rows without a day included (both reject them); returns the latest event time kept."""
    with source.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    kept, latest = [rows[0]], None
    for row in rows[1:]:
        try:
            when = parse_day(row[0])
        except TimeParseError:
            kept.append(row)
            continue
        if time_range.contains(when):
            kept.append(row)
            latest = when if latest is None else max(latest, when)
    with target.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(kept)
    assert latest is not None, f"no row of {source} in {time_range.describe()}"
    return latest
