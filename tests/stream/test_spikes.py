from __future__ import annotations

import itertools
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from finsentry.config import load_settings
from finsentry.schema import Evidence, ScoredPost, alert_id
from stream.spikes import (
    SignalEngine,
    SpikeDetector,
    SpikeRules,
    beta_binomial_tail,
    negative_binomial_tail,
)
from stream.watermarks import Progress
from stream.windows import ClosedWindow, Observation, observations_from_json, observations_to_json

pytestmark = pytest.mark.unit

T0 = datetime(2024, 5, 1, tzinfo=UTC)
RULES = SpikeRules(
    alpha=0.05,
    false_alarm_rate=1e-3,
    prior_strength=20,
    max_concentration=50,
    min_negatives=3,
    min_history=3,
    cooldown_windows=3,
)


def window(n: int, negatives: int, count: int = 10, key: str = "ticker:AAPL") -> ClosedWindow:
    start = T0 + timedelta(minutes=5 * n)
    return ClosedWindow(
        key=key,
        window_start=start,
        window_end=start + timedelta(minutes=5),
        count=count,
        mean_score=-negatives / count,
        neg_share=negatives / count,
        evidence=(Evidence(id=f"p{n}", title="bad news", url=None, score=-0.9),),
        model_version="v1",
    )


def calm(
    detector: SpikeDetector, windows: int, key: str = "ticker:AAPL", negatives: int = 1
) -> None:
    """``windows`` windows of 10 posts, ``negatives`` of them negative."""
    for n in range(windows):
        assert detector.observe(window(n, negatives, key=key)).alert is None


def copied(state: Any) -> dict[str, Any]:
    return {key: dict(value) if isinstance(value, dict) else value for key, value in state.items()}


def test_tiny_windows_over_a_calm_key_do_not_fire() -> None:
    """The floored z fired on "1 negative of 6" (z 4.0 against a baseline of 0)."""
    tiny = ((1, 1), (1, 6), (2, 2), (2, 3), (3, 5))
    cases = [(1, window) for window in tiny] + [(0, (1, 1)), (0, (1, 6))]  # 0: the issue's
    for rules, (calm_negatives, (negatives, count)) in itertools.product(
        (RULES, replace(RULES, min_negatives=1)), cases
    ):
        detector = SpikeDetector(rules)
        calm(detector, 30, negatives=calm_negatives)
        verdict = detector.observe(window(30, negatives, count))
        assert verdict.alert is None, (rules.min_negatives, calm_negatives, negatives, count)
        assert not verdict.point.is_spike


def test_a_burst_of_the_benchmarked_size_fires_with_evidence() -> None:
    detector = SpikeDetector(RULES)
    calm(detector, 30)
    verdict = detector.observe(window(30, 10, count=13))
    alert = verdict.alert
    assert alert is not None and verdict.point.is_spike
    assert alert.window_start == T0 + timedelta(minutes=150)
    assert alert.id == alert_id("ticker:AAPL", alert.window_start)
    assert alert.baseline == pytest.approx(0.1, abs=0.02)  # the market prior pulls a little
    assert alert.z >= RULES.z_threshold and alert.count == 13
    assert alert.evidence[0].title == "bad news"


def test_the_threshold_is_a_false_alarm_rate() -> None:
    """k fires exactly when P(X >= k) under the baseline is at most the configured rate."""
    detector = SpikeDetector(RULES)
    calm(detector, 30)
    state = dict(detector.state["ticker:AAPL"])
    fired = []
    for k in range(21):
        trial = SpikeDetector(RULES, {"ticker:AAPL": dict(state)})
        verdict = trial.observe(window(30, k, count=20))
        tail = beta_binomial_tail(k, 20, verdict.point.baseline or 0, 50)
        assert verdict.point.is_spike == (tail <= 1e-3 and k >= 3)
        fired.append(verdict.point.is_spike)
    assert fired == sorted(fired) and any(fired) and not all(fired)


def test_a_lasting_shift_stops_alerting() -> None:
    detector = SpikeDetector(replace(RULES, cooldown_windows=0))
    calm(detector, 30)
    alerts = [detector.observe(window(30 + n, 8)).alert for n in range(60)]
    assert alerts[0] is not None and alerts[-1] is None


def test_cooldown_holds_then_expires() -> None:
    detector = SpikeDetector(RULES)
    calm(detector, 30)
    fired = [detector.observe(window(30 + n, 10)).alert is not None for n in range(5)]
    assert fired == [True, False, False, True, False]


def test_short_history_never_fires() -> None:
    detector = SpikeDetector(RULES)
    calm(detector, 2, key="market")
    calm(detector, 2)
    assert detector.observe(window(2, 10)).alert is None  # 2 windows, of its own and its parent


def test_sparse_keys_borrow_the_markets_rate() -> None:
    """A ticker never seen before is judged against the market's rate, not a blank one."""
    burst = window(40, 5, count=5, key="ticker:NEW")
    calm_market = SpikeDetector(RULES)
    calm(calm_market, 40, key="market")
    verdict = calm_market.observe(burst)
    assert verdict.alert is not None
    assert verdict.point.baseline == pytest.approx(0.1, abs=0.02)

    gloomy_market = SpikeDetector(RULES)
    for n in range(40):
        gloomy_market.observe(window(n, 7, key="market"))
    verdict = gloomy_market.observe(burst)
    assert verdict.alert is None
    assert 0.6 < (verdict.point.baseline or 0) < 0.7


def test_a_key_reads_the_market_as_it_stood_before_the_window() -> None:
    """Market and ticker windows of one time close together; either order, one verdict."""
    detector = SpikeDetector(RULES)
    calm(detector, 30, key="market")
    ticker_first = SpikeDetector(RULES, copied(detector.state))
    first = ticker_first.observe(window(30, 4, count=5, key="ticker:X"))
    market_first = SpikeDetector(RULES, copied(detector.state))
    market_first.observe(window(30, 9, key="market"))
    second = market_first.observe(window(30, 4, count=5, key="ticker:X"))
    assert first == second


def test_observing_a_window_again_repeats_the_first_verdict() -> None:
    state: dict[str, object] = {}
    detector = SpikeDetector(RULES, state)
    calm(detector, 30)
    first = detector.observe(window(30, 10))
    assert first.alert is not None
    snapshot = copied(state)
    again = SpikeDetector(RULES, state).observe(window(30, 10))
    assert again == first
    assert state == snapshot


def test_idle_keys_are_forgotten() -> None:
    """Issue 19: spike state kept every key ever seen; now only keys seen within the span
    after which their own evidence weighs under IDLE_WEIGHT."""
    detector = SpikeDetector(RULES)
    horizon = RULES.idle_windows
    for n in range(5 * horizon):
        detector.observe(window(n, 1, key="market"))
        detector.observe(window(n, 1, key=f"ticker:T{n}"))
        live = [key for key in detector.state if key.startswith("ticker:")]
        assert len(live) <= 2 * horizon + 1
    assert "ticker:T0" not in detector.state and f"ticker:T{5 * horizon - 1}" in detector.state


@given(
    st.integers(0, 60),
    st.floats(0.001, 0.999),
    st.floats(0.5, 500),
)
def test_the_tail_is_a_probability_that_falls_with_k(n: int, rate: float, conc: float) -> None:
    tails = [beta_binomial_tail(k, n, rate, conc) for k in range(n + 2)]
    assert tails[0] == 1.0 and tails[-1] == 0.0
    assert all(0.0 <= t <= 1.0 for t in tails)
    assert all(a >= b - 1e-12 for a, b in itertools.pairwise(tails))
    a, b = rate * conc, (1 - rate) * conc
    log_none = math.lgamma(n + b) + math.lgamma(a + b) - math.lgamma(b) - math.lgamma(n + a + b)
    none = math.exp(log_none)
    assert 1 - tails[1] == pytest.approx(none, abs=1e-9)


@given(st.lists(st.tuples(st.integers(0, 30), st.integers(1, 30)), min_size=1, max_size=40))
def test_z_is_finite_and_keys_are_independent(windows: list[tuple[int, int]]) -> None:
    detector = SpikeDetector(RULES)
    for n, (negatives, count) in enumerate(windows):
        point = detector.observe(window(n, min(negatives, count), count)).point
        assert point.z is not None and math.isfinite(point.z)
        assert point.baseline is not None and 0 < point.baseline < 1
    other = detector.observe(window(0, 9, key="ticker:MSFT"))
    assert other.alert is None or len(windows) >= RULES.min_history


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


def test_buzz_is_a_volume_spike_against_the_keys_usual_count() -> None:
    detector = SpikeDetector(RULES)
    calm(detector, 30)  # ten posts a window
    usual = detector.observe(window(30, 1, count=14)).point
    assert usual.volume_baseline == pytest.approx(10.0)
    assert not usual.is_buzz and usual.buzz_z is not None
    loud = detector.observe(window(31, 40, count=60))
    assert loud.point.is_buzz and loud.point.is_spike
    assert loud.alert is not None and loud.alert.buzz


def test_a_negative_spike_without_more_posts_is_not_buzz() -> None:
    detector = SpikeDetector(RULES)
    calm(detector, 30)
    verdict = detector.observe(window(30, 9, count=10))
    assert verdict.alert is not None and not verdict.alert.buzz


def test_a_quiet_name_with_a_few_posts_is_buzz_only_from_buzz_min_posts() -> None:
    """Buzz needs buzz_min_posts, however quiet the key was (4 posts after a long silence)."""
    detector = SpikeDetector(RULES)
    for n in range(5):
        detector.observe(window(n * 20, 0, count=1))
    assert not detector.observe(window(200, 0, count=4)).point.is_buzz
    assert detector.observe(window(300, 0, count=5)).point.is_buzz


@given(st.integers(0, 80), st.floats(0.01, 50), st.floats(0.2, 20))
def test_the_volume_tail_is_a_probability_that_falls_with_n(
    n: int, mean: float, shape: float
) -> None:
    tails = [negative_binomial_tail(k, mean, shape) for k in range(n + 1)]
    assert tails[0] == 1.0 and all(0.0 <= t <= 1.0 for t in tails)
    assert all(a >= b - 1e-12 for a, b in itertools.pairwise(tails))
    if n >= 1:
        assert 1 - tails[1] == pytest.approx((shape / (shape + mean)) ** shape, abs=1e-9)
