"""The query layer on a store of known data: what comes out is what was stored."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dashboard.queries import DashboardQueries, PostFilter, QueryError
from finsentry.schema import SignalPoint
from finsentry.store import Store, metadata
from tests.dashboard.known_data import (
    OLD_START,
    OLD_WINDOWS,
    T0,
    TICKER_COUNTS,
    TSLA_ALERT,
    WINDOW,
    WINDOWS,
    XSS_TITLE,
    fill,
    market_mean,
)


@pytest.fixture
def queries(sql_store: Store) -> DashboardQueries:
    """The known data on SQLite and on PostgreSQL (``sql_store``, tests/conftest.py)."""
    fill(sql_store)
    return DashboardQueries(sql_store)


END = T0 + WINDOWS * WINDOW


def test_latest_event_time_is_the_newest_window_end(queries):
    assert queries.latest_event_time() == END


def test_nth_newest_window_reaches_back_over_the_gap(queries):
    assert queries.nth_newest_window("market", 1) == END - WINDOW
    assert queries.nth_newest_window("market", WINDOWS + 1) == OLD_START + 2 * WINDOW
    assert queries.nth_newest_window("market", 1_000) == OLD_START
    assert queries.nth_newest_window("ticker:NONE", 5) is None


def test_market_series_returns_the_stored_windows(queries):
    series = queries.series("market", T0, END)
    assert series["mean_score"].tolist() == [market_mean(i) for i in range(WINDOWS)]
    assert series["count"].tolist() == [10 + i for i in range(WINDOWS)]
    assert series["window_start"].iloc[0] == T0
    assert str(series["window_start"].dt.tz) == "UTC"
    assert series["is_spike"].tolist().count(True) == 1


def test_series_range_is_half_open(queries):
    assert len(queries.series("market", OLD_START, T0)) == OLD_WINDOWS
    assert len(queries.series("market", T0 + WINDOW, T0 + 2 * WINDOW)) == 1


def test_heatmap_ranks_tickers_by_posts_in_range(queries):
    assert queries.ticker_heatmap(T0, END, 10)[0] == [f"ticker:{t}" for t in TICKER_COUNTS]
    keys, cells = queries.ticker_heatmap(T0, END, 1)
    assert keys == ["ticker:TSLA"] and set(cells["key"]) == {"ticker:TSLA"}
    assert queries.ticker_heatmap(OLD_START, T0, 10)[0] == []


def test_heatmap_has_one_cell_per_key_and_window(queries):
    _, cells = queries.ticker_heatmap(T0, END, 3)
    assert len(cells) == 3 * WINDOWS
    assert cells[cells["key"] == "ticker:TSLA"]["neg_share"].max() == 0.9


def test_alerts_in_range_and_by_key(queries):
    assert queries.alerts(T0, END)["id"].tolist() == [TSLA_ALERT]
    assert queries.alerts(T0, END, key="ticker:AAPL").empty
    assert queries.alerts(OLD_START, T0).empty


def test_alert_carries_evidence_and_deliveries(queries):
    alert = queries.alert(TSLA_ALERT)
    assert alert["z"] == 5.0 and alert["baseline"] == 0.1
    assert alert["evidence"][0]["title"] == XSS_TITLE
    assert [d["channel"] for d in alert["deliveries"]] == ["slack"]
    assert queries.alert("no-such-alert") is None


def test_ticker_posts_are_paged_newest_first(queries):
    page = queries.posts_page("ticker:TSLA", T0, END, page_size=10)
    assert page.total == 25 and page.page_count == 3
    times = page.rows["published_at"].tolist()
    assert times == sorted(times, reverse=True)
    last = queries.posts_page("ticker:TSLA", T0, END, page=2, page_size=10)
    assert len(last.rows) == 5
    assert set(page.rows["id"]).isdisjoint(last.rows["id"])


def test_page_beyond_the_end_is_clamped(queries):
    assert queries.posts_page("ticker:TSLA", T0, END, page=99, page_size=10).page == 2


@pytest.mark.parametrize("sort", [("published_at", True), ("score", False)])
@pytest.mark.parametrize(("asked", "shown"), [(-1, 0), (-(10**30), 0), (10**30, 2)])
def test_page_outside_the_range_is_clamped_before_the_query(queries, sort, asked, shown):
    """ "prev" on the first page asked PostgreSQL for a negative OFFSET (an uncaught
    DataError) and a huge page overflowed the OFFSET on both databases."""
    page = queries.posts_page("ticker:TSLA", T0, END, sort=sort, page=asked, page_size=10)
    assert page.page == shown and len(page.rows) == (10 if shown == 0 else 5)


def test_sort_by_score_ascending(queries):
    rows = queries.posts_page("ticker:TSLA", T0, END, sort=("score", False), page_size=30).rows
    assert rows["score"].tolist() == sorted(rows["score"].tolist())


def test_filters_combine(queries):
    negative = queries.posts_page("ticker:TSLA", T0, END, filters=PostFilter(sentiment="negative"))
    assert negative.total == 12 and set(negative.rows["sentiment"]) == {"negative"}
    title = queries.posts_page("ticker:TSLA", T0, END, filters=PostFilter(title="story 1"))
    assert title.total == 10  # "Tesla story 10".."19"
    topic = queries.posts_page(
        "ticker:TSLA", T0, END, filters=PostFilter(topic="Legal | Regulation")
    )
    assert topic.rows["id"].tolist() == ["post-24"]


def test_like_wildcards_in_filters_are_literal(queries):
    assert queries.posts_page("market", T0, END, filters=PostFilter(title="%")).total == 0
    assert queries.posts_page("market", T0, END, filters=PostFilter(title="<script>")).total == 1


def test_keys_of_each_kind(queries):
    assert queries.posts_page("market", T0, END).total == 31
    assert queries.posts_page("topic:Stock Commentary", T0, END).total == 1
    assert queries.posts_page("source:reddit", T0, END).rows["source"].tolist() == [
        "reddit:wallstreetbets"
    ]
    assert queries.posts_page("source:rss:bloomberg", T0, END).total == 5


def test_probabilities_come_back_as_stored(queries):
    rows = queries.posts_page("ticker:AAPL", T0, END).rows
    assert rows["sentiment_probs"].iloc[0] == {"negative": 0.1, "neutral": 0.8, "positive": 0.1}


@pytest.mark.parametrize("key", ["ticker:", "nonsense", "user:bob"])
def test_unknown_keys_are_refused(queries, key):
    with pytest.raises(QueryError, match="unknown key"):
        queries.posts_page(key, T0, END)


def test_unknown_sort_column_is_refused(queries):
    with pytest.raises(QueryError, match="cannot sort posts by 'body'"):
        queries.posts_page("market", T0, END, sort=("body", True))


def test_model_versions_newest_first_with_current_marked(queries):
    versions = queries.model_versions()
    assert versions["version"].tolist() == ["v2", "v1"]
    assert versions["is_current"].tolist() == [True, False]


def test_long_ranges_are_merged_in_sql_with_count_weighted_means(queries):
    merged = queries.series("market", T0, END, max_points=4)
    assert merged["window_start"].tolist() == [T0 + 3 * i * WINDOW for i in range(4)]
    counts = [10 + i for i in range(WINDOWS)]
    assert merged["count"].tolist() == [sum(counts[i : i + 3]) for i in range(0, WINDOWS, 3)]
    first = sum(c * market_mean(i) for i, c in enumerate(counts[:3])) / sum(counts[:3])
    assert merged["mean_score"].iloc[0] == pytest.approx(first)
    assert merged["is_spike"].tolist() == [False, False, True, False]
    assert merged["window_end"].iloc[-1] == END


def test_merged_heatmap_keeps_keys_apart(queries):
    _, cells = queries.ticker_heatmap(T0, END, 2, max_points=6)
    assert len(cells) == 12
    assert cells.groupby("key")["count"].sum().to_dict() == {
        "ticker:TSLA": 30 * WINDOWS,
        "ticker:AAPL": 20 * WINDOWS,
    }
    assert cells["neg_share"].max() == pytest.approx((0.9 + 0.1) / 2)


def test_bucket_width_is_a_whole_number_of_windows(queries):
    assert queries.bucket_seconds(T0, END, 12) is None
    assert queries.bucket_seconds(T0, END, 5) == 3 * 300


# Four days of windows for a few keys, with gaps, so long ranges are served by the rollups.
LONG_START = datetime(2026, 2, 1, tzinfo=UTC)
LONG_KEYS = ("market", "ticker:AAA", "ticker:BBB", "ticker:CCC")


def long_points() -> list[SignalPoint]:
    rng = random.Random(3)
    points = []
    for key in LONG_KEYS:
        for i in range(4 * 288):
            if rng.random() < 0.2:
                continue
            start = LONG_START + i * WINDOW
            spike = rng.random() < 0.02
            points.append(
                SignalPoint(
                    key=key,
                    window_start=start,
                    window_end=start + WINDOW,
                    count=rng.randint(0, 40),
                    mean_score=round(rng.uniform(-1, 1), 3),
                    neg_share=round(rng.random(), 3),
                    baseline=None if rng.random() < 0.1 else round(rng.random(), 3),
                    z=None if rng.random() < 0.1 else round(rng.uniform(-5, 5), 3),
                    is_spike=spike,
                )
            )
    return points


def merged_in_pandas(points: pd.DataFrame, start, end, width: int | None) -> pd.DataFrame:
    """What merging the stored windows into ``width``-second buckets says (the reference);
    the windows as stored when they are not merged (``width`` None)."""
    inside = points[(points["window_start"] >= start) & (points["window_start"] < end)].copy()
    if width is None:
        return inside.sort_values(["key", "window_start"], ignore_index=True)
    epoch = (inside["window_start"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    inside["bucket"] = pd.to_datetime(epoch // width * width, unit="s", utc=True)
    inside["score_sum"] = inside["mean_score"] * inside["count"]
    inside["neg_sum"] = inside["neg_share"] * inside["count"]
    grouped = inside.groupby(["key", "bucket"], as_index=False).agg(
        window_end=("window_end", "max"),
        count=("count", "sum"),
        score_sum=("score_sum", "sum"),
        neg_sum=("neg_sum", "sum"),
        baseline=("baseline", "mean"),
        z=("z", "max"),
        is_spike=("is_spike", "any"),
    )
    weight = grouped["count"].where(grouped["count"] > 0)
    grouped["mean_score"] = grouped["score_sum"] / weight
    grouped["neg_share"] = grouped["neg_sum"] / weight
    return grouped.rename(columns={"bucket": "window_start"}).drop(columns=["score_sum", "neg_sum"])


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("sqlite", marks=pytest.mark.unit),
        pytest.param("postgresql", marks=pytest.mark.integration),
    ],
)
def long_store(
    request: pytest.FixtureRequest, tmp_path_factory
) -> Iterator[tuple[Store, pd.DataFrame]]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('long') / 'store.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    store = Store(url)
    points = long_points()
    store.upsert_signal_points(points)
    frame = pd.DataFrame([p.model_dump(exclude={"schema_version"}) for p in points])
    yield store, frame
    if store.dialect == "postgresql":
        metadata.drop_all(store.engine)
    store.close()


long_ranges = st.tuples(
    st.integers(0, 4 * 86_400), st.integers(1, 4 * 86_400), st.sampled_from([20, 50, 300, 1000])
)


@settings(max_examples=40)
@given(span=long_ranges)
def test_merged_series_from_rollups_equal_merging_the_windows(long_store, span) -> None:
    """Whatever mix of daily, hourly and raw spans serves a range, the numbers shown are
    the stored windows' numbers merged, as before the rollups existed."""
    store, points = long_store
    queries = DashboardQueries(store)
    offset, length, max_points = span
    start = LONG_START + timedelta(seconds=offset)
    end = start + timedelta(seconds=length)
    width = queries.bucket_seconds(start, end, max_points)
    want = merged_in_pandas(points, start, end, width)
    for key in LONG_KEYS:
        got = queries.series(key, start, end, max_points)
        mine = want[want["key"] == key].reset_index(drop=True)
        assert got["window_start"].tolist() == mine["window_start"].tolist()
        assert got["window_end"].tolist() == mine["window_end"].tolist()
        assert got["count"].tolist() == mine["count"].tolist()
        assert got["is_spike"].tolist() == mine["is_spike"].tolist()
        for name in ("mean_score", "neg_share", "baseline", "z"):
            assert np.allclose(got[name].astype(float), mine[name].astype(float), equal_nan=True), (
                name
            )


@settings(max_examples=40)
@given(span=long_ranges, limit=st.integers(1, 3))
def test_ticker_ranking_and_heatmap_from_rollups_equal_the_windows(long_store, span, limit):
    store, points = long_store
    queries = DashboardQueries(store)
    offset, length, max_points = span
    start = LONG_START + timedelta(seconds=offset)
    end = start + timedelta(seconds=length)
    inside = points[(points["window_start"] >= start) & (points["window_start"] < end)]
    totals = inside[inside["key"].str.startswith("ticker:")].groupby("key")["count"].sum()
    ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0]))[:limit]
    keys, cells = queries.ticker_heatmap(start, end, limit, max_points)
    assert keys == [key for key, _ in ranked]
    width = queries.bucket_seconds(start, end, max_points)
    want = merged_in_pandas(points[points["key"].isin(keys)], start, end, width)
    want = want.sort_values(["key", "window_start"], ignore_index=True)
    got = cells.sort_values(["key", "window_start"], ignore_index=True)
    assert got["window_start"].tolist() == want["window_start"].tolist()
    assert got["count"].tolist() == want["count"].tolist()
    assert np.allclose(
        got["neg_share"].astype(float), want["neg_share"].astype(float), equal_nan=True
    )
