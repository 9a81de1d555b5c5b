"""Spike detection on closed windows: a window's negative count against what the key's
baseline rate makes likely.

The statistic knows how many posts a window holds. A share compared with a floored spread
(the detector this replaced) called "1 negative post of 6" over a calm key a spike; here one
negative post in a small window is simply not unlikely enough.

For each key the detector keeps exponentially decayed sums of posts and of negative posts over
its earlier windows, decayed per window of event time elapsed (empty windows count), so an old
burst fades whether or not the key posts in between. The baseline rate is those sums plus a
prior worth ``prior_strength`` posts at the parent's rate: every key's parent is ``market``,
and the market's is ``MARKET_PRIOR_RATE``. A sparse key therefore borrows the market's rate
and a busy one stands on its own. The window's negative count k of n is judged against a
beta-binomial predictive: a beta around the baseline rate whose concentration is the evidence
behind it (posts, prior included), capped at ``max_concentration`` because real news swings
from day to day more than a fixed rate allows. Its upper tail P(X >= k) is the window's
chance of looking this bad on a calm day; the window fires when that is at most
``false_alarm_rate``, it holds at least ``min_negatives`` negative posts, its baseline rests
on ``min_history`` windows (the key's own or its parent's), and the key is not cooling down
after its last alert. ``z`` is the tail as a standard normal quantile (3.09 for 0.001),
for display and severity. The spike window then joins the baseline, so a lasting shift
stops alerting.

Buzz is the same question about volume: the window's post count against a gamma-Poisson
(negative binomial) around the key's decayed mean posts per window (empty windows count as
zero), of shape ``BUZZ_SHAPE``; a buzz window has a tail at most ``false_alarm_rate`` and at
least ``buzz_min_posts`` posts. It is stored with the point and flagged on an alert, so a
route can ask for "negative spike AND buzz".

State per key is a plain dict of a few numbers in a MutableMapping (a Faust table in the
worker). A key idle for so long that its own evidence weighs less than ``IDLE_WEIGHT`` is
dropped, so state does not grow with every key ever seen. Observing the same window twice (a
redelivery after a crash) returns the first verdict unchanged.
"""

from __future__ import annotations

import math
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

from finsentry.config import Settings
from finsentry.schema import Alert, ScoredPost, SignalPoint, alert_id
from stream.watermarks import InputMarks, Progress
from stream.windows import ClosedWindow, Observation, WindowAggregator, keys_for, observe

PARENT = "market"
# The market's own prior: a weak guess (the bundled headlines run 15-25% negative) that its
# first windows outweigh; no window fires before ``min_history`` windows anyway.
MARKET_PRIOR_RATE = 0.2
# A key whose decayed weight has fallen below this is forgotten (see SpikeDetector.prune).
IDLE_WEIGHT = 1e-3
PRUNED_AT = "__pruned_at__"
_MIN_TAIL = 1e-300  # the normal quantile of a tail that underflows
# News volume per name is very bursty (a results day brings ten headlines where a normal day
# brings one); a shape of 2 lets the day-to-day rate vary by about 70% of its mean.
BUZZ_SHAPE = 2.0


@dataclass(frozen=True)
class SpikeRules:
    alpha: float = 0.05
    false_alarm_rate: float = 1e-3
    prior_strength: float = 20.0
    max_concentration: float = 50.0
    min_negatives: int = 3
    min_history: int = 3
    cooldown_windows: int = 3
    buzz_min_posts: int = 5

    @classmethod
    def from_settings(cls, settings: Settings) -> SpikeRules:
        return cls(
            alpha=settings.spike_ewma_alpha,
            false_alarm_rate=settings.spike_false_alarm_rate,
            prior_strength=settings.spike_prior_strength,
            max_concentration=settings.spike_max_concentration,
            min_negatives=settings.spike_min_negatives,
            min_history=settings.spike_min_history,
            cooldown_windows=settings.spike_cooldown_windows,
            buzz_min_posts=settings.spike_buzz_min_posts,
        )

    @property
    def z_threshold(self) -> float:
        """The false-alarm rate as a standard normal quantile (what ``z`` is compared to)."""
        return tail_to_z(self.false_alarm_rate)

    @property
    def idle_windows(self) -> int:
        """Windows of silence after which a key's own evidence weighs under IDLE_WEIGHT."""
        if self.alpha >= 1:
            return 1
        return math.ceil(math.log(IDLE_WEIGHT) / math.log(1 - self.alpha))


@dataclass(frozen=True)
class Verdict:
    point: SignalPoint
    alert: Alert | None


def tail_to_z(tail: float) -> float:
    return -NormalDist().inv_cdf(min(max(tail, _MIN_TAIL), 0.5))


def beta_binomial_tail(k: int, n: int, rate: float, concentration: float) -> float:
    """P(X >= k) for X ~ BetaBinomial(n, a, b) with mean ``rate`` and a + b = concentration."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    a = max(rate, 1e-9) * concentration
    b = max(1 - rate, 1e-9) * concentration
    norm = math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    log_n = math.lgamma(n + 1)
    terms = [
        log_n
        - math.lgamma(j + 1)
        - math.lgamma(n - j + 1)
        + math.lgamma(j + a)
        + math.lgamma(n - j + b)
        - math.lgamma(n + a + b)
        - norm
        for j in range(k, n + 1)
    ]
    top = max(terms)
    return min(1.0, math.exp(top) * math.fsum(math.exp(t - top) for t in terms))


def negative_binomial_tail(n: int, mean: float, shape: float) -> float:
    """P(N >= n) for a gamma-Poisson count with this mean and gamma shape."""
    if n <= 0:
        return 1.0
    mean = max(mean, 1e-9)
    log_p, log_q = math.log(shape / (shape + mean)), math.log(mean / (shape + mean))
    below = math.fsum(
        math.exp(
            math.lgamma(j + shape)
            - math.lgamma(shape)
            - math.lgamma(j + 1)
            + shape * log_p
            + j * log_q
        )
        for j in range(n)
    )
    return max(0.0, 1.0 - below)


class SpikeDetector:
    def __init__(self, rules: SpikeRules, state: MutableMapping[str, Any] | None = None) -> None:
        self.rules = rules
        self.state: MutableMapping[str, Any] = {} if state is None else state

    def observe(self, window: ClosedWindow) -> Verdict:
        rules = self.rules
        start = window.window_start.timestamp()
        size = (window.window_end - window.window_start).total_seconds()
        key_state = self.state.get(window.key) or {
            "posts": 0.0,
            "negatives": 0.0,
            "windows": 0,
            "last_start": None,
            "last_alert_start": None,
            "rate": None,
            "rate_before": None,
            "volume": None,
            "last": None,
        }
        if key_state["last_start"] is not None and start <= key_state["last_start"]:
            return _rebuild(window, key_state["last"])

        decay = 1.0
        if key_state["last_start"] is not None:
            gap = round((start - key_state["last_start"]) / size)
            decay = (1 - rules.alpha) ** max(gap - 1, 0)
        posts = key_state["posts"] * decay
        negatives = key_state["negatives"] * decay
        parent_rate, parent_windows = self._parent(window.key, start)
        rate = (negatives + rules.prior_strength * parent_rate) / (posts + rules.prior_strength)
        concentration = min(posts + rules.prior_strength, rules.max_concentration)
        k = round(window.neg_share * window.count)
        tail = beta_binomial_tail(k, window.count, rate, concentration)
        z = tail_to_z(tail)
        cooling = (
            key_state["last_alert_start"] is not None
            and start < key_state["last_alert_start"] + rules.cooldown_windows * size
        )
        fires = (
            tail <= rules.false_alarm_rate
            and k >= rules.min_negatives
            and max(key_state["windows"], parent_windows) >= rules.min_history
            and not cooling
        )
        severity = "critical" if z >= 2 * rules.z_threshold else "warning"
        volume = None if key_state["volume"] is None else key_state["volume"] * decay
        buzz_z = None
        buzz = False
        if volume is not None:
            buzz_tail = negative_binomial_tail(window.count, volume, BUZZ_SHAPE)
            buzz_z = tail_to_z(buzz_tail)
            buzz = (
                buzz_tail <= rules.false_alarm_rate
                and window.count >= rules.buzz_min_posts
                and key_state["windows"] >= rules.min_history
            )
        last = {
            "baseline": rate,
            "z": z,
            "spike": fires,
            "severity": severity,
            "volume": volume,
            "buzz_z": buzz_z,
            "buzz": buzz,
        }
        if fires:
            key_state["last_alert_start"] = start

        lam = 1 - rules.alpha
        key_state["posts"] = posts * lam + window.count
        key_state["negatives"] = negatives * lam + k
        key_state["volume"] = (
            float(window.count) if volume is None else lam * volume + rules.alpha * window.count
        )
        key_state["windows"] += 1
        key_state["last_start"] = start
        key_state["rate_before"] = rate
        key_state["rate"] = (key_state["negatives"] + rules.prior_strength * parent_rate) / (
            key_state["posts"] + rules.prior_strength
        )
        key_state["last"] = last
        self.state[window.key] = key_state
        self._prune(start, size)
        return _rebuild(window, last)

    def _parent(self, key: str, start: float) -> tuple[float, int]:
        """The parent's rate and windows as they stood before ``start``."""
        if key == PARENT:
            return MARKET_PRIOR_RATE, 0
        parent = self.state.get(PARENT)
        if parent is None:
            return MARKET_PRIOR_RATE, 0
        if parent["last_start"] < start:
            return parent["rate"], parent["windows"]
        return parent["rate_before"], parent["windows"] - 1

    def _prune(self, start: float, size: float) -> None:
        """Forget keys idle for ``idle_windows``; a scan at most once per that span."""
        horizon = self.rules.idle_windows * size
        last_scan = self.state.get(PRUNED_AT)
        if last_scan is not None and start < last_scan + horizon:
            return
        self.state[PRUNED_AT] = start
        if last_scan is None:
            return
        stale = [
            key
            for key, value in self.state.items()
            if key != PRUNED_AT and value["last_start"] < start - horizon
        ]
        for key in stale:
            del self.state[key]


def _rebuild(window: ClosedWindow, last: dict[str, Any]) -> Verdict:
    """The verdict on ``window`` from the numbers the detector decided it with."""
    point = SignalPoint(
        key=window.key,
        window_start=window.window_start,
        window_end=window.window_end,
        count=window.count,
        mean_score=window.mean_score,
        neg_share=window.neg_share,
        baseline=last["baseline"],
        z=last["z"],
        is_spike=last["spike"],
        volume_baseline=last["volume"],
        buzz_z=last["buzz_z"],
        is_buzz=last["buzz"],
    )
    alert = None
    if last["spike"]:
        alert = Alert(
            id=alert_id(window.key, window.window_start),
            key=window.key,
            window_start=window.window_start,
            window_end=window.window_end,
            severity=last["severity"],
            z=last["z"],
            neg_share=window.neg_share,
            mean_score=window.mean_score,
            count=window.count,
            baseline=last["baseline"],
            evidence=window.evidence,
            model_version=window.model_version,
            buzz=last["buzz"],
        )
    return Verdict(point, alert)


@dataclass
class EngineOutput:
    points: list[SignalPoint]
    alerts: list[Alert]
    late_keys: list[str]
    # Windows closed and judged before, with a late post added: count, mean and negative
    # share only (baseline, z and the spike flag stay those stored), never an alert.
    corrections: list[SignalPoint] = field(default_factory=list)


class SignalEngine:
    """Windows then spikes: the one path from scored posts to signals, stream and backfill."""

    def __init__(
        self,
        size_s: int,
        allowed_lateness_s: int,
        rules: SpikeRules,
        *,
        evidence_size: int = 5,
        correction_horizon_s: int = 0,
        window_state: MutableMapping[str, Any] | None = None,
        spike_state: MutableMapping[str, Any] | None = None,
    ) -> None:
        self.windows = WindowAggregator(
            size_s,
            allowed_lateness_s,
            evidence_size=evidence_size,
            correction_horizon_s=correction_horizon_s,
            state=window_state,
        )
        self.marks = InputMarks(self.windows.state)
        self.detector = SpikeDetector(rules, spike_state)

    @classmethod
    def from_settings(
        cls, settings: Settings, *, corrections: bool = True, **state: MutableMapping[str, Any]
    ) -> SignalEngine:
        """``corrections=False`` keeps no closed window for late posts (a sorted backfill
        has none)."""
        return cls(
            settings.window_size_s,
            settings.allowed_lateness_s,
            SpikeRules.from_settings(settings),
            evidence_size=settings.stream_evidence_size,
            correction_horizon_s=settings.late_correction_horizon_s if corrections else 0,
            **state,
        )

    def add(self, keys: list[str], obs: Observation) -> EngineOutput:
        result = self.windows.add(keys, obs)
        return self._judge(result.closed, result.late_keys, result.corrected)

    def add_input(
        self, items: Sequence[tuple[list[str], Observation]], progress: Progress
    ) -> EngineOutput:
        """A signal-input message: every post aggregated against the watermark as it was,
        then the input partitions' marks recorded and the watermark moved to the lowest
        active one minus the allowed lateness (stream/watermarks.py)."""
        late_keys: list[str] = []
        corrected: list[ClosedWindow] = []
        for keys, obs in items:
            result = self.windows.accumulate(keys, obs)
            late_keys += result.late_keys
            corrected += result.corrected
        self.marks.update(progress)
        closed = self.windows.advance(self.marks.low() - self.windows.allowed_lateness_s)
        return self._judge(closed, late_keys, corrected)

    def add_post(self, post: ScoredPost) -> EngineOutput:
        return self.add(keys_for(post), observe(post))

    def flush(self) -> EngineOutput:
        return self._judge(self.windows.flush(), [], [])

    def _judge(
        self, closed: list[ClosedWindow], late_keys: list[str], corrected: list[ClosedWindow]
    ) -> EngineOutput:
        verdicts = [self.detector.observe(window) for window in closed]
        latest = {(w.key, w.window_start): w for w in corrected}  # a window twice: the last
        return EngineOutput(
            points=[v.point for v in verdicts],
            alerts=[v.alert for v in verdicts if v.alert is not None],
            late_keys=late_keys,
            corrections=[_corrected_point(w) for w in latest.values()],
        )


def _corrected_point(window: ClosedWindow) -> SignalPoint:
    return SignalPoint(
        key=window.key,
        window_start=window.window_start,
        window_end=window.window_end,
        count=window.count,
        mean_score=window.mean_score,
        neg_share=window.neg_share,
    )
