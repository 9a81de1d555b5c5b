"""Page skeletons: the shell shared by every page, the overview and the drill-down.

Components only; data arrives through callbacks. The range controls live in the shell, so
moving between pages and every auto-refresh keep the analyst's selection.
"""

from __future__ import annotations

from dash import dcc, html

from dashboard.frames import RANGE_LABELS
from finsentry.schema import SENTIMENTS, TOPICS

STYLE_ROW = {"display": "flex", "gap": "12px", "alignItems": "center", "flexWrap": "wrap"}


def shell(refresh_ms: int) -> html.Div:
    return html.Div(
        [
            dcc.Location(id="url", refresh="callback-nav"),
            dcc.Interval(id="refresh", interval=refresh_ms),
            html.Nav(
                [
                    html.Strong("finsentry"),
                    dcc.Link("Overview", href="/", id="nav-overview"),
                    dcc.Link("Model", href="/model", id="nav-model"),
                ],
                style={**STYLE_ROW, "padding": "8px 0", "borderBottom": "1px solid #ddd"},
            ),
            html.Div(
                [
                    dcc.RadioItems(
                        id="range",
                        options=[
                            {"label": label, "value": value}
                            for value, label in RANGE_LABELS.items()
                        ],
                        value="recent",
                        inline=True,
                        persistence=True,
                        persistence_type="session",
                        inputStyle={"marginLeft": "10px"},
                    ),
                    dcc.DatePickerRange(
                        id="custom-range",
                        display_format="YYYY-MM-DD",
                        persistence=True,
                        persistence_type="session",
                    ),
                    html.Span(id="range-label", style={"color": "#555"}),
                ],
                style={**STYLE_ROW, "padding": "8px 0"},
            ),
            html.Div(id="page"),
        ],
        style={"fontFamily": "sans-serif", "margin": "0 16px"},
    )


def overview() -> html.Div:
    return html.Div(
        [
            html.H2("Market sentiment"),
            dcc.Graph(id="market-graph", config={"displaylogo": False}),
            html.Div(
                [
                    html.H3("Negative share, most active tickers"),
                    dcc.Dropdown(
                        id="top-n",
                        options=[5, 10, 20, 30],
                        value=10,
                        clearable=False,
                        persistence=True,
                        persistence_type="session",
                        style={"width": "90px"},
                    ),
                ],
                style=STYLE_ROW,
            ),
            html.P("Click a cell to open that ticker.", style={"color": "#777"}),
            dcc.Graph(id="heatmap", config={"displaylogo": False}),
            html.H3("Alerts"),
            html.Div(id="alert-feed"),
        ]
    )


def key_page(key: str) -> html.Div:
    return html.Div(
        [
            html.H2(key, id="key-title"),
            dcc.Store(id="key", data=key),
            dcc.Graph(id="key-graph", config={"displaylogo": False}),
            html.H3("Alerts"),
            html.Div(id="key-alerts"),
            html.H3("Posts"),
            _post_controls(),
            html.Div(id="posts-table"),
            feedback_panel(),
        ]
    )


def _post_controls() -> html.Div:
    return html.Div(
        [
            dcc.Dropdown(
                id="f-sentiment",
                options=list(SENTIMENTS),
                placeholder="sentiment",
                style={"width": "150px"},
            ),
            dcc.Dropdown(
                id="f-topic", options=list(TOPICS), placeholder="topic", style={"width": "230px"}
            ),
            dcc.Input(
                id="f-source",
                placeholder="source contains",
                debounce=True,
                style={"width": "180px"},
            ),
            dcc.Input(
                id="f-title", placeholder="title contains", debounce=True, style={"width": "220px"}
            ),
            dcc.Store(id="sort", data={"column": "published_at", "direction": "desc"}),
            html.Button("< prev", id="prev-page"),
            html.Span(id="page-label"),
            html.Button("next >", id="next-page"),
            dcc.Store(id="page-store", data=0),
        ],
        style={**STYLE_ROW, "marginBottom": "8px"},
    )


def feedback_panel() -> html.Div:
    return html.Div(
        [
            html.H3("Correct a label"),
            html.P(
                "Press “correct” on a post, pick the right label, and save.",
                style={"color": "#777"},
            ),
            html.Div(
                [
                    dcc.Input(
                        id="fb-post", placeholder="post id", readOnly=True, style={"width": "320px"}
                    ),
                    dcc.Dropdown(
                        id="fb-field",
                        options=["sentiment", "topic"],
                        value="sentiment",
                        clearable=False,
                        style={"width": "130px"},
                    ),
                    dcc.Dropdown(id="fb-label", placeholder="new label", style={"width": "230px"}),
                    dcc.Input(id="fb-user", placeholder="your name", style={"width": "160px"}),
                    html.Button("save", id="fb-submit"),
                ],
                style=STYLE_ROW,
            ),
            html.Div(id="fb-result", style={"marginTop": "6px"}),
        ],
        style={"border": "1px solid #ddd", "padding": "8px", "marginTop": "12px"},
    )
