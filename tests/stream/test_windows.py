from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.windows import ClosedWindow, Observation, WindowAggregator

pytestmark = pytest.mark.unit

T0 = datetime(2024, 5, 1, tzinfo=UTC).timestamp()
SIZE, LATENESS = 300, 120


def obs(n: int, at: float, score: float = -0.5) -> Observation:
    return Observation(
        post_id=f"p{n}",
        event_time=at,
        score=score,
        negative=score < 0,
        title=f"post {n}",
        url=None,
        model_version="v1",
    )


def run(
    aggregator: WindowAggregator, stream: list[Observation], keys: tuple[str, ...] = ("market",)
) -> tuple[list[ClosedWindow], int]:
    closed: list[ClosedWindow] = []
    late = 0
    for item in stream:
        result = aggregator.add(list(keys), item)
        closed.extend(result.closed)
        late += bool(result.late_keys)
    closed.extend(aggregator.flush())
    return closed, late


def test_window_closes_only_when_the_watermark_passes_its_end() -> None:
    agg = WindowAggregator(SIZE, LATENESS)
    assert agg.add(["market"], obs(1, T0 + 10)).closed == []
    # 410 s: watermark 290 < 300, the first window stays open.
    assert agg.add(["market"], obs(2, T0 + 410)).closed == []
    (closed,) = agg.add(["market"], obs(3, T0 + 420)).closed  # watermark reaches 300
    assert (closed.key, closed.count, closed.window_start.timestamp()) == ("market", 1, T0)
    assert closed.window_end.timestamp() == T0 + SIZE


def test_late_post_is_counted_not_aggregated() -> None:
    agg = WindowAggregator(SIZE, LATENESS)
    agg.add(["market"], obs(1, T0 + 10))
    agg.add(["market"], obs(2, T0 + 1000))
    result = agg.add(["ticker:AAPL", "market"], obs(3, T0 + 20))
    assert result.late_keys == ["ticker:AAPL", "market"]
    assert result.closed == []


def test_post_within_lateness_still_counts() -> None:
    agg = WindowAggregator(SIZE, LATENESS)
    agg.add(["market"], obs(1, T0 + 10))
    agg.add(["market"], obs(2, T0 + 400))  # watermark 280
    assert agg.add(["market"], obs(3, T0 + 250)).late_keys == []
    closed = agg.flush()
    assert [w.count for w in closed] == [2, 1]


def test_aggregates_and_evidence() -> None:
    agg = WindowAggregator(SIZE, LATENESS, evidence_size=2)
    for n, score in enumerate([0.5, -0.9, -0.2, -0.9]):
        agg.add(["ticker:AAPL"], obs(n, T0 + n, score))
    (window,) = agg.flush()
    assert window.count == 4
    assert window.mean_score == pytest.approx((0.5 - 0.9 - 0.2 - 0.9) / 4)
    assert window.neg_share == 0.75
    assert [e.id for e in window.evidence] == ["p1", "p3"]  # most negative, ties by id


def test_redelivered_post_counts_once() -> None:
    agg = WindowAggregator(SIZE, LATENESS)
    for _ in range(3):
        agg.add(["market"], obs(1, T0 + 5))
    assert agg.flush()[0].count == 1


def test_state_in_an_external_mapping_survives_a_new_aggregator() -> None:
    state: dict[str, object] = {}
    WindowAggregator(SIZE, LATENESS, state=state).add(["market"], obs(1, T0 + 5))
    resumed = WindowAggregator(SIZE, LATENESS, state=state)
    resumed.add(["market"], obs(2, T0 + 6))
    assert resumed.flush()[0].count == 2


@settings(max_examples=60, deadline=None)
@given(
    offsets=st.lists(st.integers(0, 3600), min_size=1, max_size=60),
    delays=st.data(),
    seed=st.integers(0, 2**16),
)
def test_arrival_order_within_lateness_does_not_change_windows(
    offsets: list[int], delays: st.DataObject, seed: int
) -> None:
    rng = random.Random(seed)
    items = [obs(n, T0 + at, round(rng.uniform(-1, 1), 3)) for n, at in enumerate(offsets)]
    # Each post arrives up to LATENESS-1 seconds after its event time.
    lag = [delays.draw(st.integers(0, LATENESS - 1)) for _ in items]
    arrival = [
        item
        for _, item in sorted(
            zip([i.event_time + d for i, d in zip(items, lag, strict=True)], items, strict=True),
            key=lambda pair: (pair[0], pair[1].post_id),
        )
    ]
    in_order, late_a = run(
        WindowAggregator(SIZE, LATENESS),
        sorted(items, key=lambda i: (i.event_time, i.post_id)),
        keys=("market", "ticker:X"),
    )
    shuffled, late_b = run(WindowAggregator(SIZE, LATENESS), arrival, keys=("market", "ticker:X"))
    assert late_a == late_b == 0
    assert shuffled == in_order
    assert sum(w.count for w in in_order if w.key == "market") == len(items)
