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


# Common financial risk wording and social slang, each with the direction it must read in
# (issue 17, item 8). A case passes when the predicted sentiment is that direction.
RISK_WORDING = [
    ("Acme files for Chapter 11 bankruptcy protection", "negative"),
    ("Acme defaults on its bond payments", "negative"),
    ("Acme misses an interest payment and warns of a possible default", "negative"),
    ("SEC charges Acme executives with securities fraud", "negative"),
    ("Acme CEO indicted on fraud charges", "negative"),
    ("Acme recalls 500,000 vehicles over brake defect", "negative"),
    ("Acme cuts its full-year guidance", "negative"),
    ("Acme to lay off 2,000 workers", "negative"),
    ("Acme announces layoffs of 10% of its workforce", "negative"),
    ("Moody's downgrades Acme to junk", "negative"),
    ("Acme downgraded to sell at Morgan Stanley", "negative"),
    ("Acme to be delisted from the Nasdaq", "negative"),
    ("Acme receives Nasdaq delisting notice", "negative"),
    ("$GME to the moon 🚀🚀🚀", "positive"),
    ("$AMC going to the moon, diamond hands", "positive"),
    ("Bagholders of $XYZ are down 80% this year", "negative"),
    ("Still a bagholder on $ACME after the crash", "negative"),
]
# What the shipped finsentry-minilm-v2 passes (fp32; onnx-int8 passes 9): a new default
# must not pass fewer.
RISK_WORDING_FLOOR = 10


def _risk_misses(engine: Engine) -> list[str]:
    verdicts = engine.classify([text for text, _ in RISK_WORDING])
    return [
        f"{text!r}: {v['sentiment']} ({v['score']:+.2f}), expected {expected}"
        for (text, expected), v in zip(RISK_WORDING, verdicts, strict=True)
        if v["sentiment"] != expected
    ]


def test_risk_wording_pass_rate_does_not_fall(engine: Engine) -> None:
    misses = _risk_misses(engine)
    assert len(RISK_WORDING) - len(misses) >= RISK_WORDING_FLOOR, misses


@pytest.mark.xfail(
    strict=True,
    reason="finsentry-minilm-v2 reads Chapter 11, a bond default, delisting, 'to the moon' and "
    "'bagholder' as neutral (10 of 17 pass); the next default must pass all (issue 17)",
)
def test_every_risk_wording_case_reads_in_its_direction(engine: Engine) -> None:
    assert _risk_misses(engine) == []
