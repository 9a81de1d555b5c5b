"""The promotion gate's rules and the retraining data assembly (pure, no model)."""

from __future__ import annotations

import pytest

from models.data import IGNORE, SENTIMENT_ID, TOPIC_ID, Example
from models.gate import decide, headline
from models.retrain_data import feedback_examples, retrain_data, sample_sets
from models.splits import Splits

pytestmark = pytest.mark.unit

CURRENT = {"phrasebank.accuracy": 0.80, "twitter_topic.accuracy": 0.86}


def test_better_on_one_and_within_tolerance_on_the_rest_is_promoted() -> None:
    gate = decide({"phrasebank.accuracy": 0.82, "twitter_topic.accuracy": 0.857}, CURRENT, 0.005)
    assert gate.promote
    assert gate.reason.startswith("better on phrasebank.accuracy 0.8200 vs 0.8000 (+0.0200)")
    assert gate.deltas["twitter_topic.accuracy"] == pytest.approx(-0.003)


def test_worse_beyond_tolerance_on_any_metric_is_rejected_whatever_else_improves() -> None:
    gate = decide({"phrasebank.accuracy": 0.95, "twitter_topic.accuracy": 0.85}, CURRENT, 0.005)
    assert not gate.promote
    assert gate.reason == (
        "worse beyond tolerance 0.005 on twitter_topic.accuracy 0.8500 vs 0.8600 (-0.0100)"
    )


def test_no_gain_anywhere_is_rejected() -> None:
    gate = decide(dict(CURRENT), CURRENT, 0.005)
    assert not gate.promote and gate.reason.startswith("better on no gate metric")


def test_headline_picks_the_configured_metrics_and_names_a_missing_set() -> None:
    results = {"phrasebank": {"accuracy": 0.8, "macro_f1": 0.7, "n": 10}}
    assert headline(results, ["phrasebank.macro_f1"]) == {"phrasebank.macro_f1": 0.7}
    with pytest.raises(KeyError, match="no evaluation set 'twitter_topic'"):
        headline(results, ["twitter_topic.accuracy"])
    with pytest.raises(ValueError, match="metric names differ"):
        decide({"a.accuracy": 1.0}, CURRENT, 0.0)


def _row(post_id: str, field: str, label: str) -> dict[str, str]:
    return {"post_id": post_id, "field": field, "new_label": label}


def test_feedback_latest_correction_wins_and_bad_rows_are_reported() -> None:
    rows = [
        _row("p1", "sentiment", "positive"),
        _row("p1", "sentiment", "negative"),  # a later correction of the same field
        _row("p1", "topic", "Earnings"),
        _row("p2", "sentiment", "bullish"),
        _row("p3", "topic", "Earnings"),
    ]
    found = feedback_examples(rows, {"p1": "Profit warning", "p2": "Up", "p3": None})
    (example,) = found.examples
    assert example == Example(
        "Profit warning", SENTIMENT_ID["negative"], TOPIC_ID["Earnings"], "feedback"
    )
    assert len(found.problems) == 2
    assert "post 'p2': sentiment 'bullish' is not one of" in found.problems[0]
    assert found.problems[1] == "post 'p3': no text in the posts table"


def _example(text: str, dataset: str = "phrasebank") -> Example:
    return Example(text, 0, IGNORE, dataset)


def test_feedback_replaces_the_base_example_of_the_same_text() -> None:
    base = Splits(
        [_example("Shares  FALL"), _example("Profit up"), _example("x", "twitter_sentiment")],
        {"phrasebank": [_example("v")]},
        {"phrasebank": [_example(f"t{i}") for i in range(10)]},
    )
    corrected = Example("shares fall", 2, IGNORE, "feedback")
    data = retrain_data(base, [corrected], train_limit=None, feedback_repeat=3, eval_sample=4)
    assert sorted(e.text for e in data.splits.train) == sorted(
        ["Profit up", "x", "shares fall", "shares fall", "shares fall"]
    )
    assert data.counts["base_replaced_by_feedback"] == 1
    assert len(data.splits.test["phrasebank"]) == 4
    limited = retrain_data(base, [], train_limit=1, feedback_repeat=1, eval_sample=None)
    assert sorted(e.text for e in limited.splits.train) == ["Shares  FALL", "x"]
    assert limited.fingerprint != data.fingerprint


def test_evaluation_sample_is_fixed_and_seeded() -> None:
    sets = {"a": [_example(str(i)) for i in range(100)], "b": [_example("only")]}
    first, again = sample_sets(sets, 10), sample_sets(sets, 10)
    assert first == again and len(first["a"]) == 10 and first["b"] == sets["b"]
    assert sample_sets(sets, 10, seed=1)["a"] != first["a"]
    assert sample_sets(sets, None) == sets
