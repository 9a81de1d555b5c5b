"""The dashboard's read path: parameterised SQLAlchemy Core over ``finsentry.store`` tables.

Every function returns a pandas DataFrame (or a plain dict) shaped for one figure or table,
so figure builders never see SQL and callbacks never build it. Series read the
pre-aggregated ``signal_points``; when a range holds more windows than a chart can show they
are merged in SQL into coarser buckets, read from the hourly and daily ``signal_rollups``
wherever a bucket is made of whole rollup buckets (``finsentry.rollups``), so a 30-day chart
or ticker ranking reads a few thousand rows. Post tables read ``posts`` through its time
indexes and are always bounded by a time range and a page, so a 1,000,000-post store
answers quickly.
Time columns are fetched raw and parsed by pandas in one vectorised pass (stored as UTC).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import pandas as pd
from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    and_,
    case,
    func,
    or_,
    select,
    type_coerce,
    union_all,
)

from finsentry.rollups import bucket_width, epoch_seconds, resolutions_within, spans
from finsentry.store import (
    Store,
    alerts,
    deliveries,
    model_versions,
    post_tickers,
    posts,
    sql_epoch_seconds,
)
from finsentry.store import signal_points as sp
from finsentry.store import signal_rollups as ro

TIME_COLUMNS: Final = ("window_start", "window_end", "published_at", "created_at")
SERIES_POINTS: Final = 1_000  # most points per series line
HEATMAP_COLUMNS: Final = 300  # most time buckets across the heatmap
SERIES_COLUMNS: Final = (
    "key",
    "window_start",
    "window_end",
    "count",
    "mean_score",
    "neg_share",
    "baseline",
    "z",
    "is_spike",
    "is_buzz",
)
POST_COLUMNS: Final = (
    "id",
    "published_at",
    "source",
    "title",
    "url",
    "sentiment",
    "sentiment_probs",
    "score",
    "topic",
    "model_version",
)
SORTABLE: Final = (
    "published_at",
    "source",
    "title",
    "sentiment",
    "score",
    "topic",
    "model_version",
)
# The largest OFFSET a page may reach: within PostgreSQL's bigint and SQLite's integer.
MAX_OFFSET: Final = 2**62
ALERT_COLUMNS: Final = (
    "id",
    "key",
    "window_start",
    "window_end",
    "severity",
    "z",
    "neg_share",
    "mean_score",
    "count",
    "baseline",
    "model_version",
)


class QueryError(ValueError):
    """A dashboard query was asked for something it cannot answer (bad key, sort column)."""


@dataclass(frozen=True)
class PostFilter:
    """What the analyst typed into the post table's filter row; empty means no filter."""

    sentiment: str | None = None
    topic: str | None = None
    source: str | None = None
    title: str | None = None


@dataclass(frozen=True)
class PostPage:
    rows: pd.DataFrame
    total: int
    page: int
    page_size: int
    sort: tuple[str, bool] = field(default=("published_at", True))

    @property
    def page_count(self) -> int:
        return max(1, -(-self.total // self.page_size))


class DashboardQueries:
    """All reads the dashboard makes, over one Store whose windows are ``window_s`` long."""

    def __init__(self, store: Store, window_s: int = 300) -> None:
        self.store = store
        self.window_s = window_s

    def _frame(self, query: Select[Any], columns: tuple[str, ...]) -> pd.DataFrame:
        with self.store.engine.connect() as conn:
            rows = conn.execute(query).all()
        values = list(zip(*rows, strict=True)) if rows else [()] * len(columns)
        frame = pd.DataFrame(dict(zip(columns, values, strict=True)))
        for name in TIME_COLUMNS:
            if name in frame.columns:
                frame[name] = pd.to_datetime(frame[name], utc=True, format="ISO8601")
        return frame

    def bucket_seconds(self, start: datetime, end: datetime, max_points: int) -> int | None:
        """Bucket width that keeps a range under ``max_points``; None when windows fit."""
        windows = (end - start).total_seconds() / self.window_s
        if windows <= max_points:
            return None
        return bucket_width(int(-(-windows // max_points)) * self.window_s, self.window_s)

    def _windows(
        self,
        keys: list[str],
        start: datetime,
        end: datetime,
        max_points: int,
        columns: tuple[str, ...] = SERIES_COLUMNS,
    ) -> pd.DataFrame:
        """Signal points of some keys in [start, end), merged into buckets if too many;
        only ``columns`` (among ``SERIES_COLUMNS``) are read.

        A merged bucket is what one big window would say: counts summed, means weighted by
        count, a spike when any window in it was one.
        """
        bucket_s = self.bucket_seconds(start, end, max_points)
        if bucket_s is None:
            where = (sp.c.key.in_(keys), sp.c.window_start >= start, sp.c.window_start < end)
            chosen = [_raw_time(sp.c[n]) if n in TIME_COLUMNS else sp.c[n] for n in columns]
            query = select(*chosen).where(*where).order_by(sp.c.key, sp.c.window_start)
            return self._frame(query, columns)
        parts = [
            self._window_sums(keys, lo, hi, bucket_s)
            if resolution is None
            else _rollup_sums(keys, resolution, lo, hi, bucket_s)
            for resolution, lo, hi in spans(start, end, resolutions_within(bucket_s))
        ]
        sums = (union_all(*parts) if len(parts) > 1 else parts[0]).subquery()
        weight = func.nullif(func.sum(sums.c.count), 0)
        merged = {
            "key": sums.c.key,
            "window_start": sums.c.bucket,
            "window_end": type_coerce(func.max(sums.c.window_end), String),
            "count": func.sum(sums.c.count),
            "mean_score": func.sum(sums.c.score_sum) / weight,
            "neg_share": func.sum(sums.c.neg_sum) / weight,
            "baseline": func.sum(sums.c.baseline_sum) / func.nullif(func.sum(sums.c.baseline_n), 0),
            "z": func.max(sums.c.z_max),
            "is_spike": func.max(sums.c.spikes),
            "is_buzz": func.max(sums.c.buzzes),
        }
        query = select(*(merged[n] for n in columns)).group_by(sums.c.key, sums.c.bucket)
        frame = self._epoch_frame(query, columns)
        for flag in ("is_spike", "is_buzz"):
            if flag in frame.columns:
                frame[flag] = frame[flag].astype(bool)
        return frame

    def _window_sums(
        self, keys: list[str], start: datetime, end: datetime, bucket_s: int
    ) -> Select[Any]:
        """The windows of [start, end) in the rollups' shape (sums), each in its bucket."""
        return select(
            sp.c.key,
            (sql_epoch_seconds(sp.c.window_start, self.store.dialect) // bucket_s * bucket_s).label(
                "bucket"
            ),
            sp.c.window_end,
            sp.c.count,
            (sp.c.mean_score * sp.c.count).label("score_sum"),
            (sp.c.neg_share * sp.c.count).label("neg_sum"),
            sp.c.baseline.label("baseline_sum"),
            case((sp.c.baseline.is_(None), 0), else_=1).label("baseline_n"),
            sp.c.z.label("z_max"),
            case((sp.c.is_spike, 1), else_=0).label("spikes"),
            case((sp.c.is_buzz, 1), else_=0).label("buzzes"),
        ).where(sp.c.key.in_(keys), sp.c.window_start >= start, sp.c.window_start < end)

    def _epoch_frame(self, query: Select[Any], columns: tuple[str, ...]) -> pd.DataFrame:
        """Like ``_frame`` for bucketed queries, whose window_start is epoch seconds."""
        with self.store.engine.connect() as conn:
            rows = conn.execute(query).all()
        values = list(zip(*rows, strict=True)) if rows else [()] * len(columns)
        frame = pd.DataFrame(dict(zip(columns, values, strict=True)))
        frame["window_start"] = pd.to_datetime(frame["window_start"], unit="s", utc=True)
        if "window_end" in frame.columns:
            frame["window_end"] = pd.to_datetime(frame["window_end"], utc=True, format="ISO8601")
        return frame.sort_values(["key", "window_start"], ignore_index=True)

    def latest_event_time(self) -> datetime | None:
        """End of the newest closed window: 'last hour' means the last hour of data."""
        newest = select(func.max(sp.c.window_start)).scalar_subquery()
        query = select(func.max(sp.c.window_end)).where(sp.c.window_start == newest)
        with self.store.engine.connect() as conn:
            return conn.execute(query).scalar_one_or_none()

    def nth_newest_window(self, key: str, n: int) -> datetime | None:
        """Start of ``key``'s n-th newest window (its oldest, if it has fewer; None if none)."""
        newest = (
            select(sp.c.window_start)
            .where(sp.c.key == key)
            .order_by(sp.c.window_start.desc())
            .limit(n)
            .subquery()
        )
        with self.store.engine.connect() as conn:
            return conn.execute(select(func.min(newest.c.window_start))).scalar_one_or_none()

    def series(
        self, key: str, start: datetime, end: datetime, max_points: int = SERIES_POINTS
    ) -> pd.DataFrame:
        """One key's closed windows whose start lies in [start, end), oldest first."""
        return self._windows([key], start, end, max_points)

    def ticker_heatmap(
        self, start: datetime, end: datetime, limit: int, max_points: int = HEATMAP_COLUMNS
    ) -> tuple[list[str], pd.DataFrame]:
        """The ``limit`` most active ``ticker:`` keys in the range (by posts), most active
        first, and their negative share per window or bucket, long format.

        Ranking first and then reading only the chosen keys' windows (a primary-key range
        each) costs far less than bucketing every ticker's windows and ranking afterwards;
        the ranking itself sums daily and hourly rollups, and windows only at ragged edges.
        """
        parts = [_ticker_counts(resolution, lo, hi) for resolution, lo, hi in spans(start, end)]
        counts = union_all(*parts).subquery()
        total = func.sum(counts.c.count).label("total")
        ranking = (
            select(counts.c.key, total)
            .group_by(counts.c.key)
            .order_by(total.desc(), counts.c.key)
            .limit(limit)
        )
        with self.store.engine.connect() as conn:
            keys = [row.key for row in conn.execute(ranking)]
        columns = ("key", "window_start", "count", "neg_share")
        if not keys:
            return keys, pd.DataFrame({name: [] for name in columns})
        return keys, self._windows(keys, start, end, max_points, columns)

    def alerts(
        self, start: datetime, end: datetime, *, key: str | None = None, limit: int = 50
    ) -> pd.DataFrame:
        """Alerts whose window starts in the range, newest first."""
        conditions = [alerts.c.window_start >= start, alerts.c.window_start < end]
        if key is not None:
            conditions.append(alerts.c.key == key)
        query = (
            select(
                *(
                    _raw_time(alerts.c[n]) if n in TIME_COLUMNS else alerts.c[n]
                    for n in ALERT_COLUMNS
                )
            )
            .where(*conditions)
            .order_by(alerts.c.window_start.desc(), alerts.c.id)
            .limit(limit)
        )
        return self._frame(query, ALERT_COLUMNS)

    def alert(self, alert_id: str) -> dict[str, Any] | None:
        """One alert with its evidence and delivery log, for the alert page."""
        found = self.store.get_alert(alert_id)
        if found is None:
            return None
        query = (
            select(
                deliveries.c.channel,
                deliveries.c.status,
                deliveries.c.attempts,
                deliveries.c.delivered_at,
            )
            .where(deliveries.c.alert_id == alert_id)
            .order_by(deliveries.c.channel)
        )
        with self.store.engine.connect() as conn:
            found["deliveries"] = [dict(row) for row in conn.execute(query).mappings()]
        return found

    def posts_page(
        self,
        key: str,
        start: datetime,
        end: datetime,
        *,
        filters: PostFilter = PostFilter(),
        sort: tuple[str, bool] = ("published_at", True),
        page: int = 0,
        page_size: int = 25,
    ) -> PostPage:
        """One page of a key's posts in the range, filtered and sorted in SQL.

        Newest-first without filters walks the time index and stops after the page, with a
        separate index-only count. Any filter or other sort has to read every matching row
        anyway, so the total then comes from the same pass (``count(*) over ()``).
        """
        column, descending = sort
        # Clamped before any query: "prev" on the first page asks for page -1, a negative
        # OFFSET that PostgreSQL refuses, and a huge page overflows its bigint OFFSET.
        page = max(0, min(page, MAX_OFFSET // page_size))
        if column not in SORTABLE:
            raise QueryError(f"cannot sort posts by {column!r}; choose one of {SORTABLE}")
        base = _posts_for_key(key, start, end)
        conditions = _filter_conditions(filters)
        if conditions:
            base = base.where(*conditions)
        order = _sort_column(key, column)
        ordered = base.order_by(
            order.desc() if descending else order.asc(),
            posts.c.id.desc() if descending else posts.c.id.asc(),
        )
        if conditions or column != "published_at":
            one_pass = ordered.add_columns(func.count().over().label("total"))
            rows = self._frame(
                one_pass.limit(page_size).offset(page * page_size), (*POST_COLUMNS, "total")
            )
            if not rows.empty:
                total = int(rows["total"].iloc[0])
                return PostPage(
                    rows=rows.drop(columns="total"),
                    total=total,
                    page=page,
                    page_size=page_size,
                    sort=sort,
                )
        with self.store.engine.connect() as conn:
            total = int(
                conn.execute(base.with_only_columns(func.count()).order_by(None)).scalar_one()
            )
        page = max(0, min(page, max(0, -(-total // page_size) - 1)))
        rows = self._frame(ordered.limit(page_size).offset(page * page_size), POST_COLUMNS)
        return PostPage(rows=rows, total=total, page=page, page_size=page_size, sort=sort)

    def model_versions(self) -> pd.DataFrame:
        """The registry, newest first; ``is_current`` marks the version the scorer uses."""
        columns = ("version", "created_at", "is_current", "metrics", "data_fingerprint")
        query = select(
            *(
                _raw_time(model_versions.c[n]) if n in TIME_COLUMNS else model_versions.c[n]
                for n in columns
            )
        ).order_by(model_versions.c.created_at.desc())
        return self._frame(query, columns)

    def record_feedback(self, post_id: str, field_name: str, new_label: str, user: str) -> int:
        """An analyst's correction, through the store (who, when and the old label kept)."""
        return self.store.add_feedback(post_id, field_name, new_label, user=user)


def _rollup_sums(
    keys: list[str], resolution: int, start: datetime, end: datetime, bucket_s: int
) -> Select[Any]:
    """The rollups of some keys at one resolution for [start, end), each in its bucket."""
    return select(
        ro.c.key,
        (ro.c.bucket_epoch // bucket_s * bucket_s).label("bucket"),
        ro.c.window_end,
        ro.c.count,
        ro.c.score_sum,
        ro.c.neg_sum,
        ro.c.baseline_sum,
        ro.c.baseline_n,
        ro.c.z_max,
        ro.c.spikes,
        ro.c.buzzes,
    ).where(
        ro.c.resolution_s == resolution,
        ro.c.key.in_(keys),
        ro.c.bucket_epoch >= epoch_seconds(start),
        ro.c.bucket_epoch < epoch_seconds(end),
    )


def _ticker_counts(resolution: int | None, start: datetime, end: datetime) -> Select[Any]:
    """Posts per ``ticker:`` key and window or rollup bucket in [start, end).

    The prefix test as substr(), not a key range: that steers SQLite to the covering
    time-first index (cost grows with the range) instead of every ticker's history.
    """
    if resolution is None:
        return select(sp.c.key, sp.c.count).where(
            func.substr(sp.c.key, 1, len("ticker:")) == "ticker:",
            sp.c.window_start >= start,
            sp.c.window_start < end,
        )
    return select(ro.c.key, ro.c.count).where(
        ro.c.resolution_s == resolution,
        func.substr(ro.c.key, 1, len("ticker:")) == "ticker:",
        ro.c.bucket_epoch >= epoch_seconds(start),
        ro.c.bucket_epoch < epoch_seconds(end),
    )


def _raw_time(column: Any) -> Any:
    """The stored value without SQLAlchemy's per-row conversion; pandas parses it (as UTC)."""
    return type_coerce(column, String).label(column.name)


def _key_prefix(column: Any, prefix: str) -> ColumnElement[bool]:
    """``column`` starts with ``prefix``, as an index-friendly range (no LIKE)."""
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return and_(column >= prefix, column < upper)


def _posts_for_key(key: str, start: datetime, end: datetime) -> Select[Any]:
    """Posts of one key in [start, end), each through the index that key can use."""
    columns = [_raw_time(posts.c[n]) if n in TIME_COLUMNS else posts.c[n] for n in POST_COLUMNS]
    kind, _, value = key.partition(":")
    if key == "market":
        return select(*columns).where(posts.c.published_at >= start, posts.c.published_at < end)
    if kind == "ticker" and value:
        return (
            select(*columns)
            .select_from(post_tickers.join(posts, posts.c.id == post_tickers.c.post_id))
            .where(
                post_tickers.c.ticker == value,
                post_tickers.c.published_at >= start,
                post_tickers.c.published_at < end,
            )
        )
    if kind == "topic" and value:
        return select(*columns).where(
            posts.c.topic == value, posts.c.published_at >= start, posts.c.published_at < end
        )
    if kind == "source" and value:
        # ``source:reddit`` covers ``reddit`` itself and every ``reddit:<sub>``.
        return select(*columns).where(
            or_(posts.c.source == value, _key_prefix(posts.c.source, f"{value}:")),
            posts.c.published_at >= start,
            posts.c.published_at < end,
        )
    raise QueryError(f"unknown key {key!r}: expected market, ticker:X, topic:X or source:X")


def _sort_column(key: str, column: str) -> Any:
    if column == "published_at" and key.startswith("ticker:"):
        return post_tickers.c.published_at
    return posts.c[column]


def _filter_conditions(filters: PostFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if filters.sentiment:
        conditions.append(posts.c.sentiment == filters.sentiment)
    if filters.topic:
        conditions.append(posts.c.topic == filters.topic)
    if filters.source:
        conditions.append(posts.c.source.icontains(filters.source, autoescape=True))
    if filters.title:
        conditions.append(posts.c.title.icontains(filters.title, autoescape=True))
    return conditions
