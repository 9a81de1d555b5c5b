from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text

from finsentry.rollups import HOUR, RESOLUTIONS, bucket_of
from finsentry.schema import Alert, Evidence, Post, ScoredPost, SignalPoint, alert_id
from finsentry.store import Store, StoreError, metadata, post_tickers, posts, signal_rollups
from finsentry.store import signal_points as signal_points_table
from tests.finsentry.strategies import scored_posts, signal_points

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(sql_store: Store) -> Store:
    """Every test here runs on SQLite and on PostgreSQL (tests/conftest.py)."""
    return sql_store


def make_post(n: int, tickers: tuple[str, ...] = ("AAPL",)) -> Post:
    return Post(
        id=f"webhook:{n}",
        source="webhook",
        kind="news",
        published_at=T0,
        received_at=T0,
        title=f"headline {n}",
        tickers=tickers,
    )


def make_scored(n: int, negative: float = 0.7, version: str = "v1") -> ScoredPost:
    positive = round(1 - negative - 0.1, 6)
    return ScoredPost.from_post(
        make_post(n),
        sentiment="negative",
        sentiment_probs={"negative": negative, "neutral": 0.1, "positive": positive},
        score=positive - negative,
        topic="Earnings",
        topic_probs={"Earnings": 0.8, "Markets": 0.1},
        model_version=version,
    )


@pytest.mark.unit
def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'wal.db'}")
    with store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"


def test_post_upsert_is_idempotent(store: Store) -> None:
    batch = [make_scored(n) for n in range(20)]
    store.upsert_posts(batch)
    store.upsert_posts(batch)
    store.upsert_posts(batch[:5])
    assert store.count_posts() == 20
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(post_tickers)).scalar() == 20


def test_rescoring_overwrites_and_raw_resend_keeps_the_verdict(store: Store) -> None:
    store.upsert_posts([make_scored(1, version="v1")])
    store.upsert_posts([make_scored(1, negative=0.2, version="v2")])
    row = store.get_post("webhook:1")
    assert row is not None
    assert (row["model_version"], row["sentiment_probs"]["negative"]) == ("v2", 0.2)
    store.upsert_posts([make_post(1)])
    row = store.get_post("webhook:1")
    assert row is not None and row["model_version"] == "v2"


def test_changed_tickers_replace_the_old_ones(store: Store) -> None:
    store.upsert_posts([make_post(1, ("AAPL", "MSFT"))])
    store.upsert_posts([make_post(1, ("TSLA",))])
    with store.engine.connect() as conn:
        rows = conn.execute(select(post_tickers.c.ticker)).scalars().all()
    assert rows == ["TSLA"]


def test_times_come_back_aware_utc(store: Store) -> None:
    store.upsert_posts([make_post(1)])
    row = store.get_post("webhook:1")
    assert row is not None and row["published_at"] == T0
    assert row["published_at"].tzinfo is not None


@settings(
    max_examples=25,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=st.lists(scored_posts(), max_size=8), repeats=st.integers(1, 3))
def test_any_batch_replayed_counts_once(
    store: Store, batch: list[ScoredPost], repeats: int
) -> None:
    with store.begin() as conn:
        conn.execute(posts.delete())
        conn.execute(post_tickers.delete())
    for _ in range(repeats):
        store.upsert_posts(batch)
    assert store.count_posts() == len({p.id for p in batch})
    with store.engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(post_tickers)).scalar()
    latest = {p.id: p for p in batch}
    assert stored == sum(len(p.tickers) for p in latest.values())


AAPL_POINT = SignalPoint(
    key="ticker:AAPL",
    window_start=T0,
    window_end=T0 + timedelta(minutes=5),
    count=3,
    mean_score=-0.2,
    neg_share=0.5,
)


def test_signal_points_upsert_by_key_and_window(store: Store) -> None:
    point = AAPL_POINT
    store.upsert_signal_points([point])
    store.upsert_signal_points([point.model_copy(update={"count": 4, "z": 3.5, "is_spike": True})])
    series = store.signal_series("ticker:AAPL")
    assert len(series) == 1
    assert (series[0]["count"], series[0]["z"], series[0]["is_spike"]) == (4, 3.5, True)


@settings(
    max_examples=20,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(points=st.lists(signal_points(), max_size=10))
def test_signal_points_replayed_count_once(store: Store, points: list[SignalPoint]) -> None:
    store.upsert_signal_points(points)
    store.upsert_signal_points(points)
    for key in {p.key for p in points}:
        expected = {p.window_start for p in points if p.key == key}
        assert {r["window_start"] for r in store.signal_series(key)} >= expected


def expected_rollups(points: list[SignalPoint]) -> dict[tuple[int, str, int], dict[str, Any]]:
    """The rollups recomputed in Python from the windows that won (the last write of each)."""
    latest = {(p.key, p.window_start): p for p in points}
    sums: dict[tuple[int, str, int], dict[str, Any]] = {}
    for p in latest.values():
        for resolution in RESOLUTIONS:
            row = sums.setdefault(
                (resolution, p.key, bucket_of(p.window_start, resolution)),
                {
                    "window_end": p.window_end,
                    "windows": 0,
                    "count": 0,
                    "score_sum": 0.0,
                    "neg_sum": 0.0,
                    "baseline_sum": 0.0,
                    "baseline_n": 0,
                    "z_max": None,
                    "spikes": 0,
                    "buzzes": 0,
                },
            )
            row["window_end"] = max(row["window_end"], p.window_end)
            row["windows"] += 1
            row["count"] += p.count
            row["score_sum"] += p.mean_score * p.count
            row["neg_sum"] += p.neg_share * p.count
            row["baseline_sum"] += p.baseline or 0.0
            row["baseline_n"] += p.baseline is not None
            if p.z is not None:
                row["z_max"] = p.z if row["z_max"] is None else max(row["z_max"], p.z)
            row["spikes"] += p.is_spike
            row["buzzes"] += p.is_buzz
    return sums


def stored_rollups(store: Store) -> dict[tuple[int, str, int], dict[str, Any]]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(signal_rollups)).mappings().all()
    return {
        (r["resolution_s"], r["key"], r["bucket_epoch"]): {
            name: value
            for name, value in r.items()
            if name not in ("resolution_s", "key", "bucket_epoch")
        }
        for r in rows
    }


def assert_rollups_match(store: Store, points: list[SignalPoint]) -> None:
    expected, stored = expected_rollups(points), stored_rollups(store)
    assert stored.keys() == expected.keys()
    for bucket, want in expected.items():
        got = stored[bucket]
        for name in ("score_sum", "neg_sum", "baseline_sum"):
            assert got.pop(name) == pytest.approx(want.pop(name), rel=1e-9, abs=1e-9), bucket
        assert got == want, bucket


def clear_signal_tables(store: Store) -> None:
    with store.begin() as conn:
        conn.execute(signal_points_table.delete())
        conn.execute(signal_rollups.delete())


# Windows of a few keys over about three days, so batches share hours and days and rewrite
# each other's windows with other numbers.
close_points = st.builds(
    lambda key, slot, point: point.model_copy(
        update={
            "key": key,
            "window_start": T0 + slot * timedelta(minutes=5),
            "window_end": T0 + (slot + 1) * timedelta(minutes=5),
        }
    ),
    st.sampled_from(["market", "ticker:AAPL", "topic:Earnings"]),
    st.integers(0, 3 * 288),
    signal_points(),
)


@settings(
    max_examples=30,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    batches=st.lists(st.lists(close_points, max_size=12), min_size=1, max_size=5),
    replays=st.lists(st.integers(0, 4), max_size=4),
)
def test_rollups_equal_the_windows_after_any_upserts_and_replays(
    store: Store, batches: list[list[SignalPoint]], replays: list[int]
) -> None:
    clear_signal_tables(store)
    writes = batches + [batches[i % len(batches)] for i in replays]
    for batch in writes:
        store.upsert_signal_points(batch)
    assert_rollups_match(store, [p for batch in writes for p in batch])


def test_rollups_of_a_rewritten_window_replace_its_old_numbers(store: Store) -> None:
    point = AAPL_POINT
    later = point.model_copy(
        update={"window_start": T0 + timedelta(minutes=5), "window_end": T0 + timedelta(minutes=10)}
    )
    store.upsert_signal_points([point, later])
    store.upsert_signal_points([point.model_copy(update={"count": 5, "neg_share": 0.2})])
    hourly = stored_rollups(store)[(HOUR, "ticker:AAPL", bucket_of(T0, HOUR))]
    assert (hourly["windows"], hourly["count"]) == (2, 8)
    assert hourly["neg_sum"] == pytest.approx(5 * 0.2 + 3 * 0.5)


def test_a_late_posts_correction_keeps_the_windows_judgement(store: Store) -> None:
    """A late post corrects count, mean and negative share; z, baseline and the spike flag
    stay those judged when the window closed, and the rollups follow the new count."""
    judged = AAPL_POINT.model_copy(update={"baseline": 0.1, "z": 4.0, "is_spike": True})
    store.upsert_signal_points([judged])
    corrected = AAPL_POINT.model_copy(update={"count": 4, "mean_score": -0.4, "neg_share": 0.75})
    store.upsert_signal_points([corrected], keep_judgement=True)
    (row,) = store.signal_series("ticker:AAPL")
    assert (row["count"], row["mean_score"], row["neg_share"]) == (4, -0.4, 0.75)
    assert (row["baseline"], row["z"], row["is_spike"]) == (0.1, 4.0, True)
    hourly = stored_rollups(store)[(HOUR, "ticker:AAPL", bucket_of(T0, HOUR))]
    assert hourly["count"] == 4


def test_a_store_without_rollups_gets_them_on_open(store: Store) -> None:
    """Migration: windows written before the rollup table existed are rolled up once."""
    points = [
        SignalPoint(
            key=key,
            window_start=T0 + i * timedelta(minutes=25),
            window_end=T0 + (i + 1) * timedelta(minutes=25),
            count=i,
            mean_score=0.1,
            neg_share=0.25,
            z=float(i),
            is_spike=i == 7,
        )
        for i in range(150)
        for key in ("market", "source:reddit")
    ]
    store.upsert_signal_points(points)
    with store.begin() as conn:
        conn.execute(signal_rollups.delete())
    reopened = Store(store.url)
    try:
        assert_rollups_match(reopened, points)
    finally:
        reopened.close()


@pytest.mark.integration
def test_concurrent_writers_of_one_key_lose_no_window(postgres_url: str) -> None:
    """Two sinks writing windows of the same hour at once: each recomputation must see the
    other's committed windows (PostgreSQL runs them concurrently, unlike SQLite)."""
    store = Store(postgres_url)
    clear_signal_tables(store)
    written: list[list[SignalPoint]] = [[], []]

    def write(writer: int) -> None:
        for i in range(writer, 60, 2):
            point = SignalPoint(
                key="market",
                window_start=T0 + i * timedelta(minutes=1),
                window_end=T0 + (i + 1) * timedelta(minutes=1),
                count=1,
                mean_score=0.0,
                neg_share=0.0,
            )
            store.upsert_signal_points([point])
            written[writer].append(point)

    try:
        threads = [threading.Thread(target=write, args=(n,)) for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert_rollups_match(store, written[0] + written[1])
    finally:
        metadata.drop_all(store.engine)
        store.close()


def make_alert(count: int = 9) -> Alert:
    return Alert(
        id=alert_id("ticker:AAPL", T0),
        key="ticker:AAPL",
        window_start=T0,
        window_end=T0 + timedelta(minutes=5),
        severity="critical",
        z=4.1,
        neg_share=0.8,
        mean_score=-0.6,
        count=count,
        baseline=0.2,
        evidence=(Evidence(id="webhook:1", title="bad", url=None, score=-0.9),),
        model_version="v1",
    )


def test_alert_upsert_keeps_first_creation_time(store: Store) -> None:
    store.upsert_alerts([make_alert()])
    first = store.get_alert(make_alert().id)
    store.upsert_alerts([make_alert(count=10)])
    again = store.get_alert(make_alert().id)
    assert first is not None and again is not None
    assert again["count"] == 10
    assert again["created_at"] == first["created_at"]
    assert again["evidence"][0]["title"] == "bad"


def test_delivery_log_has_one_row_per_alert_and_channel(store: Store) -> None:
    alert = make_alert().id
    store.record_delivery(alert, "slack", "retrying", attempts=1, error="HTTP 500")
    store.record_delivery(alert, "slack", "delivered", attempts=2)
    store.record_delivery(alert, "email", "failed", attempts=5, error="550 no such user")
    slack = store.get_delivery(alert, "slack")
    assert slack is not None
    assert (slack.status, slack.attempts, slack.error) == ("delivered", 2, None)
    assert slack.delivered_at is not None
    assert len(store.recent_deliveries()) == 2
    with pytest.raises(StoreError, match="not one of"):
        store.record_delivery(alert, "slack", "lost", attempts=1)


def test_sqlite_syncs_every_commit(tmp_path: Path) -> None:
    """synchronous=FULL: in WAL mode NORMAL may roll back the last commits on power loss,
    yet the worker commits its Kafka offsets as soon as the store write returns."""
    db = Store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        with db.engine.connect() as conn:
            assert conn.execute(text("PRAGMA synchronous")).scalar_one() == 2  # FULL
            assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
    finally:
        db.close()


def test_store_errors_and_redaction_never_show_the_database_password() -> None:
    with pytest.raises(StoreError, match="unsupported store URL") as caught:
        Store("mysql://finsentry:s3cr3t@db/finsentry")
    assert "s3cr3t" not in str(caught.value) and "finsentry:***@db" in str(caught.value)
    url = "postgresql://finsentry:p%40ss%2Fw0rd@127.0.0.1:1/finsentry"
    store = Store(url, create=False)
    try:
        said = store.redact(f"connect to {url} failed (password 'p@ss/w0rd' rejected)")
        assert said == (
            "connect to postgresql://finsentry:***@127.0.0.1:1/finsentry failed "
            "(password '***' rejected)"
        )
    finally:
        store.close()


def test_feedback_records_old_and_new_label(store: Store) -> None:
    store.upsert_posts([make_scored(1)])
    store.add_feedback("webhook:1", "sentiment", "positive", user="ana")
    (label,) = store.feedback_labels()
    assert (label["old_label"], label["new_label"], label["user"]) == (
        "negative",
        "positive",
        "ana",
    )
    with pytest.raises(StoreError, match="no post"):
        store.add_feedback("missing", "topic", "Earnings", user="ana")
    with pytest.raises(StoreError, match="feedback field"):
        store.add_feedback("webhook:1", "tickers", "X", user="ana")


@pytest.mark.parametrize(
    ("field", "label", "user", "message"),
    [
        ("sentiment", "Earnings", "ana", "is not a sentiment"),
        ("topic", "negative", "ana", "is not a topic"),
        ("sentiment", "<script>" * 1000, "ana", "is not a sentiment"),
        ("sentiment", "positive", "a" * 201, "1 to 200 characters, got 201"),
        ("sentiment", "positive", "  ", "1 to 200 characters"),
    ],
)
def test_feedback_refuses_unknown_labels_and_overlong_names(
    store: Store, field: str, label: str, user: str, message: str
) -> None:
    """The browser offers only known labels, but a caller can post anything to the callback:
    before these checks SQLite stored it and PostgreSQL raised an uncaught DataError."""
    store.upsert_posts([make_scored(1)])
    with pytest.raises(StoreError, match=message):
        store.add_feedback("webhook:1", field, label, user=user)
    assert store.feedback_labels() == []


def test_exactly_one_current_model(store: Store) -> None:
    for version in ("v1", "v2"):
        store.register_model_version(
            version,
            f"/models/{version}",
            metrics={"acc": 0.9},
            data_fingerprint="abc",
            training_config={"epochs": 3},
        )
    store.set_current_model("v1")
    store.set_current_model("v2")
    store.register_model_version(
        "v2", "/models/v2", metrics={"acc": 0.91}, data_fingerprint="abc", training_config={}
    )
    current = store.current_model()
    assert current is not None and current["version"] == "v2"
    assert current["metrics"] == {"acc": 0.91}
    assert sum(v["is_current"] for v in store.model_versions()) == 1
    with pytest.raises(StoreError, match="no model version"):
        store.set_current_model("v9")


def test_job_state_round_trip(store: Store) -> None:
    assert store.get_state("rss:feed", {}) == {}
    store.put_state("rss:feed", {"etag": "abc", "seen": ["1", "2"]})
    store.put_state("rss:feed", {"etag": "def", "seen": ["1", "2", "3"]})
    assert store.get_state("rss:feed") == {"etag": "def", "seen": ["1", "2", "3"]}
    with pytest.raises(TypeError):
        store.put_state("bad", object())


def test_naive_datetime_is_refused(store: Store) -> None:
    with pytest.raises(Exception, match="naive datetime"), store.begin() as conn:
        conn.execute(
            posts.insert().values(
                id="x",
                source="webhook",
                kind="news",
                published_at=datetime(2024, 1, 1),
                received_at=T0,
                title="t",
                body="",
                tickers=[],
                stored_at=T0,
            )
        )


@pytest.mark.unit
def test_unsupported_url_is_explained() -> None:
    with pytest.raises(StoreError, match="unsupported store URL"):
        Store("mysql://localhost/db")


def test_a_store_written_before_buzz_gets_its_columns(tmp_path: Path) -> None:
    """An existing SQLite store without the buzz columns is migrated when opened."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    Store(url).close()
    with Store(url, create=False).begin() as conn:
        for table, column in (
            ("signal_points", "is_buzz"),
            ("signal_points", "buzz_z"),
            ("signal_points", "volume_baseline"),
            ("signal_rollups", "buzzes"),
            ("alerts", "buzz"),
        ):
            conn.execute(text(f"ALTER TABLE {table} DROP COLUMN {column}"))
    store = Store(url)
    point = SignalPoint(
        key="market",
        window_start=datetime(2024, 1, 1, tzinfo=UTC),
        window_end=datetime(2024, 1, 2, tzinfo=UTC),
        count=9,
        mean_score=0.0,
        neg_share=0.0,
        volume_baseline=2.0,
        buzz_z=4.0,
        is_buzz=True,
    )
    store.upsert_signal_points([point])
    (row,) = store.signal_series("market")
    assert (row["volume_baseline"], row["buzz_z"], row["is_buzz"]) == (2.0, 4.0, True)
    store.close()
