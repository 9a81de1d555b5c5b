"""Spike detection on closed windows: an EWMA baseline per key and a z statistic.

For each key the detector keeps an exponentially weighted mean and variance of the metric
over that key's earlier windows. A window's z is its distance from that baseline in
baseline standard deviations, oriented so that more negative sentiment means larger z. It
fires when z passes the threshold, the window has at least ``min_count`` posts, the key has
``min_history`` earlier windows, and the key is not cooling down after its last alert.
The spike window itself then joins the baseline, so a lasting shift stops alerting.

State per key is a plain dict in a MutableMapping (a Faust table in the worker). Observing
the same window twice (a redelivery after a crash) returns the first result unchanged.
"""

from __future__ import annotations

import math
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from finsentry.config import Settings
from finsentry.schema import Alert, ScoredPost, SignalPoint, alert_id
from stream.watermarks import InputMarks, Progress
from stream.windows import ClosedWindow, Observation, WindowAggregator, keys_for, observe

Metric = Literal["neg_share", "mean_score"]


@dataclass(frozen=True)
class SpikeRules:
    metric: Metric = "neg_share"
    alpha: float = 0.3
    z_threshold: float = 3.0
    min_count: int = 5
    min_history: int = 3
    cooldown_windows: int = 3
    # Floor on the baseline's standard deviation: a perfectly calm history would otherwise
    # make any single negative post an infinite z.
    min_std: float = 0.05

    @classmethod
    def from_settings(cls, settings: Settings) -> SpikeRules:
        return cls(
            metric=settings.spike_metric,
            alpha=settings.spike_ewma_alpha,
            z_threshold=settings.spike_z_threshold,
            min_count=settings.spike_min_count,
            min_history=settings.spike_min_history,
            cooldown_windows=settings.spike_cooldown_windows,
        )


@dataclass(frozen=True)
class Verdict:
    point: SignalPoint
    alert: Alert | None


class SpikeDetector:
    def __init__(self, rules: SpikeRules, state: MutableMapping[str, Any] | None = None) -> None:
        self.rules = rules
        self.state: MutableMapping[str, Any] = {} if state is None else state

    def _value(self, window: ClosedWindow) -> float:
        # Oriented so that "more negative" is larger for both metrics.
        return window.neg_share if self.rules.metric == "neg_share" else -window.mean_score

    def observe(self, window: ClosedWindow) -> Verdict:
        key_state = self.state.get(window.key) or {
            "mean": None,
            "var": 0.0,
            "history": 0,
            "last_alert_start": None,
            "last_start": None,
            "last_verdict": None,
        }
        start = window.window_start.timestamp()
        if key_state["last_start"] is not None and start <= key_state["last_start"]:
            return _verdict_from_dict(key_state["last_verdict"])

        rules = self.rules
        value = self._value(window)
        baseline_mean = key_state["mean"]
        z: float | None = None
        if baseline_mean is not None:
            std = max(math.sqrt(key_state["var"]), rules.min_std)
            z = (value - baseline_mean) / std
        size = (window.window_end - window.window_start).total_seconds()
        cooling = (
            key_state["last_alert_start"] is not None
            and start < key_state["last_alert_start"] + rules.cooldown_windows * size
        )
        fires = (
            z is not None
            and z >= rules.z_threshold
            and window.count >= rules.min_count
            and key_state["history"] >= rules.min_history
            and not cooling
        )
        baseline = _display_baseline(baseline_mean, rules.metric)
        point = SignalPoint(
            key=window.key,
            window_start=window.window_start,
            window_end=window.window_end,
            count=window.count,
            mean_score=window.mean_score,
            neg_share=window.neg_share,
            baseline=baseline,
            z=z,
            is_spike=fires,
        )
        alert = None
        if fires:
            assert z is not None and baseline is not None
            alert = Alert(
                id=alert_id(window.key, window.window_start),
                key=window.key,
                window_start=window.window_start,
                window_end=window.window_end,
                severity="critical" if z >= 2 * rules.z_threshold else "warning",
                z=z,
                neg_share=window.neg_share,
                mean_score=window.mean_score,
                count=window.count,
                baseline=baseline,
                evidence=window.evidence,
                model_version=window.model_version,
            )
            key_state["last_alert_start"] = start

        if baseline_mean is None:
            key_state["mean"], key_state["var"] = value, 0.0
        else:
            # Exponentially weighted mean and variance (West's incremental form).
            diff = value - baseline_mean
            increment = rules.alpha * diff
            key_state["mean"] = baseline_mean + increment
            key_state["var"] = (1 - rules.alpha) * (key_state["var"] + diff * increment)
        key_state["history"] += 1
        key_state["last_start"] = start
        key_state["last_verdict"] = {
            "point": point.model_dump(mode="json"),
            "alert": alert.model_dump(mode="json") if alert else None,
        }
        self.state[window.key] = key_state
        return Verdict(point, alert)


def _display_baseline(mean: float | None, metric: Metric) -> float | None:
    """The baseline in the metric's own units (mean_score is stored negated)."""
    if mean is None:
        return None
    return mean if metric == "neg_share" else -mean


def _verdict_from_dict(data: dict[str, Any]) -> Verdict:
    alert = data["alert"]
    return Verdict(
        SignalPoint.from_dict(data["point"]),
        Alert.from_dict(alert) if alert is not None else None,
    )


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
