"""Behavioural checks of the shipped model: direction, invariance, minimum functionality."""

from __future__ import annotations

import pytest

from models.engine import Engine

pytestmark = pytest.mark.model


@pytest.mark.parametrize(
    ("better", "worse"),
    [
        (
            "Acme beats analyst estimates and raises full-year guidance",
            "Acme misses analyst estimates and cuts full-year guidance",
        ),
        ("Operating profit rose 30% year on year", "Operating profit fell 30% year on year"),
        ("$XYZ upgraded to buy at Goldman Sachs", "$XYZ downgraded to sell at Goldman Sachs"),
    ],
)
def test_direction_good_news_scores_above_bad_news(engine: Engine, better: str, worse: str) -> None:
    good, bad = engine.classify([better, worse])
    assert good["score"] > bad["score"] + 0.5
    assert good["sentiment"] == "positive" and bad["sentiment"] == "negative"


@pytest.mark.parametrize(
    "template",
    [
        "${t} shares jump after earnings beat",
        "${t} slumps as the company warns on profits",
        "${t} to hold its annual general meeting on Tuesday",
    ],
)
def test_ticker_swap_keeps_the_sentiment(engine: Engine, template: str) -> None:
    verdicts = engine.classify([template.replace("{t}", t) for t in ("AAPL", "MSFT", "KO", "XOM")])
    assert len({v["sentiment"] for v in verdicts}) == 1
    scores = [v["score"] for v in verdicts]
    assert max(scores) - min(scores) < 0.3


@pytest.mark.parametrize(
    ("text", "topic"),
    [
        ("Fed raises interest rates by 25 basis points", "Fed | Central Banks"),
        ("Oil prices surge as OPEC cuts output", "Energy | Oil"),
        ("Acme declares quarterly dividend of $0.25 per share", "Dividend"),
    ],
)
def test_minimum_functionality_on_clear_topics(engine: Engine, text: str, topic: str) -> None:
    verdict = engine.classify([text])[0]
    assert topic in verdict["topic_probs"]
