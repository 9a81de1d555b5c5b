"""Ticker extraction on real headlines from data/ and on known false-positive traps."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.tickers import AMBIGUOUS_SYMBOLS, TickerExtractor, TickerList, default_extractor

pytestmark = pytest.mark.unit
TICKER = re.compile(r"[A-Z][A-Z0-9.\-]{0,9}")  # the schema's Ticker pattern
DATA = Path(__file__).resolve().parents[2] / "data"


@pytest.fixture(scope="module")
def extractor() -> TickerExtractor:
    return default_extractor()


@pytest.mark.parametrize(
    ("headline", "expected"),
    [
        # Real headlines from data/benzinga_headlines_sample and data/fin_news_headlines.
        ("China Unicom(CHU) to Launch Apple (AAPL) Iphone ", ("AAPL",)),
        ("CFRA Maintains Hold on Agilent Technologies, Lowers Price Target to $85", ("A",)),
        ("Cramer's lightning round: I prefer Tesla to Ford", ("TSLA", "F")),
        (
            "Cramer's lightning round: Microsoft fits the pattern of what this market wants",
            ("MSFT",),
        ),
        (
            "Jim Cramer reacts to AMD, Starbucks, Boeing, GE and Alphabet earnings reports",
            ("AMD", "SBUX", "BA", "GE", "GOOGL"),
        ),
        (
            "AbbVie And Genmab Announce Broad Oncology Collaboration; AbbVie To Pay Genmab $750M",
            ("ABBV",),
        ),
        ("Yorkshire and Clydesdale banks hit by IT failure", ()),
        ("Stocks That Hit 52-Week Highs On Friday", ()),
        ("B of A Securities Maintains Neutral on Agilent Technologies", ("A",)),
    ],
)
def test_real_headlines(
    extractor: TickerExtractor, headline: str, expected: tuple[str, ...]
) -> None:
    assert extractor.extract(headline) == expected


@pytest.mark.parametrize(
    "text",
    [
        "IT spending is ALL the rage NOW, ON the whole",
        "A new dawn for markets",
        "Target hit: stocks reach the Target price",
        "WHY AAPL AND MSFT ARE DOWN TODAY ACCORDING TO ANALYSTS",
        "The CEO says GDP and the US economy will slow",
        "$5M deal closes; costs $100",
    ],
)
def test_false_positive_traps(extractor: TickerExtractor, text: str) -> None:
    assert extractor.extract(text) == ()


def test_cashtags_and_exchange_notation_always_count(extractor: TickerExtractor) -> None:
    assert extractor.extract("$it and $now rally; (NYSE: ALL) too; $BRK.B") == (
        "IT",
        "NOW",
        "ALL",
        "BRK.B",
    )


def test_hints_come_first_and_are_deduplicated(extractor: TickerExtractor) -> None:
    assert extractor.extract("Apple and $AAPL", hints=["tsla", "$AAPL"]) == ("TSLA", "AAPL")


def test_ambiguous_symbols_are_in_the_list_they_guard(extractor: TickerExtractor) -> None:
    # If the maintained list drops these, the guard is moot and the trap tests prove nothing.
    assert {"IT", "ALL", "NOW", "ON"} <= extractor.tickers.symbols
    assert {"IT", "ALL", "NOW", "ON", "A"} & AMBIGUOUS_SYMBOLS == {"IT", "ALL", "NOW", "ON"}


def test_names_are_matched_case_sensitively() -> None:
    small = TickerExtractor(TickerList.build([("AAPL", "Apple Inc.", True)]))
    assert small.extract("Apple shares") == ("AAPL",)
    assert small.extract("an apple a day") == ()


def test_benzinga_rows_naming_their_company_yield_its_ticker(extractor: TickerExtractor) -> None:
    """Recall on real data: rows whose title names the row's own company."""
    path = DATA / "benzinga_headlines_sample" / "analyst_ratings_processed_head.csv"
    names = {"AAPL": "Apple", "ABBV": "AbbVie", "A": "Agilent"}
    hits = total = 0
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            name = names.get(row["stock"] or "")
            if name and row["title"] and f"{name} " in row["title"]:
                total += 1
                hits += row["stock"] in extractor.extract(row["title"])
    assert total > 100
    assert hits / total > 0.95


@given(st.text(max_size=300))
def test_every_extracted_ticker_is_valid_for_the_schema(text: str) -> None:
    tickers = default_extractor().extract(text)
    assert all(TICKER.fullmatch(ticker) for ticker in tickers)
    assert len(set(tickers)) == len(tickers)
