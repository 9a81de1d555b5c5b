"""The spike rule that shipped before the count-aware detector, kept as the benchmark's baseline.

A window's negative share against an EWMA mean and variance of the key's earlier windows,
in standard deviations floored at ``min_std``; fires at ``z_threshold`` on windows of at
least ``min_count`` posts once the key has ``min_history`` windows, outside the cooldown
(stream/spikes.py as of 301fe6d, reduced to what the benchmark compares: which windows fire).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from stream.windows import ClosedWindow


@dataclass(frozen=True)
class LegacyRules:
    alpha: float = 0.3
    z_threshold: float = 3.0
    min_count: int = 5
    min_history: int = 3
    cooldown_windows: int = 3
    min_std: float = 0.05


class LegacyDetector:
    def __init__(self, rules: LegacyRules) -> None:
        self.rules = rules
        self.state: dict[str, dict[str, Any]] = {}

    def fires(self, window: ClosedWindow) -> bool:
        rules = self.rules
        state = self.state.setdefault(
            window.key, {"mean": None, "var": 0.0, "history": 0, "last_alert": None}
        )
        start = window.window_start.timestamp()
        size = (window.window_end - window.window_start).total_seconds()
        value = window.neg_share
        mean = state["mean"]
        z = None if mean is None else (value - mean) / max(math.sqrt(state["var"]), rules.min_std)
        cooling = state["last_alert"] is not None and (
            start < state["last_alert"] + rules.cooldown_windows * size
        )
        fired = (
            z is not None
            and z >= rules.z_threshold
            and window.count >= rules.min_count
            and state["history"] >= rules.min_history
            and not cooling
        )
        if fired:
            state["last_alert"] = start
        if mean is None:
            state["mean"], state["var"] = value, 0.0
        else:
            diff = value - mean
            increment = rules.alpha * diff
            state["mean"] = mean + increment
            state["var"] = (1 - rules.alpha) * (state["var"] + diff * increment)
        state["history"] += 1
        return fired
