"""Ticker extraction shared by every source.

Three signals, from most to least certain: cashtags (``$AAPL``), exchange notations
(``(NYSE: KO)``), then company names and bare symbols from a maintained list
(``pytickersymbols``: S&P 500, NASDAQ 100 and Dow Jones names and symbols, FTSE 100 names).
Bare symbols are the risky part: ``A``, ``IT``, ``ALL``, ``NOW`` or ``ON`` are words, so a bare
symbol counts only when it is written in capitals, has at least two letters, is not an
ordinary word or acronym (``AMBIGUOUS_SYMBOLS``), and the text is not shouting in capitals.
Company names match case-sensitively, except a few that are also everyday words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

US_INDICES: Final = ("S&P 500", "NASDAQ 100", "DOW JONES")
UK_INDICES: Final = ("FTSE 100",)

# Symbols that are also English words, abbreviations or slang in financial writing.
AMBIGUOUS_SYMBOLS: Final = frozenset(
    """
    ALL ARE BALL BG BK BR BX CAT CB CF CI CL COO COST DAY DD DE DG DOC DOW ED EG EL ES EXE
    FAST FE FER FIX FOX GEN GL HAS HD HOOD ICE IEX IP IR IT J KEY KEYS L LH LII LOW LW MA MAR
    MET MO MS NI NOW O ON PG PH PM POOL PSA Q RF RL SHOP SO SNA SW TAP TEAM TECH TEL TT WELL
    WM
    """.split()  # noqa: SIM905 (a word list reads better as words)
)

# Names that are ordinary words or places; they need a cashtag or exchange notation.
AMBIGUOUS_NAMES: Final = frozenset(
    {
        "Ball",
        "Block",
        "Corning",
        "Dover",
        "Equity",
        "Gap",
        "Match",
        "Mosaic",
        "Progressive",
        "Southern",
        "Target",
        "Next",
        "Smiths",
        "Whitbread",
        "Unite",
        "Intertek",
        "Sage",
    }
)

# Everyday names for companies whose listed name differs ("Alphabet Inc." is "Google").
ALIASES: Final = {
    "Google": "GOOGL",
    "Alphabet": "GOOGL",
    "Facebook": "META",
    "Meta": "META",
    "Disney": "DIS",
    "JPMorgan": "JPM",
    "JP Morgan": "JPM",
    "Goldman Sachs": "GS",
    "Morgan Stanley": "MS",
    "Wells Fargo": "WFC",
    "Berkshire Hathaway": "BRK.B",
    "Coca-Cola": "KO",
    "Exxon": "XOM",
    "Tesla": "TSLA",
    "Netflix": "NFLX",
    "Walmart": "WMT",
    "Boeing": "BA",
    "Caterpillar": "CAT",
    "Citigroup": "C",
    "General Electric": "GE",
    "General Motors": "GM",
    "Ford": "F",
    "Home Depot": "HD",
    "Procter & Gamble": "PG",
    "Agilent": "A",
}

_SUFFIXES = re.compile(
    r"(,?\s+(Inc\.?|Incorporated|Corporation|Corp\.?|Company|Co\.|plc|PLC|Ltd\.?|Limited|"
    r"Holdings|N\.V\.|S\.A\.|AG|SE|& Co\.?))+$"
)
_CASHTAG = re.compile(r"(?<![\w$])\$([A-Za-z][A-Za-z0-9]{0,5}(?:[.-][A-Za-z]{1,2})?)(?![\w])")
_EXCHANGE = re.compile(
    r"\b(?:NYSE|NASDAQ|Nasdaq|NYSE American|AMEX|LSE|OTC)\s*:\s*"
    r"([A-Z][A-Z0-9]{0,5}(?:\.[A-Z]{1,2})?)\b"
)
_BARE = re.compile(r"(?<![\w$.&-])([A-Z]{2,5}(?:\.[A-Z])?)(?![\w&-])")
_TICKER_SHAPE = re.compile(r"^[A-Z][A-Z0-9.\-]{0,9}$")


def normalise_name(name: str) -> str:
    """``Apple Inc.`` -> ``Apple``: the form a headline uses."""
    name = name.strip()
    name = re.sub(r"^The\s+", "", name)
    return _SUFFIXES.sub("", name).strip()


@dataclass(frozen=True)
class TickerList:
    """Known symbols and names; built once from pytickersymbols (see ``default_tickers``)."""

    symbols: frozenset[str]
    names: dict[str, str]

    @classmethod
    def build(cls, stocks: Iterable[tuple[str, str, bool]]) -> TickerList:
        """From (symbol, company name, symbol-usable-bare) triples; first name wins."""
        symbols: set[str] = set()
        names: dict[str, str] = {}
        for symbol, name, bare in stocks:
            if not _TICKER_SHAPE.match(symbol):
                continue
            if bare:
                symbols.add(symbol)
            short = normalise_name(name)
            if len(short) >= 3 and short not in AMBIGUOUS_NAMES:
                names.setdefault(short, symbol)
        names.update(ALIASES)
        return cls(frozenset(symbols), names)


@lru_cache(maxsize=1)
def default_tickers() -> TickerList:
    """The maintained list: US index members by symbol and name, FTSE 100 by name."""
    from pytickersymbols import PyTickerSymbols

    data = PyTickerSymbols()
    stocks: list[tuple[str, str, bool]] = []
    for index in US_INDICES:
        stocks.extend((s["symbol"], s["name"], True) for s in data.get_stocks_by_index(index))
    for index in UK_INDICES:
        stocks.extend((s["symbol"], s["name"], False) for s in data.get_stocks_by_index(index))
    return TickerList.build(stocks)


class TickerExtractor:
    """Finds tickers in free text. Pure and thread-safe once built."""

    def __init__(self, tickers: TickerList) -> None:
        self.tickers = tickers
        names = sorted(tickers.names, key=len, reverse=True)
        alternation = "|".join(re.escape(n) for n in names)
        self._names = re.compile(rf"(?<![\w&-])({alternation})(?:'s|\u2019s)?(?![\w&-])")

    def extract(self, *texts: str | None, hints: Iterable[str] = ()) -> tuple[str, ...]:
        """Tickers in order of first mention; ``hints`` (source-given symbols) come first."""
        found: dict[str, None] = {}
        for hint in hints:
            symbol = _hint_symbol(hint)
            if _TICKER_SHAPE.match(symbol):
                found[symbol] = None
        for text in texts:
            if text:
                for symbol in self._scan(text):
                    found[symbol] = None
        return tuple(found)

    def unknown(self, hints: Iterable[str], allowed: Iterable[str] = ()) -> list[str]:
        """The hints naming no symbol of the list nor of ``allowed``: every ticker becomes an
        aggregation key, so a caller's unchecked hints could create keys without end."""
        known = self._known | {_hint_symbol(symbol) for symbol in allowed}
        return [hint for hint in hints if _hint_symbol(hint) not in known]

    @property
    def _known(self) -> frozenset[str]:
        return self.tickers.symbols | frozenset(self.tickers.names.values())

    def _scan(self, text: str) -> list[str]:
        hits: list[tuple[int, str]] = []
        for match in _CASHTAG.finditer(text):
            hits.append((match.start(), match.group(1).upper()))
        for match in _EXCHANGE.finditer(text):
            hits.append((match.start(), match.group(1)))
        for match in self._names.finditer(text):
            hits.append((match.start(), self.tickers.names[match.group(1)]))
        if not _shouting(text):
            for match in _BARE.finditer(text):
                symbol = match.group(1)
                if symbol in self.tickers.symbols and symbol not in AMBIGUOUS_SYMBOLS:
                    hits.append((match.start(), symbol))
        return [symbol for _, symbol in sorted(hits) if _TICKER_SHAPE.match(symbol)]


def _hint_symbol(hint: str) -> str:
    return hint.strip().upper().lstrip("$")


def _shouting(text: str) -> bool:
    """All-caps text makes every word look like a symbol."""
    letters = [c for c in text if c.isalpha()]
    return len(letters) >= 12 and sum(c.isupper() for c in letters) > 0.6 * len(letters)


@lru_cache(maxsize=1)
def default_extractor() -> TickerExtractor:
    return TickerExtractor(default_tickers())
