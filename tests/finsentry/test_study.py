"""The event study on a synthetic ticker whose answer is worked out by hand."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from finsentry.cli import app
from finsentry.schema import SignalPoint
from finsentry.store import Store
from finsentry.study import (
    DaySignal,
    StudyError,
    daily_returns,
    daily_signals,
    read_prices,
    spearman,
    study,
)

pytestmark = pytest.mark.unit

DAY1 = date(2024, 1, 1)
# Twenty daily closes of AAA: flat at 100 but for one fall of 10% on day 6 (back on day 8).
CLOSES = [100.0] * 5 + [90.0, 90.0] + [100.0] * 13
SPIKES = {6, 12}  # one on the fall, one far from any


def day(n: int) -> date:
    return DAY1 + timedelta(days=n - 1)


def write_prices(path: Path) -> Path:
    rows = ["ticker,date,close"] + [f"AAA,{day(n + 1)},{c}" for n, c in enumerate(CLOSES)]
    rows.append(f"ZZZ,{day(1)},10")  # a ticker without posts changes nothing
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def points() -> list[SignalPoint]:
    """Posts on days 2-20; each day's mean score is its return times 5 (same ranks)."""
    returns = daily_returns({"AAA": {day(n + 1): c for n, c in enumerate(CLOSES)}})
    return [
        SignalPoint(
            key="ticker:AAA",
            window_start=datetime.combine(day(n), datetime.min.time(), UTC),
            window_end=datetime.combine(day(n + 1), datetime.min.time(), UTC),
            count=4,
            mean_score=max(-1.0, min(1.0, 5 * returns[("AAA", day(n))])),
            neg_share=0.5 if n in SPIKES else 0.0,
            is_spike=n in SPIKES,
        )
        for n in range(2, 21)
    ]


def test_the_known_answer(tmp_path: Path) -> None:
    returns = daily_returns(read_prices(write_prices(tmp_path / "prices.csv")))
    signals = daily_signals(p.model_dump() for p in points())
    result = study(returns, signals, drop=0.05, within_days=1)
    # Spike days 6 (the fall) and 12: one of two within a day of a 5% fall.
    assert (result.spike_days, result.spike_days_near_drop) == (2, 1)
    # Post days 2-20: days 5, 6 and 7 are within a day of the fall on day 6.
    assert (result.post_days, result.post_days_near_drop) == (19, 3)
    assert result.lift == pytest.approx((1 / 2) / (3 / 19))
    assert result.spearman == pytest.approx(1.0)
    assert result.correlated_days == 19


def test_the_command_reads_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("FINSENTRY_CONFIG", "none")
    monkeypatch.setenv("FINSENTRY_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("FINSENTRY_STORE_URL", url)
    store = Store(url)
    store.upsert_signal_points(points())
    store.close()
    prices = write_prices(tmp_path / "prices.csv")
    args = ["signals", "study", "--prices", str(prices), "--drop", "0.05"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "1 of 2 (50.0%)" in result.output
    assert "3 of 19 (15.8%)" in result.output
    assert "lift over chance: 3.17x" in result.output
    assert "+1.000 over 19 ticker-days" in result.output


def test_spearman_of_reversed_ranks_and_ties() -> None:
    assert spearman([1, 2, 3, 4], [8, 6, 4, 2]) == pytest.approx(-1.0)
    assert spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(0.8660254)
    assert spearman([1, 2], [1, 2]) is None
    assert spearman([1, 1, 1], [1, 2, 3]) is None


def test_a_spike_day_counts_once_whatever_its_windows() -> None:
    signals = daily_signals(
        [
            {"key": "ticker:A", "window_start": datetime(2024, 1, 2, h, tzinfo=UTC), **row}
            for h, row in (
                (1, {"count": 3, "mean_score": -1.0, "is_spike": True}),
                (2, {"count": 1, "mean_score": 1.0, "is_spike": False}),
            )
        ]
        + [
            {
                "key": "market",
                "window_start": datetime(2024, 1, 2, tzinfo=UTC),
                "count": 9,
                "mean_score": 0.0,
                "is_spike": True,
            }
        ]
    )
    assert signals == {("A", date(2024, 1, 2)): DaySignal(-0.5, 4, True)}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ticker,day,close\nA,2024-01-01,1\n", "missing column(s) ['date']"),
        ("ticker,date,close\nA,01/02/2024,1\n", ":2: date '01/02/2024' is not YYYY-MM-DD"),
        ("ticker,date,close\nA,2024-01-01,abc\n", ":2: close 'abc' is not a number"),
        ("ticker,date,close\nA,2024-01-01,-3\n", "must be a positive number"),
        ("ticker,date,close\n", "no price rows"),
    ],
)
def test_bad_price_files_say_what_and_where(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "prices.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(StudyError, match=None) as caught:
        read_prices(path)
    assert message in str(caught.value)
