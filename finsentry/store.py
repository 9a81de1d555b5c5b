"""The SQL store: what the sink writes and the dashboard, alerts and retraining read.

SQLAlchemy Core on SQLite (default, WAL) or PostgreSQL. Every write is an upsert keyed as in
DESIGN.md (post id, key + window start, alert id, alert id + channel), so at-least-once
delivery and replays never double count.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    Text,
    TypeDecorator,
    bindparam,
    case,
    cast,
    create_engine,
    delete,
    event,
    extract,
    func,
    inspect,
    literal,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.sql.elements import ColumnElement

from finsentry.config import mask_url_password, url_password
from finsentry.rollups import HOUR, RESOLUTIONS, bucket_of, from_epoch
from finsentry.schema import SENTIMENTS, TOPICS, Alert, Post, ScoredPost, SignalPoint


class UtcDateTime(TypeDecorator[datetime]):
    """Stores aware datetimes as UTC and returns them aware; SQLite would drop the zone."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given to the store; use UTC-aware times")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

posts = Table(
    "posts",
    metadata,
    Column("id", String(512), primary_key=True),
    Column("source", String(200), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("published_at", UtcDateTime, nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    Column("published_at_estimated", Boolean, nullable=False, default=False),
    Column("title", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("url", Text),
    Column("author", String(500)),
    Column("lang", String(16)),
    Column("tickers", JSON, nullable=False),
    Column("sentiment", String(16)),
    Column("sentiment_probs", JSON),
    Column("score", Float),
    Column("topic", String(64)),
    Column("topic_probs", JSON),
    Column("model_version", String(200)),
    Column("is_backfill", Boolean, nullable=False, default=False),
    Column("stored_at", UtcDateTime, nullable=False),
    Index("ix_posts_published_at", "published_at"),
    Index("ix_posts_source_published_at", "source", "published_at"),
    Index("ix_posts_topic_published_at", "topic", "published_at"),
)

# One row per (post, ticker): the drill-down reads a ticker's posts through this index.
post_tickers = Table(
    "post_tickers",
    metadata,
    Column("post_id", String(512), primary_key=True),
    Column("ticker", String(16), primary_key=True),
    Column("published_at", UtcDateTime, nullable=False),
    Index("ix_post_tickers_ticker_published_at", "ticker", "published_at"),
)

# Clustered on (key, window_start) in SQLite (WITHOUT ROWID): every reader asks for one key's
# windows over a time range, which is then one contiguous read instead of a lookup per row.
signal_points = Table(
    "signal_points",
    metadata,
    Column("key", String(220), primary_key=True),
    Column("window_start", UtcDateTime, primary_key=True),
    Column("window_end", UtcDateTime, nullable=False),
    Column("count", Integer, nullable=False),
    Column("mean_score", Float, nullable=False),
    Column("neg_share", Float, nullable=False),
    Column("baseline", Float),
    Column("z", Float),
    Column("is_spike", Boolean, nullable=False),
    Column("volume_baseline", Float),
    Column("buzz_z", Float),
    Column("is_buzz", Boolean, nullable=False, default=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # Covers the dashboard's per-range scans across keys (ticker ranking, heatmap) index-only.
    Index("ix_signal_points_window_start", "window_start", "key", "count", "neg_share"),
    sqlite_with_rowid=False,
)

# Hourly, three-hourly and daily sums of the signal points per key, kept in step with them in
# the same transaction, so that long ranges read a few rows per key instead of every window
# (see finsentry/rollups.py). Sums rather than means: merged buckets stay exact and count-weighted
# (mean score = score_sum / count, negative share = neg_sum / count).
signal_rollups = Table(
    "signal_rollups",
    metadata,
    # Key first: a key's buckets at one resolution are one contiguous read (series, heatmap),
    # and SQLite cannot mistake the primary key for a path to a range of all keys (ranking).
    Column("key", String(220), primary_key=True),
    Column("resolution_s", Integer, primary_key=True),
    Column("bucket_epoch", BigInteger, primary_key=True),  # UTC epoch second the bucket starts
    Column("window_end", UtcDateTime, nullable=False),  # the latest window end in the bucket
    Column("windows", Integer, nullable=False),
    Column("count", BigInteger, nullable=False),
    Column("score_sum", Float, nullable=False),
    Column("neg_sum", Float, nullable=False),
    Column("baseline_sum", Float, nullable=False),
    Column("baseline_n", Integer, nullable=False),  # windows with a baseline
    Column("z_max", Float),
    Column("spikes", Integer, nullable=False),  # windows that were spikes
    Column("buzzes", Integer, nullable=False, default=0),  # windows that were volume spikes
    # Covers the ranking of keys over a range (all keys, one resolution) index-only.
    Index("ix_signal_rollups_bucket", "resolution_s", "bucket_epoch", "key", "count"),
    sqlite_with_rowid=False,
)
# The rollup columns a coarser bucket sums from the finer ones (``z_max`` is a max).
ROLLUP_SUMS = (
    "windows",
    "count",
    "score_sum",
    "neg_sum",
    "baseline_sum",
    "baseline_n",
    "spikes",
    "buzzes",
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("key", String(220), nullable=False),
    Column("window_start", UtcDateTime, nullable=False),
    Column("window_end", UtcDateTime, nullable=False),
    Column("severity", String(16), nullable=False),
    Column("z", Float, nullable=False),
    Column("neg_share", Float, nullable=False),
    Column("mean_score", Float, nullable=False),
    Column("count", Integer, nullable=False),
    Column("baseline", Float, nullable=False),
    Column("evidence", JSON, nullable=False),
    Column("model_version", String(200), nullable=False),
    Column("buzz", Boolean, nullable=False, default=False),
    Column("is_backfill", Boolean, nullable=False, default=False),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_alerts_window_start", "window_start"),
    Index("ix_alerts_key_window_start", "key", "window_start"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("alert_id", String(64), primary_key=True),
    Column("channel", String(64), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("error", Text),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("delivered_at", UtcDateTime),
    Index("ix_deliveries_updated_at", "updated_at"),
)

feedback = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("post_id", String(512), nullable=False),
    Column("field", String(16), nullable=False),
    Column("old_label", String(64)),
    Column("new_label", String(64), nullable=False),
    Column("user", String(200), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_feedback_post_id", "post_id"),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("version", String(200), primary_key=True),
    Column("path", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("metrics", JSON, nullable=False),
    Column("data_fingerprint", String(128), nullable=False),
    Column("training_config", JSON, nullable=False),
    Column("is_current", Boolean, nullable=False, default=False),
    # candidate (registered, never served), promoted (was or is current), rejected (failed
    # the retraining gate: never made current without force). "current" is is_current.
    Column("status", String(16), nullable=False, default="candidate"),
)

# One row per retraining run (models/retrain.py): what it trained on, both models' gate
# metrics, and the decision with its reason.
retrain_runs = Table(
    "retrain_runs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("trigger", String(16), nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime),
    Column("decision", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("current_version", String(200)),
    Column("candidate_version", String(200)),
    Column("data_fingerprint", String(128)),
    Column("current_metrics", JSON),
    Column("candidate_metrics", JSON),
    Column("details", JSON, nullable=False),
    Index("ix_retrain_runs_started_at", "started_at"),
)

# Small durable state of long-running jobs: RSS feed ETags, replay and backfill checkpoints.
job_state = Table(
    "job_state",
    metadata,
    Column("name", String(500), primary_key=True),
    Column("value", JSON, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# One transaction-scoped lock per key, taken in key order (so two writers cannot deadlock);
# PostgreSQL evaluates the volatile lock calls after the ORDER BY.
LOCK_KEYS = text(
    "SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) "
    "FROM unnest(CAST(:keys AS text[])) WITH ORDINALITY AS t(k, n) ORDER BY n"
)
VERDICT_COLUMNS = ("sentiment", "sentiment_probs", "score", "topic", "topic_probs", "model_version")
DELIVERY_STATUSES = ("pending", "retrying", "delivered", "failed")
RETRAIN_DECISIONS = ("running", "promoted", "rejected", "skipped", "interrupted", "failed")
FEEDBACK_FIELDS = ("sentiment", "topic")
FEEDBACK_LABELS = {"sentiment": SENTIMENTS, "topic": TOPICS}
# The width of feedback.user: checked here, since SQLite stores any length and PostgreSQL
# answers a longer name with a DataError the dashboard would not catch.
FEEDBACK_MAX_USER = 200


class StoreError(RuntimeError):
    """A store operation was refused; the message says which and why."""


def _now() -> datetime:
    return datetime.now(UTC)


def sql_epoch_seconds(column: Any, dialect: str) -> ColumnElement[int]:
    """A stored time as whole UTC epoch seconds, in SQL (the rollup buckets' unit)."""
    if dialect == "sqlite":
        return cast(func.strftime("%s", column), Integer)
    return cast(func.floor(extract("epoch", column)), BigInteger)


def _set_sqlite_pragmas(dbapi_conn: DBAPIConnection, record: ConnectionPoolEntry) -> None:
    # FULL, not WAL's usual NORMAL: the worker commits its Kafka offsets once the store
    # write returns, so a commit that a power loss could still roll back would lose posts.
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for the URL; SQLite gets WAL so the dashboard reads while the sink writes."""
    if url.startswith("sqlite"):
        database = url.split("///", 1)[-1]
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _set_sqlite_pragmas)
        return engine
    if url.startswith("postgresql"):
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        return create_engine(url, pool_pre_ping=True)
    raise StoreError(
        f"unsupported store URL {mask_url_password(url)!r}: use sqlite:///PATH or postgresql://..."
    )


def redact_url_password(text: str, url: str) -> str:
    """``text`` with the password of ``url`` (as written and percent-decoded) masked: for
    driver errors and logs, which may quote a connection string or a host parsed from it."""
    password = url_password(url)
    for secret in {password, unquote(password)} - {""}:
        text = text.replace(secret, "***")
    return text


@dataclass(frozen=True)
class DeliveryRecord:
    alert_id: str
    channel: str
    status: str
    attempts: int
    error: str | None
    updated_at: datetime
    delivered_at: datetime | None


class Store:
    """Access layer over one database. Cheap to create; share one per process."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.url = url
        self.engine = make_engine(url)
        if create:
            metadata.create_all(self.engine)
            _add_status_column(self.engine)
            _add_buzz_columns(self.engine)
            self._fill_empty_rollups()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    def redact(self, text: str) -> str:
        """``text`` (an error, a log line) without this store's database password."""
        return redact_url_password(text, self.url)

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    def _upsert(
        self,
        conn: Connection,
        table: Table,
        rows: Sequence[dict[str, Any]],
        keys: Sequence[str],
        *,
        keep: Sequence[str] = (),
    ) -> None:
        """Insert rows, or overwrite the existing row with the same key (except ``keep``)."""
        if not rows:
            return
        insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        stmt = insert(table)
        changing = [c.name for c in table.columns if c.name not in keys and c.name not in keep]
        stmt = stmt.on_conflict_do_update(
            index_elements=list(keys),
            set_={name: stmt.excluded[name] for name in changing},
        )
        conn.execute(stmt, list(rows))

    # posts ------------------------------------------------------------------------------
    def upsert_posts(self, items: Iterable[Post], *, is_backfill: bool = False) -> int:
        """Write posts (scored or not); a re-sent post overwrites itself, never duplicates."""
        now = _now()
        unique = _last_per_id(items)
        scored = [_post_row(i, is_backfill, now) for i in unique if isinstance(i, ScoredPost)]
        raw = [_post_row(i, is_backfill, now) for i in unique if not isinstance(i, ScoredPost)]
        rows = scored + raw
        ticker_rows = [
            {"post_id": row["id"], "ticker": ticker, "published_at": row["published_at"]}
            for row in rows
            for ticker in row["tickers"]
        ]
        ids = [row["id"] for row in rows]
        with self.begin() as conn:
            self._upsert(conn, posts, scored, ["id"], keep=["stored_at"])
            # An unscored re-send must not erase a verdict the sink already stored.
            self._upsert(conn, posts, raw, ["id"], keep=["stored_at", *VERDICT_COLUMNS])
            for chunk in _chunks(ids, 500):
                conn.execute(delete(post_tickers).where(post_tickers.c.post_id.in_(chunk)))
            if ticker_rows:
                conn.execute(post_tickers.insert(), ticker_rows)
        return len(rows)

    def get_post(self, post_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(posts).where(posts.c.id == post_id)).mappings().first()
        return dict(row) if row else None

    def count_posts(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(posts)).scalar_one())

    # signal points ----------------------------------------------------------------------
    def upsert_signal_points(
        self, points: Iterable[SignalPoint], *, keep_judgement: bool = False
    ) -> int:
        """Write closed windows and, in the same transaction, the rollups they fall in.

        The touched hourly buckets are recomputed from the windows and the touched days from
        those hours (never incremented), so re-sending a window cannot count it twice.
        ``keep_judgement``: a window already stored keeps its baseline, z and spike flag (a
        late post's correction of its count, mean and negative share).
        """
        now = _now()
        unique = {(p.key, p.window_start): p for p in points}
        rows = [
            {**p.model_dump(exclude={"schema_version"}), "updated_at": now} for p in unique.values()
        ]
        if not rows:
            return 0
        with self.begin() as conn:
            if self.dialect == "postgresql":
                # Writers of the same key take turns, so each recomputation sees the windows
                # another writer committed just before (READ COMMITTED would miss them).
                conn.execute(LOCK_KEYS, {"keys": sorted({p.key for p in unique.values()})})
            keep = ["baseline", "z", "is_spike"] if keep_judgement else []
            self._upsert(conn, signal_points, rows, ["key", "window_start"], keep=keep)
            self._refresh_rollups(conn, unique.values())
        return len(rows)

    def _refresh_rollups(self, conn: Connection, points: Iterable[SignalPoint]) -> None:
        """Recompute the hours the points fall in from the windows, then each coarser
        resolution's touched buckets from the next finer one."""
        hours = sorted({(p.key, bucket_of(p.window_start, HOUR)) for p in points})
        from_points = self._rollup_from_points(
            signal_points.c.key == bindparam("k"),
            signal_points.c.window_start >= bindparam("lo", type_=UtcDateTime),
            signal_points.c.window_start < bindparam("hi", type_=UtcDateTime),
        )
        conn.execute(
            from_points,
            [{"k": k, "lo": from_epoch(h), "hi": from_epoch(h + HOUR)} for k, h in hours],
        )
        for coarse, fine in _coarser_steps():
            touched = sorted({(key, hour // coarse * coarse) for key, hour in hours})
            from_finer = self._rollup_from_finer(
                coarse,
                fine,
                signal_rollups.c.key == bindparam("k"),
                signal_rollups.c.bucket_epoch >= bindparam("lo"),
                signal_rollups.c.bucket_epoch < bindparam("hi"),
            )
            conn.execute(from_finer, [{"k": k, "lo": b, "hi": b + coarse} for k, b in touched])

    def _rollup_from_points(self, *conditions: ColumnElement[bool]) -> Any:
        """Upsert of the hourly rollups of the windows matching ``conditions``."""
        sp = signal_points
        bucket = sql_epoch_seconds(sp.c.window_start, self.dialect) // HOUR * HOUR
        query = (
            select(
                sp.c.key,
                literal(HOUR).label("resolution_s"),
                bucket.label("bucket_epoch"),
                func.max(sp.c.window_end).label("window_end"),
                func.count().label("windows"),
                func.sum(sp.c.count).label("count"),
                func.sum(sp.c.mean_score * sp.c.count).label("score_sum"),
                func.sum(sp.c.neg_share * sp.c.count).label("neg_sum"),
                func.coalesce(func.sum(sp.c.baseline), 0.0).label("baseline_sum"),
                func.count(sp.c.baseline).label("baseline_n"),
                func.max(sp.c.z).label("z_max"),
                func.sum(case((sp.c.is_spike, 1), else_=0)).label("spikes"),
                func.sum(case((sp.c.is_buzz, 1), else_=0)).label("buzzes"),
            )
            .where(*conditions)
            .group_by(sp.c.key, bucket)
        )
        return self._upsert_rollups(query)

    def _rollup_from_finer(self, coarse: int, fine: int, *conditions: ColumnElement[bool]) -> Any:
        """Upsert of the ``coarse`` rollups of the ``fine`` rollups matching ``conditions``."""
        ro = signal_rollups
        bucket = ro.c.bucket_epoch // coarse * coarse
        query = (
            select(
                ro.c.key,
                literal(coarse).label("resolution_s"),
                bucket.label("bucket_epoch"),
                func.max(ro.c.window_end).label("window_end"),
                *(func.sum(ro.c[name]).label(name) for name in ROLLUP_SUMS),
                func.max(ro.c.z_max).label("z_max"),
            )
            .where(ro.c.resolution_s == fine, *conditions)
            .group_by(ro.c.key, bucket)
        )
        return self._upsert_rollups(query)

    def _upsert_rollups(self, query: Select[Any]) -> Any:
        insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        names = list(query.selected_columns.keys())  # each labelled as its column
        stmt = insert(signal_rollups).from_select(names, query)
        keys = ("key", "resolution_s", "bucket_epoch")
        return stmt.on_conflict_do_update(
            index_elements=list(keys),
            set_={name: stmt.excluded[name] for name in names if name not in keys},
        )

    def _fill_empty_rollups(self) -> None:
        """Migration for stores written before the rollups existed: derive them once, from
        every stored window, when the rollup table is empty and the windows are not."""
        with self.engine.connect() as conn:
            if conn.execute(select(signal_rollups.c.key).limit(1)).first() is not None:
                return
            if conn.execute(select(signal_points.c.key).limit(1)).first() is None:
                return
        with self.begin() as conn:
            if self.dialect == "postgresql":
                # Writers wait until the rollups are derived, so none of their windows is
                # missed by the snapshot these statements read (SQLite has one writer anyway).
                conn.execute(text("LOCK TABLE signal_points IN SHARE MODE"))
            # ``WHERE true``: SQLite needs a WHERE to parse an upsert of a SELECT.
            conn.execute(self._rollup_from_points(true()))
            for coarse, fine in _coarser_steps():
                conn.execute(self._rollup_from_finer(coarse, fine, true()))

    def signal_series(
        self, key: str, start: datetime | None = None, end: datetime | None = None
    ) -> list[dict[str, Any]]:
        query = select(signal_points).where(signal_points.c.key == key)
        if start is not None:
            query = query.where(signal_points.c.window_start >= start)
        if end is not None:
            query = query.where(signal_points.c.window_start < end)
        with self.engine.connect() as conn:
            result = conn.execute(query.order_by(signal_points.c.window_start))
            return [dict(row) for row in result.mappings()]

    # alerts -----------------------------------------------------------------------------
    def upsert_alerts(self, items: Iterable[Alert], *, is_backfill: bool = False) -> int:
        now = _now()
        unique = {a.id: a for a in items}
        rows = [
            {
                **a.model_dump(exclude={"schema_version"}, mode="python"),
                "evidence": [
                    e.model_dump(mode="json", exclude={"schema_version"}) for e in a.evidence
                ],
                "is_backfill": is_backfill,
                "created_at": now,
            }
            for a in unique.values()
        ]
        with self.begin() as conn:
            self._upsert(conn, alerts, rows, ["id"], keep=["created_at"])
        return len(rows)

    def get_alert(self, alert_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(alerts).where(alerts.c.id == alert_id)).mappings().first()
        return dict(row) if row else None

    # deliveries -------------------------------------------------------------------------
    def record_delivery(
        self,
        alert_id: str,
        channel: str,
        status: str,
        *,
        attempts: int,
        error: str | None = None,
    ) -> None:
        """Record the latest state of one alert's delivery on one channel."""
        if status not in DELIVERY_STATUSES:
            raise StoreError(f"delivery status {status!r} is not one of {DELIVERY_STATUSES}")
        now = _now()
        row = {
            "alert_id": alert_id,
            "channel": channel,
            "status": status,
            "attempts": attempts,
            "error": error,
            "updated_at": now,
            "delivered_at": now if status == "delivered" else None,
        }
        with self.begin() as conn:
            self._upsert(conn, deliveries, [row], ["alert_id", "channel"])

    def count_delivery_attempt(self, alert_id: str, channel: str, attempts: int) -> None:
        """Note that attempt number ``attempts`` is about to be made, before it is made: a
        process that dies while sending still has it counted after the restart."""
        with self.begin() as conn:
            conn.execute(
                update(deliveries)
                .where(deliveries.c.alert_id == alert_id, deliveries.c.channel == channel)
                .values(attempts=attempts, updated_at=_now())
            )

    def get_delivery(self, alert_id: str, channel: str) -> DeliveryRecord | None:
        query = select(deliveries).where(
            deliveries.c.alert_id == alert_id, deliveries.c.channel == channel
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return DeliveryRecord(**row) if row else None

    def recent_deliveries(self, limit: int = 50) -> list[DeliveryRecord]:
        query = select(deliveries).order_by(deliveries.c.updated_at.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [DeliveryRecord(**row) for row in conn.execute(query).mappings()]

    def deliveries_with_status(
        self, statuses: Sequence[str], limit: int | None = None
    ) -> list[DeliveryRecord]:
        """Deliveries in the given states, oldest update first (the alerts service resumes
        its unfinished ones from here after a restart)."""
        unknown = sorted(set(statuses) - set(DELIVERY_STATUSES))
        if unknown:
            raise StoreError(f"delivery statuses {unknown} are not among {DELIVERY_STATUSES}")
        query = (
            select(deliveries)
            .where(deliveries.c.status.in_(list(statuses)))
            .order_by(deliveries.c.updated_at, deliveries.c.alert_id, deliveries.c.channel)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [DeliveryRecord(**row) for row in conn.execute(query).mappings()]

    # feedback ---------------------------------------------------------------------------
    def add_feedback(self, post_id: str, field: str, new_label: str, *, user: str) -> int:
        """Store an analyst's correction; the old label is read from the post itself."""
        if field not in FEEDBACK_FIELDS:
            raise StoreError(f"feedback field {field!r} is not one of {FEEDBACK_FIELDS}")
        if new_label not in FEEDBACK_LABELS[field]:
            raise StoreError(
                f"feedback label {new_label[:80]!r} is not a {field}: one of "
                f"{FEEDBACK_LABELS[field]}"
            )
        if not user.strip() or len(user) > FEEDBACK_MAX_USER:
            raise StoreError(
                f"feedback user must be 1 to {FEEDBACK_MAX_USER} characters, got {len(user)}"
            )
        with self.begin() as conn:
            old = conn.execute(select(posts.c[field]).where(posts.c.id == post_id)).first()
            if old is None:
                raise StoreError(f"no post with id {post_id!r} to correct")
            result = conn.execute(
                feedback.insert().values(
                    post_id=post_id,
                    field=field,
                    old_label=old[0],
                    new_label=new_label,
                    user=user,
                    created_at=_now(),
                )
            )
            key = result.inserted_primary_key
            if key is None:
                raise StoreError("the database returned no id for the new feedback row")
            return int(key[0])

    def feedback_labels(self) -> list[dict[str, Any]]:
        """Every correction, oldest first; the latest per (post, field) wins in training."""
        query = select(feedback).order_by(feedback.c.created_at, feedback.c.id)
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]

    # model versions ---------------------------------------------------------------------
    def register_model_version(
        self,
        version: str,
        path: str,
        *,
        metrics: dict[str, Any],
        data_fingerprint: str,
        training_config: dict[str, Any],
        created_at: datetime | None = None,
    ) -> None:
        row = {
            "version": version,
            "path": path,
            "created_at": created_at or _now(),
            "metrics": metrics,
            "data_fingerprint": data_fingerprint,
            "training_config": training_config,
            "is_current": False,
        }
        with self.begin() as conn:
            self._upsert(conn, model_versions, [row], ["version"], keep=["is_current", "status"])

    def set_current_model(self, version: str, *, force: bool = False) -> None:
        """Make one version current; exactly one is current afterwards.

        A version the retraining gate rejected is refused unless ``force``: a rejected
        candidate stays in the registry for inspection but is never served by accident.
        """
        with self.begin() as conn:
            row = conn.execute(
                select(model_versions.c.status).where(model_versions.c.version == version)
            ).first()
            if row is None:
                raise StoreError(f"no model version {version!r} in the registry")
            if row[0] == "rejected" and not force:
                raise StoreError(
                    f"model version {version!r} was rejected by the retraining gate; "
                    "promote it with force (`finsentry models promote --force`) to serve it anyway"
                )
            conn.execute(update(model_versions).values(is_current=False))
            conn.execute(
                update(model_versions)
                .where(model_versions.c.version == version)
                .values(is_current=True, status="promoted")
            )

    def set_model_status(self, version: str, status: str) -> None:
        """Mark a version candidate or rejected (promotion goes through set_current_model)."""
        if status not in ("candidate", "rejected"):
            raise StoreError(f"model status {status!r} is not one of ('candidate', 'rejected')")
        with self.begin() as conn:
            result = conn.execute(
                update(model_versions)
                .where(model_versions.c.version == version, model_versions.c.is_current.is_(False))
                .values(status=status)
            )
            if result.rowcount != 1:
                raise StoreError(f"no non-current model version {version!r} to mark {status}")

    def model_versions(self) -> list[dict[str, Any]]:
        query = select(model_versions).order_by(model_versions.c.created_at)
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]

    def current_model(self) -> dict[str, Any] | None:
        query = select(model_versions).where(model_versions.c.is_current.is_(True))
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return dict(row) if row else None

    # retraining runs ------------------------------------------------------------------
    def start_retrain_run(self, run_id: str, trigger: str, details: dict[str, Any]) -> None:
        row = {
            "id": run_id,
            "trigger": trigger,
            "started_at": _now(),
            "decision": "running",
            "reason": "",
            "details": details,
        }
        with self.begin() as conn:
            conn.execute(retrain_runs.insert().values(**row))

    def finish_retrain_run(self, run_id: str, decision: str, reason: str, **fields: Any) -> None:
        """Record a run's outcome; ``fields`` are the other retrain_runs columns."""
        if decision not in RETRAIN_DECISIONS[1:]:
            raise StoreError(f"retrain decision {decision!r} is not one of {RETRAIN_DECISIONS[1:]}")
        unknown = sorted(set(fields) - set(retrain_runs.c.keys()))
        if unknown:
            raise StoreError(f"retrain_runs has no column(s) {unknown}")
        values = {"decision": decision, "reason": reason, "finished_at": _now(), **fields}
        with self.begin() as conn:
            result = conn.execute(
                update(retrain_runs).where(retrain_runs.c.id == run_id).values(**values)
            )
            if result.rowcount != 1:
                raise StoreError(f"no retrain run {run_id!r} to finish")

    def retrain_runs(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Runs, newest first."""
        query = select(retrain_runs).order_by(retrain_runs.c.started_at.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]

    # job state --------------------------------------------------------------------------
    def put_state(self, name: str, value: Any) -> None:
        json.dumps(value)  # fail here, with the caller on the stack, if it is not JSON
        with self.begin() as conn:
            self._upsert(
                conn, job_state, [{"name": name, "value": value, "updated_at": _now()}], ["name"]
            )

    def get_state(self, name: str, default: Any = None) -> Any:
        with self.engine.connect() as conn:
            row = conn.execute(select(job_state.c.value).where(job_state.c.name == name)).first()
        return default if row is None else row[0]


def _coarser_steps() -> list[tuple[int, int]]:
    """(coarse, fine) resolution pairs, finest first: each level is summed from the one below."""
    finest_first = RESOLUTIONS[::-1]
    return list(zip(finest_first[1:], finest_first[:-1], strict=True))


def _add_status_column(engine: Engine) -> None:
    """Stores created before model statuses existed get the column (current ones promoted)."""
    columns = {column["name"] for column in inspect(engine).get_columns("model_versions")}
    if "status" in columns:
        return
    with engine.begin() as conn:
        conn.execute(
            text("ALTER TABLE model_versions ADD COLUMN status VARCHAR(16) DEFAULT 'candidate'")
        )
        conn.execute(update(model_versions).values(status="candidate"))
        conn.execute(
            update(model_versions)
            .where(model_versions.c.is_current.is_(True))
            .values(status="promoted")
        )


# Columns added with buzz: stores written before it get them, empty (no window was buzz).
BUZZ_COLUMNS: Final = {
    "signal_points": (
        "volume_baseline FLOAT",
        "buzz_z FLOAT",
        "is_buzz BOOLEAN NOT NULL DEFAULT FALSE",
    ),
    "signal_rollups": ("buzzes INTEGER NOT NULL DEFAULT 0",),
    "alerts": ("buzz BOOLEAN NOT NULL DEFAULT FALSE",),
}


def _add_buzz_columns(engine: Engine) -> None:
    """Stores created before buzz existed get its columns."""
    inspector = inspect(engine)
    for table, columns in BUZZ_COLUMNS.items():
        present = {column["name"] for column in inspector.get_columns(table)}
        missing = [c for c in columns if c.split()[0] not in present]
        if missing:
            with engine.begin() as conn:
                for column in missing:
                    conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column}"))


def _last_per_id(items: Iterable[Post]) -> list[Post]:
    """Within one batch the last version of a post wins, as it would across batches."""
    return list({item.id: item for item in items}.values())


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _post_row(item: Post, is_backfill: bool, now: datetime) -> dict[str, Any]:
    row: dict[str, Any] = item.model_dump(exclude={"schema_version"})
    row["tickers"] = list(item.tickers)
    if isinstance(item, ScoredPost):
        row["sentiment_probs"] = dict(item.sentiment_probs)
        row["topic_probs"] = dict(item.topic_probs)
    else:
        for name in VERDICT_COLUMNS:
            row[name] = None
    row["is_backfill"] = is_backfill
    row["stored_at"] = now
    return row
