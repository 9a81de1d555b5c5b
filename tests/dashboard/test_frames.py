"""Pure shaping rules: time ranges, downsampling, the baseline band, paths and links."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dashboard.frames import (
    RECENT_SPAN,
    RangeError,
    baseline_band,
    key_path,
    parse_path,
    range_from_search,
    resolve_range,
    safe_url,
    sort_after_click,
)

pytestmark = pytest.mark.unit

LATEST = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("choice", "span"),
    [("hour", timedelta(hours=1)), ("day", timedelta(days=1)), ("week", timedelta(weeks=1))],
)
def test_relative_ranges_end_at_the_newest_window_not_the_wall_clock(choice, span):
    got = resolve_range(choice, None, None, LATEST, NOW)
    assert (got.start, got.end) == (LATEST - span, LATEST)


def test_recent_data_is_the_last_30_days_or_back_to_enough_windows():
    """It opens the dashboard: "last day" of a daily-window store was a single bar."""
    dense = resolve_range("recent", None, None, LATEST, NOW, recent_from=LATEST - timedelta(1))
    assert (dense.start, dense.end) == (LATEST - RECENT_SPAN, LATEST)
    sparse_from = LATEST - timedelta(days=400)
    sparse = resolve_range("recent", None, None, LATEST, NOW, recent_from=sparse_from)
    assert (sparse.start, sparse.end) == (sparse_from, LATEST)
    assert resolve_range("recent", None, None, None, NOW).start == NOW - RECENT_SPAN


def test_an_empty_store_anchors_relative_ranges_at_now():
    assert resolve_range("hour", None, None, None, NOW).end == NOW


def test_custom_range_includes_the_whole_end_day():
    got = resolve_range("custom", "2026-01-02", "2026-01-03T00:00:00", LATEST, NOW)
    assert got.start == datetime(2026, 1, 2, tzinfo=UTC)
    assert got.end == datetime(2026, 1, 4, tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (None, "2026-01-02", "both a start and an end"),
        ("2026-01-05", "2026-01-02", "before it starts"),
        ("yesterday", "2026-01-02", "not a date"),
    ],
)
def test_bad_custom_ranges_say_what_is_wrong(start, end, message):
    with pytest.raises(RangeError, match=message):
        resolve_range("custom", start, end, LATEST, NOW)


def test_unknown_range_choice_is_refused():
    with pytest.raises(RangeError, match="unknown range 'month'"):
        resolve_range("month", None, None, LATEST, NOW)


def test_baseline_band_recovers_the_spread_from_z():
    series = pd.DataFrame(
        {
            "window_start": pd.date_range("2026-01-01", periods=3, freq="5min", tz="UTC"),
            "neg_share": [0.3, 0.5, 0.2],
            "baseline": [0.2, 0.2, 0.25],
            "z": [1.0, 3.0, 0.0],
        }
    )
    band = baseline_band(series, "neg_share", 3.0)
    # spreads: 0.1, 0.1, then carried forward over z == 0
    assert band["upper"].tolist() == pytest.approx([0.5, 0.5, 0.55])
    assert band["lower"].tolist() == pytest.approx([-0.1, -0.1, -0.05])


@given(st.text(min_size=1, max_size=60).filter(lambda s: s.strip()))
def test_key_paths_round_trip(value):
    key = f"topic:{value}"
    assert parse_path(key_path(key)) == ("key", key)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/", ("overview", None)),
        ("/model", ("model", None)),
        ("/alert/abc123", ("alert", "abc123")),
        ("/nope", ("missing", "/nope")),
        ("/key/", ("missing", "/key/")),
    ],
)
def test_parse_path(path, expected):
    assert parse_path(path) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://example.com/a", "https://example.com/a"),
        ("http://x.org", "http://x.org"),
        ("javascript:alert(1)", None),
        (" JAVASCRIPT:alert(1)", None),
        ("data:text/html,<script>", None),
        (None, None),
        ("", None),
    ],
)
def test_only_http_links_are_rendered(url, expected):
    assert safe_url(url) == expected


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        (
            "?start=2026-01-05T10%3A40%3A00%2B00%3A00&end=2026-01-05T10%3A45%3A00%2B00%3A00",
            ("2026-01-05", "2026-01-05"),
        ),
        (
            "?start=2026-01-05T23:55:00+00:00&end=2026-01-06T00:00:00+00:00",
            ("2026-01-05", "2026-01-06"),
        ),
        ("", None),
        (None, None),
        ("?start=2026-01-05", None),
        ("?start=x&end=y", None),
        ("?start=2026-01-06&end=2026-01-05", None),
    ],
)
def test_alert_key_links_choose_the_days_of_the_window(search, expected):
    assert range_from_search(search) == expected


@pytest.mark.unit
def test_a_header_click_sorts_by_its_column_and_a_second_click_flips_it():
    newest = {"column": "published_at", "direction": "desc"}
    assert sort_after_click("published_at", newest) == {
        "column": "published_at",
        "direction": "asc",
    }
    by_title = sort_after_click("title", newest)
    assert by_title == {"column": "title", "direction": "asc"}
    assert sort_after_click("title", by_title)["direction"] == "desc"
    assert sort_after_click("score", by_title) == {"column": "score", "direction": "desc"}
    assert sort_after_click("source", None) == {"column": "source", "direction": "asc"}
