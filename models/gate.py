"""The promotion gate: a candidate replaces the current model only if it is no worse beyond
a tolerance on any headline metric and strictly better on at least one.

Pure: metrics in, decision and reason out. Both models must be scored on the same
evaluation sets (models/retrain.py evaluates them side by side).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    deltas: dict[str, float]


def headline(results: Mapping[str, Mapping[str, Any]], metrics: Sequence[str]) -> dict[str, float]:
    """``{"twitter_topic.accuracy": 0.86, ...}`` from evaluate_sets' per-set results."""
    values = {}
    for name in metrics:
        data_set, metric = name.split(".", 1)
        if data_set not in results:
            raise KeyError(f"gate metric {name}: no evaluation set {data_set!r} in the results")
        values[name] = float(results[data_set][metric])
    return values


def decide(
    candidate: Mapping[str, float], current: Mapping[str, float], tolerance: float
) -> GateDecision:
    if set(candidate) != set(current):
        raise ValueError(f"metric names differ: {sorted(candidate)} vs {sorted(current)}")
    deltas = {name: candidate[name] - current[name] for name in current}
    worse = [name for name, delta in deltas.items() if delta < -tolerance]
    better = [name for name, delta in deltas.items() if delta > 0]

    def describe(names: list[str]) -> str:
        return ", ".join(
            f"{name} {candidate[name]:.4f} vs {current[name]:.4f} ({deltas[name]:+.4f})"
            for name in names
        )

    if worse:
        return GateDecision(
            False, f"worse beyond tolerance {tolerance:g} on {describe(worse)}", deltas
        )
    if not better:
        return GateDecision(
            False,
            f"better on no gate metric (tolerance {tolerance:g}): {describe(list(deltas))}",
            deltas,
        )
    return GateDecision(
        True,
        f"better on {describe(better)}; none worse beyond tolerance {tolerance:g}",
        deltas,
    )
