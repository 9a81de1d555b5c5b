"""Event-time parsers for dated datasets; each returns a timezone-aware UTC datetime.

The formats are the ones documented in ``data/*/SOURCE.md``: CNBC writes
``' 7:51  PM ET Fri, 17 July 2020'`` (US Eastern, odd spacing, ``Sept``), the Guardian a bare
date (``19 July 2020``), Benzinga ISO 8601 with an Eastern offset.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

EASTERN = ZoneInfo("America/New_York")
_SPACES = re.compile(r"\s+")

TimeParser = Callable[[object], datetime]


class TimeParseError(ValueError):
    """A timestamp did not match its format; the message quotes the value."""


def parse_cnbc(value: object) -> datetime:
    """``' 7:51  PM ET Fri, 17 July 2020'`` in US Eastern time -> UTC."""
    text = _SPACES.sub(" ", str(value)).strip().replace("Sept", "Sep")
    for fmt in ("%I:%M %p ET %a, %d %B %Y", "%I:%M %p ET %a, %d %b %Y"):
        try:
            naive = datetime.strptime(text, fmt)
        except ValueError:
            continue
        return naive.replace(tzinfo=EASTERN).astimezone(UTC)
    raise TimeParseError(f"{value!r} is not a CNBC time like '7:51 PM ET Fri, 17 July 2020'")


def parse_day(value: object) -> datetime:
    """``'19 July 2020'`` -> midnight UTC of that day (the source gives no time of day)."""
    text = _SPACES.sub(" ", str(value)).strip()
    for fmt in ("%d %B %Y", "%d %b %Y"):
        try:
            day = datetime.strptime(text, fmt).date()
        except ValueError:
            continue
        return datetime.combine(day, time(0), UTC)
    raise TimeParseError(f"{value!r} is not a date like '19 July 2020' (day month year)")


def iso_parser(default_tz: str = "UTC") -> TimeParser:
    """ISO 8601 strings, epoch seconds, or datetimes; naive values are in ``default_tz``."""
    zone = ZoneInfo(default_tz)

    def parse(value: object) -> datetime:
        if isinstance(value, datetime):
            parsed = value
        elif isinstance(value, date):
            parsed = datetime.combine(value, time(0))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            if not 0 < value < 1e11:
                raise TimeParseError(f"{value!r} is not epoch seconds")
            return datetime.fromtimestamp(value, UTC)
        else:
            text = str(value).strip()
            try:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError as exc:
                raise TimeParseError(f"{value!r} is not an ISO 8601 time") from exc
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=zone)
        return parsed.astimezone(UTC)

    return parse


def strptime_parser(fmt: str, default_tz: str = "UTC") -> TimeParser:
    """A custom ``--time-format``; naive results are in ``default_tz``."""
    zone = ZoneInfo(default_tz)

    def parse(value: object) -> datetime:
        text = _SPACES.sub(" ", str(value)).strip()
        try:
            parsed = datetime.strptime(text, fmt)
        except ValueError as exc:
            raise TimeParseError(f"{value!r} does not match {fmt!r}") from exc
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=zone)
        return parsed.astimezone(UTC)

    return parse
