from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text

from finsentry.schema import Alert, Evidence, Post, ScoredPost, SignalPoint, alert_id
from finsentry.store import Store, StoreError, post_tickers, posts
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


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
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


def test_signal_points_upsert_by_key_and_window(store: Store) -> None:
    point = SignalPoint(
        key="ticker:AAPL",
        window_start=T0,
        window_end=T0 + timedelta(minutes=5),
        count=3,
        mean_score=-0.2,
        neg_share=0.5,
    )
    store.upsert_signal_points([point])
    store.upsert_signal_points([point.model_copy(update={"count": 4, "z": 3.5, "is_spike": True})])
    series = store.signal_series("ticker:AAPL")
    assert len(series) == 1
    assert (series[0]["count"], series[0]["z"], series[0]["is_spike"]) == (4, 3.5, True)


@settings(max_examples=20, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(points=st.lists(signal_points(), max_size=10))
def test_signal_points_replayed_count_once(store: Store, points: list[SignalPoint]) -> None:
    store.upsert_signal_points(points)
    store.upsert_signal_points(points)
    for key in {p.key for p in points}:
        expected = {p.window_start for p in points if p.key == key}
        assert {r["window_start"] for r in store.signal_series(key)} >= expected


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
