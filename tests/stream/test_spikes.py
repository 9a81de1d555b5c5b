from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from finsentry.config import load_settings
from finsentry.schema import Alert, Evidence, ScoredPost, alert_id
from stream.spikes import SignalEngine, SpikeDetector, SpikeRules
from stream.watermarks import Progress
from stream.windows import ClosedWindow, Observation, observations_from_json, observations_to_json

pytestmark = pytest.mark.unit

T0 = datetime(2024, 5, 1, tzinfo=UTC)
RULES = SpikeRules(alpha=0.3, z_threshold=3.0, min_count=5, min_history=3, cooldown_windows=3)


def window(n: int, neg_share: float, count: int = 10, key: str = "ticker:AAPL") -> ClosedWindow:
    start = T0 + timedelta(minutes=5 * n)
    return ClosedWindow(
        key=key,
        window_start=start,
        window_end=start + timedelta(minutes=5),
        count=count,
        mean_score=-neg_share,
        neg_share=neg_share,
        evidence=(Evidence(id=f"p{n}", title="bad news", url=None, score=-0.9),),
        model_version="v1",
    )


def feed(detector: SpikeDetector, shares: list[float], count: int = 10) -> list[Alert]:
    return [
        a
        for n, s in enumerate(shares)
        if (a := detector.observe(window(n, s, count)).alert) is not None
    ]


def test_calm_history_then_burst_alerts_once_with_evidence() -> None:
    alerts = feed(SpikeDetector(RULES), [0.1, 0.12, 0.1, 0.11, 0.9, 0.9, 0.95])
    (alert,) = alerts
    assert alert.window_start == T0 + timedelta(minutes=20)
    assert alert.id == alert_id("ticker:AAPL", alert.window_start)
    assert alert.z >= 3.0 and alert.neg_share == 0.9
    assert alert.baseline == pytest.approx(0.1, abs=0.02)
    assert alert.evidence[0].title == "bad news"


def test_same_history_without_burst_is_silent() -> None:
    assert feed(SpikeDetector(RULES), [0.1, 0.12, 0.1, 0.11, 0.1, 0.12, 0.09]) == []


def test_cooldown_expires() -> None:
    shares = [0.1, 0.1, 0.1, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.95]
    alerts = feed(SpikeDetector(RULES), shares)
    assert [a.window_start for a in alerts] == [
        T0 + timedelta(minutes=15),
        T0 + timedelta(minutes=45),
    ]


def test_small_windows_and_short_history_never_fire() -> None:
    assert feed(SpikeDetector(RULES), [0.1, 0.1, 0.1, 0.9], count=4) == []
    assert feed(SpikeDetector(RULES), [0.1, 0.1, 0.9]) == []  # only 2 earlier windows


def test_first_window_has_no_statistic() -> None:
    verdict = SpikeDetector(RULES).observe(window(0, 0.5))
    assert verdict.point.z is None and verdict.point.baseline is None
    assert not verdict.point.is_spike


def test_mean_score_metric_fires_on_a_drop() -> None:
    rules = SpikeRules(metric="mean_score", min_history=3)
    detector = SpikeDetector(rules)
    for n, share in enumerate([0.1, 0.1, 0.1]):
        detector.observe(window(n, share))
    verdict = detector.observe(window(3, 0.9))
    assert verdict.alert is not None
    assert verdict.point.baseline == pytest.approx(-0.1)


def test_observing_a_window_again_repeats_the_first_verdict() -> None:
    state: dict[str, object] = {}
    detector = SpikeDetector(RULES, state)
    for n, share in enumerate([0.1, 0.1, 0.1, 0.9]):
        first = detector.observe(window(n, share))
    snapshot = dict(state)
    again = SpikeDetector(RULES, state).observe(window(3, 0.9))
    assert again == first
    assert state == snapshot


@given(st.lists(st.floats(0, 1), min_size=1, max_size=40))
def test_z_is_finite_and_keys_are_independent(shares: list[float]) -> None:
    detector = SpikeDetector(RULES)
    for n, share in enumerate(shares):
        point = detector.observe(window(n, share)).point
        assert point.z is None or abs(point.z) <= 1 / RULES.min_std + 1e-9
    other = detector.observe(window(0, 0.9, key="ticker:MSFT"))
    assert other.point.z is None


def scored(n: int, minutes: float, negative: bool) -> ScoredPost:
    at = T0 + timedelta(minutes=minutes)
    probs = {"negative": 0.9, "neutral": 0.05, "positive": 0.05}
    if not negative:
        probs = {"negative": 0.05, "neutral": 0.05, "positive": 0.9}
    return ScoredPost(
        id=f"p{n}",
        source="rss:x",
        kind="news",
        published_at=at,
        received_at=at,
        title=f"story {n}",
        tickers=("AAPL",),
        sentiment="negative" if negative else "positive",
        sentiment_probs=probs,
        score=probs["positive"] - probs["negative"],
        topic="Earnings",
        topic_probs={"Earnings": 0.8},
        model_version="v1",
    )


def test_a_batch_message_gives_what_adding_post_by_post_gives() -> None:
    posts = [scored(n, minutes=n / 2, negative=50 <= n < 60) for n in range(100)]
    one_by_one = SignalEngine(300, 600, RULES)
    outputs = [one_by_one.add_post(post) for post in posts]
    batched = SignalEngine(300, 600, RULES)
    merged = []
    for start in range(0, len(posts), 16):
        batch = posts[start : start + 16]
        progress = Progress(
            inputs=("posts:0",), highs={"posts:0": batch[-1].published_at.timestamp()}
        )
        merged.append(
            batched.add_input(*observations_from_json(observations_to_json(batch, progress)))
        )
    assert [p for o in merged for p in o.points] == [p for o in outputs for p in o.points]
    assert [a for o in merged for a in o.alerts] == [a for o in outputs for a in o.alerts]
    assert any(o.alerts for o in merged)


def test_regression_stream_evidence_size_reaches_the_windows(tmp_path: Path) -> None:
    """``stream_evidence_size`` was read by nobody: every alert carried five posts."""
    engine = SignalEngine.from_settings(load_settings(data_dir=tmp_path, stream_evidence_size=2))
    start = datetime(2024, 5, 1, tzinfo=UTC).timestamp()
    for n in range(6):
        obs = Observation(f"p{n}", start + n, -0.1 * n, True, f"post {n}", None, "v1")
        engine.windows.add(["market"], obs)
    (window,) = engine.windows.flush()
    assert [e.id for e in window.evidence] == ["p5", "p4"]
