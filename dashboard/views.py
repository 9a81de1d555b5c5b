"""Data → Dash components for tables and whole pages (alerts, posts, alert page, model).

Post titles, sources and URLs are untrusted: they go into components only as ``children``
strings (which React renders as text) and ``href``\\ s that passed ``safe_url``; nothing here
uses markdown or raw HTML.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Final

import pandas as pd
from dash import dcc, html

from dashboard.frames import alert_path, format_probs, key_path, safe_url
from dashboard.queries import PostPage


def _time(value: Any) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    return str(pd.Timestamp(value).tz_convert("UTC").strftime("%Y-%m-%d %H:%M:%S"))


def _table(header: list[Any], rows: list[list[Any]], table_id: str) -> html.Table:
    return html.Table(
        [
            html.Thead(html.Tr([html.Th(name) for name in header])),
            html.Tbody([html.Tr([html.Td(cell) for cell in row]) for row in rows]),
        ],
        className="fs-table",
        id=table_id,
    )


def link_or_text(text: str, url: str | None) -> html.A | html.Span:
    href = safe_url(url)
    if href is None:
        return html.Span(text)
    return html.A(text, href=href, target="_blank", rel="noopener noreferrer")


def alert_table(frame: pd.DataFrame, table_id: str) -> html.Div | html.Table:
    if frame.empty:
        return html.Div("No alerts in this range.", id=table_id)
    rows = [
        [
            _time(row.window_start),
            dcc.Link(row.key, href=key_path(row.key)),
            row.severity,
            f"{row.z:.2f}",
            f"{row.neg_share:.2f}",
            f"{row.baseline:.2f}",
            int(row.count),
            dcc.Link("open", href=alert_path(row.id)),
        ]
        for row in frame.itertuples(index=False)
    ]
    header = ["window start", "key", "severity", "z", "neg share", "baseline", "posts", ""]
    return _table(header, rows, table_id)


def correct_button(post_id: str) -> html.Button:
    """Picks the post for the correction form (``layout.feedback_panel``)."""
    return html.Button("correct", id={"type": "fb-pick", "post": post_id})


# The posts table's columns: header, and the column its header sorts by.
POST_HEADERS: Final = (
    ("published (UTC)", "published_at"),
    ("source", "source"),
    ("title", "title"),
    ("sentiment", "sentiment"),
    ("score", "score"),
    ("topic", "topic"),
    ("model", "model_version"),
)


def sort_header(label: str, column: str, sort: tuple[str, bool]) -> html.Button:
    """A header that sorts the table by its column when clicked (again: the other way)."""
    sorted_by, descending = sort
    mark = (" ▼" if descending else " ▲") if column == sorted_by else ""
    return html.Button(
        label + mark,
        id={"type": "sort-by", "column": column},
        className="fs-sort",
        title=f"sort by {label}",
    )


def posts_table(page: PostPage) -> html.Div:
    if page.rows.empty:
        return html.Div("No posts match.", id="posts-empty")
    rows = [
        [
            _time(row.published_at),
            row.source,
            link_or_text(row.title, row.url),
            f"{row.sentiment or ''} ({format_probs(row.sentiment_probs)})",
            "" if row.score is None or pd.isna(row.score) else f"{row.score:+.2f}",
            row.topic or "",
            row.model_version or "",
            correct_button(row.id),
        ]
        for row in page.rows.itertuples(index=False)
    ]
    header = [sort_header(label, column, page.sort) for label, column in POST_HEADERS]
    return html.Div(_table([*header, ""], rows, "posts"))


def page_label(page: PostPage) -> str:
    return f"page {page.page + 1} of {page.page_count} ({page.total} posts)"


def alert_page(alert: dict[str, Any] | None, alert_id: str) -> html.Div:
    if alert is None:
        return html.Div(
            [html.H2("Alert not found"), html.P(f"No alert with id {alert_id}.")],
            id="alert-missing",
        )
    facts: list[list[Any]] = [
        ["key", dcc.Link(alert["key"], href=key_path(alert["key"]))],
        ["window (UTC)", f"{_time(alert['window_start'])} to {_time(alert['window_end'])}"],
        ["severity", alert["severity"]],
        ["z statistic", f"{alert['z']:.2f}"],
        ["negative share", f"{alert['neg_share']:.2f}"],
        ["baseline", f"{alert['baseline']:.2f}"],
        ["mean score", f"{alert['mean_score']:.2f}"],
        ["posts in window", int(alert["count"])],
        ["model version", alert["model_version"]],
    ]
    evidence = [
        [
            link_or_text(item.get("title", ""), item.get("url")),
            f"{item['score']:.2f}",
            item["id"],
            correct_button(item["id"]),
        ]
        for item in alert["evidence"]
    ]
    sent = [
        [d["channel"], d["status"], d["attempts"], _time(d["delivered_at"])]
        for d in alert.get("deliveries", [])
    ]
    return html.Div(
        [
            html.H2(f"Alert on {alert['key']}", id="alert-title"),
            _table(["", ""], facts, "alert-facts"),
            html.H3("Evidence: the most negative posts of the window"),
            _table(["title", "score", "post", ""], evidence, "alert-evidence")
            if evidence
            else html.P("No evidence posts recorded."),
            html.H3("Deliveries"),
            _table(["channel", "status", "attempts", "delivered"], sent, "alert-deliveries")
            if sent
            else html.P("Not delivered yet."),
        ],
        id="alert-page",
    )


def model_page(versions: pd.DataFrame) -> html.Div:
    if versions.empty:
        return html.Div(
            [html.H2("Model"), html.P("No model version is registered yet.")], id="model-page"
        )
    current = versions[versions["is_current"].astype(bool)]
    head = current.iloc[0] if not current.empty else None
    summary: list[Any] = [html.H2("Model")]
    if head is None:
        summary.append(html.P("No version is marked current."))
    else:
        summary.append(
            html.P(
                [
                    "Current version: ",
                    html.Strong(head["version"], id="model-current"),
                    f" (registered {_time(head['created_at'])})",
                ]
            )
        )
        summary.append(_table(["metric", "value"], _metric_rows(head["metrics"]), "model-metrics"))
    history = [
        [
            row.version,
            _time(row.created_at),
            "yes" if row.is_current else "",
            row.data_fingerprint[:12],
        ]
        for row in versions.itertuples(index=False)
    ]
    summary += [
        html.H3("All versions"),
        _table(["version", "registered", "current", "data"], history, "model-versions"),
    ]
    return html.Div(summary, id="model-page")


def _metric_rows(metrics: dict[str, Any], prefix: str = "") -> list[list[Any]]:
    """Nested metrics flattened to ``sentiment.macro_f1``-style names, numbers rounded."""
    rows: list[list[Any]] = []
    for name, value in metrics.items():
        label = f"{prefix}{name}"
        if isinstance(value, dict):
            rows.extend(_metric_rows(value, f"{label}."))
        elif isinstance(value, float):
            rows.append([label, f"{value:.4f}"])
        elif isinstance(value, int | str | bool) or value is None:
            rows.append([label, str(value)])
        else:
            rows.append([label, json.dumps(value, default=str)])
    return rows


def refreshed_at(now: datetime) -> str:
    return f"refreshed {now:%H:%M:%S} UTC"
