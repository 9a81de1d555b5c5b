"""Pure figure builders: a DataFrame in, a plotly figure (as its JSON dict) out.

Plain dicts rather than ``plotly.graph_objects``: the dashboard redraws on every refresh and
graph objects spend ~100 ms per figure validating; a dict in the documented figure schema
costs nothing and dcc.Graph takes it as is. Time axes are event time (``window_start``,
UTC). Figures carry a ``uirevision`` so an auto-refresh redraws the data without throwing
away the analyst's zoom.
"""

from __future__ import annotations

import html
from typing import Any

import pandas as pd

from dashboard.frames import baseline_band

Figure = dict[str, Any]

NEGATIVE = "#c0392b"
INDEX = "#2c3e50"
BASELINE = "#2980b9"
VOLUME = "rgba(120, 130, 150, 0.35)"
MARGIN = {"l": 50, "r": 50, "t": 40, "b": 40}


def _times(column: pd.Series) -> list[str]:
    """UTC timestamps as plotly date strings (plotly ignores zones; the axes say UTC)."""
    return list(column.dt.tz_convert("UTC").dt.strftime("%Y-%m-%d %H:%M:%S"))


def _values(column: pd.Series) -> list[float | None]:
    return [None if pd.isna(v) else float(v) for v in column.tolist()]


def empty_figure(message: str) -> Figure:
    """A blank figure saying ``message``, escaped: plotly renders annotation text as HTML
    (links included), and the message may carry a key taken from the URL."""
    return {
        "data": [],
        "layout": {
            "xaxis": {"visible": False},
            "yaxis": {"visible": False},
            "annotations": [
                {"text": html.escape(message), "showarrow": False, "font": {"size": 16}}
            ],
            "margin": {"l": 20, "r": 20, "t": 30, "b": 20},
        },
    }


def market_figure(series: pd.DataFrame, alert_frame: pd.DataFrame, uirevision: str) -> Figure:
    """Market sentiment index (mean score per window) over volume bars, spikes and alerts."""
    if series.empty:
        return empty_figure("No market windows in this range")
    x = _times(series["window_start"])
    spikes = series[series["is_spike"].astype(bool)]
    data: list[dict[str, Any]] = [
        {
            "type": "bar",
            "name": "posts",
            "x": x,
            "y": series["count"].astype(int).tolist(),
            "yaxis": "y2",
            "marker": {"color": VOLUME},
            "hovertemplate": "%{x}<br>%{y} posts<extra></extra>",
        },
        {
            "type": "scatter",
            "mode": "lines",
            "name": "sentiment index",
            "x": x,
            "y": _values(series["mean_score"]),
            "line": {"color": INDEX},
            "hovertemplate": "%{x}<br>mean score %{y:.3f}<extra></extra>",
        },
        {
            "type": "scatter",
            "mode": "markers",
            "name": "spike",
            "x": _times(spikes["window_start"]),
            "y": _values(spikes["mean_score"]),
            "marker": {"color": NEGATIVE, "size": 10, "symbol": "x"},
            "hovertemplate": "%{x}<br>spike, mean score %{y:.3f}<extra></extra>",
        },
    ]
    if not alert_frame.empty:
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": "alert",
                "x": _times(alert_frame["window_start"]),
                "y": [1.05] * len(alert_frame),
                "marker": {"color": NEGATIVE, "size": 12, "symbol": "triangle-down"},
                "customdata": [
                    [row.id, row.key, float(row.z)] for row in alert_frame.itertuples(index=False)
                ],
                "hovertemplate": "%{customdata[1]}<br>z %{customdata[2]:.2f}<extra>alert</extra>",
            }
        )
    layout = {
        "uirevision": uirevision,
        "hovermode": "closest",
        "margin": MARGIN,
        "legend": {"orientation": "h", "y": 1.12},
        "xaxis": {"title": {"text": "window start (UTC)"}, "type": "date"},
        "yaxis": {"title": {"text": "mean score"}, "range": [-1.1, 1.15]},
        "yaxis2": {
            "title": {"text": "posts per window"},
            "overlaying": "y",
            "side": "right",
            "showgrid": False,
            "rangemode": "tozero",
        },
    }
    return {"data": data, "layout": layout}


def heatmap_figure(cells: pd.DataFrame, order: list[str], uirevision: str) -> Figure:
    """Negative share per window for the most active tickers (rows in ``order``)."""
    if cells.empty:
        return empty_figure("No ticker windows in this range")
    grid = cells.pivot_table(
        index="key", columns="window_start", values="neg_share", aggfunc="first"
    )
    grid = grid.reindex([key for key in order if key in grid.index])
    z = [[None if pd.isna(v) else float(v) for v in row] for row in grid.to_numpy()]
    trace = {
        "type": "heatmap",
        "z": z,
        "x": _times(pd.Series(grid.columns)),
        "y": [key.removeprefix("ticker:") for key in grid.index],
        "zmin": 0,
        "zmax": 1,
        "colorscale": "Reds",
        "colorbar": {"title": {"text": "neg share"}},
        "hovertemplate": "%{y} %{x}<br>neg share %{z:.2f}<extra></extra>",
    }
    layout = {
        "uirevision": uirevision,
        "margin": {"l": 70, "r": 20, "t": 20, "b": 40},
        "yaxis": {"autorange": "reversed", "type": "category"},
        "xaxis": {"title": {"text": "window start (UTC)"}, "type": "date"},
    }
    return {"data": [trace], "layout": layout}


def key_figure(
    series: pd.DataFrame, key: str, metric: str, z_threshold: float, uirevision: str
) -> Figure:
    """A key's mean score (top) and negative share (bottom); the spike metric in its band,
    spikes and buzz (volume spike) windows marked."""
    if series.empty:
        return empty_figure(f"No windows for {key} in this range")
    x = _times(series["window_start"])
    band = baseline_band(series, metric, z_threshold)
    axis = {"mean_score": "y", "neg_share": "y2"}[metric]
    spikes = series[series["is_spike"].astype(bool)]
    buzz = series[series["is_buzz"].astype(bool)]
    data = [
        {
            "type": "scatter",
            "mode": "lines",
            "x": x,
            "y": _values(band["upper"]),
            "yaxis": axis,
            "line": {"width": 0},
            "showlegend": False,
            "hoverinfo": "skip",
            "name": "band upper",
        },
        {
            "type": "scatter",
            "mode": "lines",
            "x": x,
            "y": _values(band["lower"]),
            "yaxis": axis,
            "line": {"width": 0},
            "fill": "tonexty",
            "fillcolor": "rgba(52, 152, 219, 0.2)",
            "hoverinfo": "skip",
            "name": f"baseline +/- {z_threshold:g} sd",
        },
        {
            "type": "scatter",
            "mode": "lines",
            "x": x,
            "y": _values(band["baseline"]),
            "yaxis": axis,
            "name": "baseline",
            "line": {"dash": "dot", "color": BASELINE},
        },
        {
            "type": "scatter",
            "mode": "lines+markers",
            "x": x,
            "y": _values(series["mean_score"]),
            "yaxis": "y",
            "name": "mean score",
            "line": {"color": INDEX},
            "customdata": series["count"].astype(int).tolist(),
            "hovertemplate": "%{x}<br>%{y:.3f} (%{customdata} posts)<extra></extra>",
        },
        {
            "type": "scatter",
            "mode": "lines+markers",
            "x": x,
            "y": _values(series["neg_share"]),
            "yaxis": "y2",
            "name": "negative share",
            "line": {"color": NEGATIVE},
            "hovertemplate": "%{x}<br>%{y:.3f}<extra></extra>",
        },
        {
            "type": "scatter",
            "mode": "markers",
            "x": _times(spikes["window_start"]),
            "y": _values(spikes[metric]),
            "yaxis": axis,
            "name": "spike",
            "marker": {"color": NEGATIVE, "size": 11, "symbol": "x"},
        },
        {
            "type": "scatter",
            "mode": "markers",
            "x": _times(buzz["window_start"]),
            "y": _values(buzz["mean_score"]),
            "yaxis": "y",
            "name": "buzz (volume spike)",
            "marker": {"color": BASELINE, "size": 12, "symbol": "diamond-open"},
            "customdata": buzz["count"].astype(int).tolist(),
            "hovertemplate": "%{x}<br>buzz: %{customdata} posts<extra></extra>",
        },
    ]
    layout = {
        "uirevision": uirevision,
        "hovermode": "closest",
        "margin": {"l": 50, "r": 20, "t": 30, "b": 40},
        "legend": {"orientation": "h", "y": -0.15},
        "xaxis": {"title": {"text": "window start (UTC)"}, "type": "date", "anchor": "y2"},
        "yaxis": {"title": {"text": "mean score"}, "domain": [0.55, 1.0]},
        "yaxis2": {"title": {"text": "negative share"}, "domain": [0.0, 0.45]},
    }
    return {"data": data, "layout": layout}
