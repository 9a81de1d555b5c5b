"""Event-time parsing of the bundled datasets' formats (see data/*/SOURCE.md)."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ingest.timeparse import TimeParseError, iso_parser, parse_cnbc, parse_day, strptime_parser

pytestmark = pytest.mark.unit
DATA = Path(__file__).resolve().parents[2] / "data"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (" 7:51  PM ET Fri, 17 July 2020", datetime(2020, 7, 17, 23, 51, tzinfo=UTC)),  # EDT
        ("10:00  AM ET Mon, 10 Sept 2018", datetime(2018, 9, 10, 14, 0, tzinfo=UTC)),
        ("12:05  PM ET Tue, 10 Dec 2019", datetime(2019, 12, 10, 17, 5, tzinfo=UTC)),  # EST
        (" 6:48  PM ET Wed, 29 April 2020", datetime(2020, 4, 29, 22, 48, tzinfo=UTC)),
    ],
)
def test_cnbc_times_are_eastern_converted_to_utc(raw: str, expected: datetime) -> None:
    assert parse_cnbc(raw) == expected


def test_every_cnbc_row_parses() -> None:
    with (DATA / "fin_news_headlines" / "cnbc_headlines.csv").open(encoding="utf-8") as handle:
        times = [row["Time"] for row in csv.DictReader(handle) if row["Time"]]
    parsed = [parse_cnbc(t) for t in times]
    assert len(parsed) == 2800
    assert min(parsed).year == 2017 and max(parsed) == datetime(2020, 7, 17, 23, 51, tzinfo=UTC)


def test_guardian_dates_are_midnight_utc_and_month_only_values_are_refused() -> None:
    assert parse_day("19 July 2020") == datetime(2020, 7, 19, tzinfo=UTC)
    with pytest.raises(TimeParseError, match="February 2019"):
        parse_day("February 2019")


def test_benzinga_offsets_are_kept() -> None:
    parse = iso_parser()
    assert parse("2020-06-05 10:30:00-04:00") == datetime(2020, 6, 5, 14, 30, tzinfo=UTC)
    assert parse("2010-01-05 09:00:00-05:00") == datetime(2010, 1, 5, 14, 0, tzinfo=UTC)


def test_iso_parser_handles_naive_epoch_and_garbage() -> None:
    eastern = iso_parser("America/New_York")
    assert eastern("2020-01-02T09:30:00") == datetime(2020, 1, 2, 14, 30, tzinfo=UTC)
    assert iso_parser()(1_600_000_000) == datetime(2020, 9, 13, 12, 26, 40, tzinfo=UTC)
    assert iso_parser()("2020-01-02T09:30:00Z") == datetime(2020, 1, 2, 9, 30, tzinfo=UTC)
    with pytest.raises(TimeParseError):
        iso_parser()("yesterday")
    with pytest.raises(TimeParseError):
        iso_parser()(-5)


def test_custom_format_in_a_zone() -> None:
    parse = strptime_parser("%d/%m/%Y %H:%M", "Europe/London")
    assert parse("01/07/2020 09:00") == datetime(2020, 7, 1, 8, 0, tzinfo=UTC)
    with pytest.raises(TimeParseError, match="does not match"):
        parse("2020-07-01")
