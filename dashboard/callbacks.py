"""Callbacks: each Dash callback is a thin wrapper over a plain function of the same name.

The plain functions take the query layer and the callback's inputs and return its outputs,
so unit tests and ``bench/dashboard.py`` run exactly the code a browser triggers.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import flask
from dash import ALL, Dash, Input, Output, State, ctx, html, no_update
from dash.exceptions import PreventUpdate

from dashboard import figures, layout, views
from dashboard.frames import (
    RECENT_WINDOWS,
    RangeError,
    TimeRange,
    alert_path,
    key_path,
    parse_path,
    range_from_search,
    resolve_range,
    sort_after_click,
)
from dashboard.queries import DashboardQueries, PostFilter, QueryError
from finsentry.config import Settings
from finsentry.schema import SENTIMENTS, TOPICS
from finsentry.store import StoreError
from stream.spikes import SpikeRules

ALERT_FEED_SIZE = 20


def time_range(q: DashboardQueries, choice: str, start: str | None, end: str | None) -> TimeRange:
    recent_from = q.nth_newest_window("market", RECENT_WINDOWS) if choice == "recent" else None
    return resolve_range(
        choice, start, end, q.latest_event_time(), datetime.now(UTC), recent_from=recent_from
    )


def range_label(q: DashboardQueries, choice: str, start: str | None, end: str | None) -> str:
    try:
        span = time_range(q, choice, start, end)
    except RangeError as exc:
        return f"⚠ {exc}"
    return f"{span.label} · {views.refreshed_at(datetime.now(UTC))}"


def render_page(q: DashboardQueries, pathname: str | None) -> html.Div:
    page, arg = parse_path(pathname)
    if page == "overview":
        return layout.overview()
    if page == "model":
        return views.model_page(q.model_versions())
    if page == "alert" and arg is not None:
        alert = q.alert(arg)
        shown = views.alert_page(alert, arg)
        return shown if alert is None else html.Div([shown, layout.feedback_panel()])
    if page == "key" and arg is not None:
        return layout.key_page(arg)
    return html.Div([html.H2("Not found"), html.P(f"No page at {pathname}.")], id="not-found")


def overview(
    q: DashboardQueries, choice: str, start: str | None, end: str | None, top_n: int
) -> tuple[figures.Figure, figures.Figure, Any]:
    """Market index, ticker heatmap and the alert feed for one range."""
    try:
        span = time_range(q, choice, start, end)
    except RangeError as exc:
        message = figures.empty_figure(str(exc))
        return message, message, html.Div(str(exc))
    revision = f"{choice}|{start}|{end}"
    market = q.series("market", span.start, span.end)
    recent = q.alerts(span.start, span.end, limit=ALERT_FEED_SIZE)
    keys, cells = q.ticker_heatmap(span.start, span.end, int(top_n))
    return (
        figures.market_figure(market, recent, revision),
        figures.heatmap_figure(cells, keys, revision),
        views.alert_table(recent, "alert-feed-table"),
    )


def key_view(
    q: DashboardQueries,
    settings: Settings,
    key: str,
    choice: str,
    start: str | None,
    end: str | None,
) -> tuple[figures.Figure, Any]:
    """One key's series against its baseline band, and its alerts."""
    try:
        span = time_range(q, choice, start, end)
    except RangeError as exc:
        return figures.empty_figure(str(exc)), html.Div(str(exc))
    series = q.series(key, span.start, span.end)
    figure = figures.key_figure(
        series,
        key,
        "neg_share",
        SpikeRules.from_settings(settings).z_threshold,
        f"{key}|{choice}|{start}|{end}",
    )
    return figure, views.alert_table(q.alerts(span.start, span.end, key=key), "key-alerts-table")


def posts_view(
    q: DashboardQueries,
    key: str,
    choice: str,
    start: str | None,
    end: str | None,
    filters: PostFilter,
    sort_col: str,
    sort_dir: str,
    page: int,
    page_size: int,
) -> tuple[Any, str, int]:
    """One server-side page of the key's posts: table, 'page i of n' and the page shown."""
    try:
        span = time_range(q, choice, start, end)
        result = q.posts_page(
            key,
            span.start,
            span.end,
            filters=filters,
            sort=(sort_col, sort_dir != "asc"),
            page=page,
            page_size=page_size,
        )
    except (RangeError, QueryError) as exc:
        return html.Div(str(exc), id="posts-error"), "", 0
    return views.posts_table(result), views.page_label(result), result.page


def open_from_click(trigger: str | None, heat_click: Any, market_click: Any) -> str:
    """Where a click on a chart leads: a heatmap cell to its ticker, an alert mark to its alert."""
    if trigger == "heatmap" and heat_click:
        return key_path(f"ticker:{heat_click['points'][0]['y']}")
    if trigger == "market-graph" and market_click:
        point = market_click["points"][0]
        custom = point.get("customdata")
        if isinstance(custom, list) and custom:
            return alert_path(str(custom[0]))
        return key_path("market")
    raise PreventUpdate


def save_feedback(
    q: DashboardQueries, post_id: str | None, field: str, label: str | None, user: str | None
) -> str:
    if not post_id:
        return "Press “correct” on a post first."
    if not label:
        return "Pick the new label."
    if not user:
        return "Enter your name so the correction can be attributed."
    try:
        number = q.record_feedback(post_id, field, label, user)
    except StoreError as exc:
        return f"Not saved: {exc}"
    return f"Saved correction #{number}: {field} of {post_id} → {label} (by {user})."


def feedback_user(typed: str | None) -> str | None:
    """Who files a correction: the logged-in user when there is a login, else the typed name."""
    auth = flask.request.authorization
    if auth is not None and auth.username:
        return str(auth.username)
    return (typed or "").strip() or None


def register(app: Dash, q: DashboardQueries, settings: Settings) -> None:
    """Wire the plain functions above to the components of ``dashboard.layout``."""
    ranges = [
        Input("range", "value"),
        Input("custom-range", "start_date"),
        Input("custom-range", "end_date"),
    ]

    @app.callback(Output("range-label", "children"), *ranges, Input("refresh", "n_intervals"))
    def _range_label(choice: str, start: str | None, end: str | None, _: int) -> str:
        return range_label(q, choice, start, end)

    @app.callback(
        Output("range", "value"),
        Output("custom-range", "start_date"),
        Output("custom-range", "end_date"),
        Input("url", "search"),
    )
    def _range_from_link(search: str | None) -> tuple[Any, ...]:
        days = range_from_search(search)
        return ("custom", *days) if days else (no_update, no_update, no_update)

    @app.callback(Output("page", "children"), Input("url", "pathname"))
    def _page(pathname: str | None) -> html.Div:
        return render_page(q, pathname)

    @app.callback(
        Output("market-graph", "figure"),
        Output("heatmap", "figure"),
        Output("alert-feed", "children"),
        *ranges,
        Input("top-n", "value"),
        Input("refresh", "n_intervals"),
    )
    def _overview(
        choice: str, start: str | None, end: str | None, top_n: int, _: int
    ) -> tuple[Any, ...]:
        return overview(q, choice, start, end, top_n)

    @app.callback(
        Output("url", "pathname"),
        Input("heatmap", "clickData"),
        Input("market-graph", "clickData"),
        prevent_initial_call=True,
    )
    def _open(heat_click: Any, market_click: Any) -> str:
        return open_from_click(ctx.triggered_id, heat_click, market_click)

    @app.callback(
        Output("key-graph", "figure"),
        Output("key-alerts", "children"),
        Input("key", "data"),
        *ranges,
        Input("refresh", "n_intervals"),
    )
    def _key(key: str, choice: str, start: str | None, end: str | None, _: int) -> tuple[Any, ...]:
        return key_view(q, settings, key, choice, start, end)

    @app.callback(
        Output("posts-table", "children"),
        Output("page-label", "children"),
        Output("page-store", "data"),
        Input("key", "data"),
        *ranges,
        Input("f-sentiment", "value"),
        Input("f-topic", "value"),
        Input("f-source", "value"),
        Input("f-title", "value"),
        Input("sort", "data"),
        Input("prev-page", "n_clicks"),
        Input("next-page", "n_clicks"),
        Input("refresh", "n_intervals"),
        State("page-store", "data"),
    )
    def _posts(
        key: str,
        choice: str,
        start: str | None,
        end: str | None,
        sentiment: str | None,
        topic: str | None,
        source: str | None,
        title: str | None,
        sort: dict[str, str],
        _prev: int | None,
        _next: int | None,
        _tick: int,
        page: int,
    ) -> tuple[Any, ...]:
        step = {"prev-page": -1, "next-page": 1, "refresh": 0}
        page = page + step[ctx.triggered_id] if ctx.triggered_id in step else 0
        filters = PostFilter(sentiment=sentiment, topic=topic, source=source, title=title)
        return posts_view(
            q,
            key,
            choice,
            start,
            end,
            filters,
            sort["column"],
            sort["direction"],
            page,
            settings.dashboard_page_size,
        )

    @app.callback(
        Output("sort", "data"),
        Input({"type": "sort-by", "column": ALL}, "n_clicks"),
        State("sort", "data"),
        prevent_initial_call=True,
    )
    def _sort(_: list[int | None], current: dict[str, str]) -> Any:
        # A re-rendered table brings new, unclicked headers: only a real click counts.
        if not isinstance(ctx.triggered_id, dict) or not ctx.triggered[0]["value"]:
            return no_update
        return sort_after_click(ctx.triggered_id["column"], current)

    @app.callback(
        Output("fb-label", "options"), Output("fb-label", "value"), Input("fb-field", "value")
    )
    def _labels(field: str) -> tuple[list[str], None]:
        return (list(SENTIMENTS) if field == "sentiment" else list(TOPICS)), None

    @app.callback(
        Output("fb-post", "value"),
        Input({"type": "fb-pick", "post": ALL}, "n_clicks"),
        prevent_initial_call=True,
    )
    def _pick(clicks: list[int | None]) -> Any:
        if not any(clicks) or not isinstance(ctx.triggered_id, dict):
            return no_update
        return ctx.triggered_id["post"]

    @app.callback(
        Output("fb-result", "children"),
        Input("fb-submit", "n_clicks"),
        State("fb-post", "value"),
        State("fb-field", "value"),
        State("fb-label", "value"),
        State("fb-user", "value"),
        prevent_initial_call=True,
    )
    def _feedback(
        _: int, post_id: str | None, field: str, label: str | None, user: str | None
    ) -> str:
        return save_feedback(q, post_id, field, label, feedback_user(user))
