"""Pure figure builders: a DataFrame in, a plotly figure out; no queries, no Dash.

Time axes are event time (``window_start``, UTC). Figures carry a ``uirevision`` so an
auto-refresh redraws the data without throwing away the analyst's zoom.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard.frames import baseline_band

NEGATIVE = "#c0392b"
POSITIVE = "#1e8449"
VOLUME = "rgba(120, 130, 150, 0.35)"


def empty_figure(message: str) -> go.Figure:
    figure = go.Figure()
    figure.update_layout(
        xaxis={"visible": False},
        yaxis={"visible": False},
        annotations=[{"text": message, "showarrow": False, "font": {"size": 16}}],
        margin={"l": 20, "r": 20, "t": 30, "b": 20},
    )
    return figure


def market_figure(series: pd.DataFrame, alert_frame: pd.DataFrame, uirevision: str) -> go.Figure:
    """Market sentiment index (mean score per window) over volume bars, spikes and alerts."""
    if series.empty:
        return empty_figure("No market windows in this range")
    figure = make_subplots(specs=[[{"secondary_y": True}]])
    figure.add_trace(
        go.Bar(
            x=series["window_start"],
            y=series["count"],
            name="posts",
            marker_color=VOLUME,
            hovertemplate="%{x}<br>%{y} posts<extra></extra>",
        ),
        secondary_y=True,
    )
    figure.add_trace(
        go.Scatter(
            x=series["window_start"],
            y=series["mean_score"],
            name="sentiment index",
            mode="lines",
            line={"color": "#2c3e50"},
            hovertemplate="%{x}<br>mean score %{y:.3f}<extra></extra>",
        ),
        secondary_y=False,
    )
    spikes = series[series["is_spike"].astype(bool)]
    figure.add_trace(
        go.Scatter(
            x=spikes["window_start"],
            y=spikes["mean_score"],
            name="spike",
            mode="markers",
            marker={"color": NEGATIVE, "size": 10, "symbol": "x"},
            hovertemplate="%{x}<br>spike, mean score %{y:.3f}<extra></extra>",
        ),
        secondary_y=False,
    )
    if not alert_frame.empty:
        figure.add_trace(
            go.Scatter(
                x=alert_frame["window_start"],
                y=[1.05] * len(alert_frame),
                name="alert",
                mode="markers",
                marker={"color": NEGATIVE, "size": 12, "symbol": "triangle-down"},
                customdata=alert_frame[["id", "key", "z"]].to_numpy(),
                hovertemplate="%{customdata[1]}<br>z %{customdata[2]:.2f}<extra>alert</extra>",
            ),
            secondary_y=False,
        )
    figure.update_yaxes(title_text="mean score", range=[-1.1, 1.15], secondary_y=False)
    figure.update_yaxes(title_text="posts per window", showgrid=False, secondary_y=True)
    figure.update_layout(
        uirevision=uirevision,
        hovermode="closest",
        legend={"orientation": "h", "y": 1.12},
        margin={"l": 50, "r": 50, "t": 40, "b": 40},
        xaxis_title="window start (UTC)",
    )
    return figure


def heatmap_figure(cells: pd.DataFrame, order: list[str], uirevision: str) -> go.Figure:
    """Negative share per window for the most active tickers (rows in ``order``)."""
    if cells.empty:
        return empty_figure("No ticker windows in this range")
    grid = cells.pivot_table(
        index="key", columns="window_start", values="neg_share", aggfunc="first"
    )
    grid = grid.reindex([key for key in order if key in grid.index])
    labels = [key.removeprefix("ticker:") for key in grid.index]
    figure = go.Figure(
        go.Heatmap(
            z=grid.to_numpy(),
            x=list(grid.columns),
            y=labels,
            zmin=0,
            zmax=1,
            colorscale="Reds",
            colorbar={"title": "neg share"},
            hovertemplate="%{y} %{x}<br>neg share %{z:.2f}<extra></extra>",
        )
    )
    figure.update_layout(
        uirevision=uirevision,
        margin={"l": 70, "r": 20, "t": 20, "b": 40},
        yaxis={"autorange": "reversed", "type": "category"},
        xaxis_title="window start (UTC)",
    )
    return figure


def key_figure(
    series: pd.DataFrame, key: str, metric: str, z_threshold: float, uirevision: str
) -> go.Figure:
    """A key's mean score and negative share, the spike metric against its baseline band."""
    if series.empty:
        return empty_figure(f"No windows for {key} in this range")
    figure = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        subplot_titles=("mean score", "negative share"),
    )
    band = baseline_band(series, metric, z_threshold)
    row_of = {"mean_score": 1, "neg_share": 2}
    figure.add_trace(
        go.Scatter(
            x=band["window_start"],
            y=band["upper"],
            mode="lines",
            line={"width": 0},
            showlegend=False,
            hoverinfo="skip",
        ),
        row=row_of[metric],
        col=1,
    )
    figure.add_trace(
        go.Scatter(
            x=band["window_start"],
            y=band["lower"],
            mode="lines",
            line={"width": 0},
            fill="tonexty",
            fillcolor="rgba(52, 152, 219, 0.2)",
            name=f"baseline ± {z_threshold:g} sd",
            hoverinfo="skip",
        ),
        row=row_of[metric],
        col=1,
    )
    figure.add_trace(
        go.Scatter(
            x=band["window_start"],
            y=band["baseline"],
            mode="lines",
            name="baseline",
            line={"dash": "dot", "color": "#2980b9"},
        ),
        row=row_of[metric],
        col=1,
    )
    figure.add_trace(
        go.Scatter(
            x=series["window_start"],
            y=series["mean_score"],
            mode="lines+markers",
            name="mean score",
            line={"color": "#2c3e50"},
            customdata=series[["count"]],
            hovertemplate="%{x}<br>%{y:.3f} (%{customdata[0]} posts)<extra></extra>",
        ),
        row=1,
        col=1,
    )
    figure.add_trace(
        go.Scatter(
            x=series["window_start"],
            y=series["neg_share"],
            mode="lines+markers",
            name="negative share",
            line={"color": NEGATIVE},
            hovertemplate="%{x}<br>%{y:.3f}<extra></extra>",
        ),
        row=2,
        col=1,
    )
    spikes = series[series["is_spike"].astype(bool)]
    figure.add_trace(
        go.Scatter(
            x=spikes["window_start"],
            y=spikes[metric],
            mode="markers",
            name="spike",
            marker={"color": NEGATIVE, "size": 11, "symbol": "x"},
        ),
        row=row_of[metric],
        col=1,
    )
    figure.update_layout(
        uirevision=uirevision,
        hovermode="closest",
        margin={"l": 50, "r": 20, "t": 40, "b": 40},
        legend={"orientation": "h", "y": -0.15},
    )
    figure.update_xaxes(title_text="window start (UTC)", row=2, col=1)
    return figure
