"""Callback functions on known data: the numbers on screen are the numbers stored."""

from __future__ import annotations

import base64

import pandas as pd
import pytest
from dash import dcc, html

from dashboard import callbacks, views
from dashboard.app import create_app
from dashboard.frames import alert_path, key_path
from dashboard.queries import SORTABLE, PostFilter
from tests.dashboard.known_data import (
    OLD_START,
    OLD_WINDOWS,
    T0,
    TSLA_ALERT,
    WINDOWS,
    XSS_TITLE,
    known_points,
    market_mean,
)

pytestmark = pytest.mark.unit


def _trace(figure, name):
    return next(trace for trace in figure["data"] if trace["name"] == name)


def _texts(component) -> list[str]:
    """Every string rendered anywhere under a component, in order."""
    if isinstance(component, str):
        return [component]
    if isinstance(component, list | tuple):
        return [text for child in component for text in _texts(child)]
    children = getattr(component, "children", None)
    return [] if children is None else _texts(children)


def _find(component, kind):
    found = [component] if isinstance(component, kind) else []
    children = getattr(component, "children", None)
    if isinstance(children, list | tuple):
        for child in children:
            found += _find(child, kind)
    elif children is not None and not isinstance(children, str):
        found += _find(children, kind)
    return found


def test_overview_shows_the_stored_market_index_volume_and_spikes(queries):
    market, heat, feed = callbacks.overview(queries, "hour", None, None, 10)
    assert list(_trace(market, "sentiment index")["y"]) == [market_mean(i) for i in range(WINDOWS)]
    assert list(_trace(market, "posts")["y"]) == [10 + i for i in range(WINDOWS)]
    assert len(_trace(market, "spike")["x"]) == 1
    assert [row[0] for row in _trace(market, "alert")["customdata"]] == [TSLA_ALERT]
    assert heat["data"][0]["y"] == ["TSLA", "AAPL", "MSFT"]
    assert max(max(row) for row in heat["data"][0]["z"]) == 0.9
    assert TSLA_ALERT in {link.href.rsplit("/", 1)[-1] for link in _find(feed, dcc.Link)}


def test_the_range_filter_changes_the_index(queries):
    week, _, _ = callbacks.overview(queries, "week", None, None, 10)
    day, _, _ = callbacks.overview(queries, "day", None, None, 10)
    assert len(_trace(day, "sentiment index")["x"]) == WINDOWS
    # A week of five-minute windows is more than a line shows: 15-minute buckets in SQL.
    assert len(_trace(week, "sentiment index")["x"]) == 1 + WINDOWS // 3
    stored = sum(10 + i for i in range(WINDOWS)) + 5 * OLD_WINDOWS
    assert sum(_trace(week, "posts")["y"]) == stored


def test_recent_data_opens_on_every_window_of_a_sparse_store(queries):
    """Fewer than 30 market windows in all: "Recent data" reaches back to the oldest."""
    recent, _, _ = callbacks.overview(queries, "recent", None, None, 10)
    stored = sum(10 + i for i in range(WINDOWS)) + 5 * OLD_WINDOWS
    assert sum(_trace(recent, "posts")["y"]) == stored
    assert callbacks.time_range(queries, "recent", None, None).start <= OLD_START


def test_top_n_limits_the_heatmap(queries):
    _, heat, _ = callbacks.overview(queries, "hour", None, None, 2)
    assert heat["data"][0]["y"] == ["TSLA", "AAPL"]


def test_empty_range_says_so(queries):
    market, heat, feed = callbacks.overview(queries, "custom", "2020-01-01", "2020-01-02", 10)
    assert "No market windows" in market["layout"]["annotations"][0]["text"]
    assert "No ticker windows" in heat["layout"]["annotations"][0]["text"]
    assert _texts(feed) == ["No alerts in this range."]


def test_bad_custom_range_is_reported_not_raised(queries):
    market, _, _ = callbacks.overview(queries, "custom", None, None, 10)
    assert "pick both a start and an end" in market["layout"]["annotations"][0]["text"]
    assert "⚠" in callbacks.range_label(queries, "custom", None, None)


def test_refresh_keeps_the_selection(queries):
    """The Interval only re-runs the same function with the same inputs."""
    first = callbacks.overview(queries, "week", None, None, 2)[0]
    again = callbacks.overview(queries, "week", None, None, 2)[0]
    assert first["layout"]["uirevision"] == again["layout"]["uirevision"] == "week|None|None"
    assert _trace(again, "sentiment index")["y"] == _trace(first, "sentiment index")["y"]


def test_key_view_draws_the_baseline_band_on_the_spike_metric(queries, settings):
    figure, alerts = callbacks.key_view(queries, settings, "ticker:TSLA", "hour", None, None)
    assert set(_trace(figure, "baseline")["y"]) == {0.1}
    assert max(_trace(figure, "negative share")["y"]) == 0.9
    assert _trace(figure, "spike")["yaxis"] == "y2"
    assert alert_path(TSLA_ALERT) in {link.href for link in _find(alerts, dcc.Link)}


def test_a_key_from_the_url_is_escaped_in_the_figure_message(queries, settings):
    """Plotly renders annotation text as HTML with links: a crafted /key/ URL drew a link
    (``javascript:`` included) into the page before the message was escaped."""
    key = 'ticker:<a href="javascript:alert(1)">X</a>'
    figure, _ = callbacks.key_view(queries, settings, key, "hour", None, None)
    text = figure["layout"]["annotations"][0]["text"]
    assert "<a" not in text and "&lt;a href=&quot;javascript:alert(1)&quot;&gt;" in text


def test_key_view_marks_buzz_windows(queries, settings):
    figure, _ = callbacks.key_view(queries, settings, "ticker:TSLA", "hour", None, None)
    assert _trace(figure, "buzz (volume spike)")["x"] == []
    point = next(p for p in known_points() if p.key == "ticker:TSLA")
    queries.store.upsert_signal_points([point.model_copy(update={"is_buzz": True})])
    figure, _ = callbacks.key_view(queries, settings, "ticker:TSLA", "hour", None, None)
    assert _trace(figure, "buzz (volume spike)")["x"] == [f"{point.window_start:%Y-%m-%d %H:%M:%S}"]


def test_posts_view_pages_and_labels(queries):
    table, label, page = callbacks.posts_view(
        queries, "ticker:TSLA", "hour", None, None, PostFilter(), "published_at", "desc", 1, 10
    )
    assert (label, page) == ("page 2 of 3 (25 posts)", 1)
    assert len(_find(table, html.Tr)) == 11  # header + 10 posts


def test_posts_table_headers_sort_and_mark_the_sorted_column(queries):
    table, _, _ = callbacks.posts_view(
        queries, "ticker:TSLA", "hour", None, None, PostFilter(), "score", "asc", 0, 10
    )
    headers = [b for b in _find(table, html.Button) if b.id.get("type") == "sort-by"]
    assert [b.id["column"] for b in headers] == list(SORTABLE)  # every sortable column
    assert [b.children for b in headers if b.children.endswith(("▲", "▼"))] == ["score ▲"]
    scores = [row.children[4].children for row in _find(table, html.Tr)[1:]]
    assert scores == sorted(scores, key=float) and scores[0] == "-0.75"


def test_posts_view_reports_bad_keys(queries):
    table, label, _ = callbacks.posts_view(
        queries, "bogus", "hour", None, None, PostFilter(), "published_at", "desc", 0, 10
    )
    assert "unknown key 'bogus'" in _texts(table)[0]
    assert label == ""


def test_untrusted_titles_are_plain_text_children(queries):
    table, _, _ = callbacks.posts_view(
        queries,
        "ticker:TSLA",
        "hour",
        None,
        None,
        PostFilter(title="script"),
        "published_at",
        "desc",
        0,
        10,
    )
    (link,) = _find(table, html.A)
    assert link.children == XSS_TITLE and link.href == "https://example.com/xss"
    table, _, _ = callbacks.posts_view(
        queries,
        "ticker:TSLA",
        "hour",
        None,
        None,
        PostFilter(title="click me"),
        "published_at",
        "desc",
        0,
        10,
    )
    assert _find(table, html.A) == []  # a javascript: URL is never a link
    assert "[click me](javascript:alert(1))" in _texts(table)


def test_probabilities_are_shown(queries):
    table, _, _ = callbacks.posts_view(
        queries, "ticker:AAPL", "hour", None, None, PostFilter(), "published_at", "desc", 0, 10
    )
    assert "neutral (neg 0.10 neu 0.80 pos 0.10)" in _texts(table)


def test_clicks_open_the_right_page():
    heat = {"points": [{"y": "TSLA", "x": "2026-01-05 10:40"}]}
    assert callbacks.open_from_click("heatmap", heat, None) == key_path("ticker:TSLA")
    alert_mark = {"points": [{"customdata": [TSLA_ALERT, "ticker:TSLA", 5.0]}]}
    assert callbacks.open_from_click("market-graph", None, alert_mark) == alert_path(TSLA_ALERT)
    assert callbacks.open_from_click("market-graph", None, {"points": [{"y": 0.1}]}) == key_path(
        "market"
    )


def test_feedback_reaches_the_store_with_who_and_old_label(queries, store):
    message = callbacks.save_feedback(queries, "post-1", "sentiment", "positive", "alice")
    assert message.startswith("Saved correction #1")
    (row,) = store.feedback_labels()
    assert (row["post_id"], row["field"], row["old_label"], row["new_label"], row["user"]) == (
        "post-1",
        "sentiment",
        "negative",
        "positive",
        "alice",
    )
    assert row["created_at"].tzinfo is not None


@pytest.mark.parametrize(
    ("post", "label", "user", "message"),
    [
        (None, "positive", "alice", "Press “correct”"),
        ("post-1", None, "alice", "Pick the new label"),
        ("post-1", "positive", None, "Enter your name"),
        ("post-999", "positive", "alice", "no post with id 'post-999'"),
    ],
)
def test_incomplete_feedback_is_not_saved(queries, store, post, label, user, message):
    assert message in callbacks.save_feedback(queries, post, "sentiment", label, user)
    assert store.feedback_labels() == []


def test_pages_render_from_the_store(queries):
    assert _find(callbacks.render_page(queries, "/"), dcc.Graph)
    alert = callbacks.render_page(queries, alert_path(TSLA_ALERT))
    assert "Alert on ticker:TSLA" in _texts(alert) and "5.00" in _texts(alert)
    assert XSS_TITLE in _texts(alert)
    missing = callbacks.render_page(queries, "/alert/nope")
    assert "No alert with id nope." in _texts(missing)
    model = callbacks.render_page(queries, "/model")
    assert "v2" in _texts(model) and "0.8312" in _texts(model)
    assert "sentiment.macro_f1" in _texts(model)
    assert callbacks.render_page(queries, key_path("topic:Earnings")).children[0].children == (
        "topic:Earnings"
    )
    assert callbacks.render_page(queries, "/elsewhere").id == "not-found"


def test_alert_evidence_can_be_corrected(queries):
    page = callbacks.render_page(queries, alert_path(TSLA_ALERT))
    buttons = [b.id["post"] for b in _find(page, html.Button) if isinstance(b.id, dict)]
    assert buttons == ["post-23", "post-19"]  # the evidence posts, in the alert's order
    assert "fb-submit" in [b.id for b in _find(page, html.Button)]
    assert not [b for b in _find(callbacks.render_page(queries, "/alert/nope"), html.Button)]


def test_model_page_without_registry():
    assert "No model version is registered yet." in _texts(
        views.model_page(
            pd.DataFrame(
                columns=["version", "created_at", "is_current", "metrics", "data_fingerprint"]
            )
        )
    )


def test_range_label_names_the_event_time_span(queries):
    label = callbacks.range_label(queries, "hour", None, None)
    assert label.startswith(f"{T0:%Y-%m-%d %H:%M} to ")


def test_the_login_name_is_who_files_feedback(store, settings):
    app = create_app(store, settings)
    token = base64.b64encode(b"ana:s3cret").decode()
    with app.server.test_request_context(headers={"Authorization": f"Basic {token}"}):
        assert callbacks.feedback_user("mallory") == "ana"
    with app.server.test_request_context():
        assert callbacks.feedback_user("  bob ") == "bob"
        assert callbacks.feedback_user("   ") is None
