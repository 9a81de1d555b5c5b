"""Per-partition watermarks, idleness and late corrections in the pure core."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.spikes import SignalEngine, SpikeRules
from stream.watermarks import IdleWatch, InputMarks, Progress
from stream.windows import Observation, WindowAggregator

pytestmark = pytest.mark.unit

T0 = datetime(2024, 5, 1, tzinfo=UTC).timestamp()
SIZE, LATENESS = 300, 120
INPUTS = tuple(f"posts:{p}" for p in range(3))


def obs(n: int, at: float, score: float = -0.5) -> Observation:
    return Observation(f"p{n}", at, score, score < 0, f"post {n}", None, "v1")


def test_a_partition_without_a_post_holds_the_watermark_back() -> None:
    marks = InputMarks({})
    marks.update(Progress(inputs=INPUTS, highs={"posts:0": T0 + 1000, "posts:1": T0 + 50}))
    assert marks.low() == -math.inf
    marks.update(Progress(highs={"posts:2": T0 + 400}))
    assert marks.low() == T0 + 50


def test_an_idle_partition_stops_holding_until_a_post_comes_from_it_again() -> None:
    marks = InputMarks({})
    marks.update(Progress(inputs=INPUTS, highs={"posts:0": T0 + 1000, "posts:1": T0 + 900}))
    marks.update(Progress(idle=("posts:2",)))
    assert marks.low() == T0 + 900
    marks.update(Progress(idle=("posts:1",)))
    assert marks.low() == T0 + 1000
    marks.update(Progress(highs={"posts:2": T0 + 100}))
    assert marks.low() == T0 + 100
    marks.update(Progress(woken=("posts:1",)))  # posts re-keyed to it: holds at its old mark
    assert marks.marks()["posts:1"] == (T0 + 900, False)


def test_with_every_partition_idle_the_highest_mark_counts() -> None:
    marks = InputMarks({})
    marks.update(Progress(inputs=INPUTS[:2], highs={"posts:0": T0 + 10, "posts:1": T0 + 20}))
    marks.update(Progress(idle=INPUTS[:2]))
    assert marks.low() == T0 + 20


def test_marks_never_go_back_and_are_written_as_new_values() -> None:
    state: dict[str, object] = {}
    marks = InputMarks(state)
    marks.update(Progress(inputs=INPUTS[:1], highs={"posts:0": T0 + 500}))
    written = state["__inputs__"]
    marks.update(Progress(highs={"posts:0": T0 + 100}))  # a redelivered older batch
    assert marks.low() == T0 + 500
    assert state["__inputs__"] is written  # nothing changed: nothing written


partitioned = st.lists(
    st.tuples(st.integers(0, 3), st.lists(st.integers(0, 20_000), min_size=1, max_size=8)),
    min_size=1,
    max_size=40,
)


@given(partitioned, st.randoms(use_true_random=False))
def test_each_partition_in_order_however_interleaved_nothing_is_late(
    batches: list[tuple[int, list[int]]], rnd: random.Random
) -> None:
    """Each partition's posts come in event-time order, the partitions interleave at any
    speed: no post is late, and after the idle notices every window closes that a single
    ordered stream with the same posts would have closed, with the same counts."""
    per_partition: dict[int, list[int]] = {}
    for partition, offsets in batches:
        per_partition.setdefault(partition, []).extend(offsets)
    queues = {p: sorted(times) for p, times in per_partition.items()}
    inputs = tuple(f"posts:{p}" for p in range(4))
    engine = SignalEngine(SIZE, LATENESS, SpikeRules(), correction_horizon_s=3600)
    n, counted, late = 0, 0, 0
    while queues:
        partition = rnd.choice(sorted(queues))
        take = rnd.randint(1, 5)
        times, queues[partition] = queues[partition][:take], queues[partition][take:]
        if not queues[partition]:
            del queues[partition]
        items = []
        for t in times:
            items.append((["market"], obs(n, T0 + t)))
            n += 1
        progress = Progress(inputs=inputs, highs={f"posts:{partition}": T0 + max(times)})
        output = engine.add_input(items, progress)
        counted += sum(p.count for p in output.points)
        late += len(output.late_keys)
        assert not output.corrections
    output = engine.add_input([], Progress(idle=inputs))
    counted += sum(p.count for p in output.points)
    assert late == 0
    every = sorted(t for times in per_partition.values() for t in times)
    single = WindowAggregator(SIZE, LATENESS)
    expected = sum(
        w.count for i, t in enumerate(every) for w in single.add(["market"], obs(i, T0 + t)).closed
    )
    assert counted == expected


def test_a_late_post_corrects_its_closed_window_once_and_raises_no_alert() -> None:
    engine = SignalEngine(
        SIZE, LATENESS, SpikeRules(min_history=1, min_negatives=1), correction_horizon_s=3600
    )
    one = Progress(inputs=("posts:0",), highs={"posts:0": T0 + 10})
    engine.add_input([(["market"], obs(1, T0 + 10, 0.5))], one)
    far = Progress(highs={"posts:0": T0 + 1000})
    (point,) = engine.add_input([(["market"], obs(2, T0 + 1000, 0.5))], far).points
    assert (point.count, point.mean_score, point.neg_share) == (1, 0.5, 0.0)

    late = engine.add_input([(["market"], obs(3, T0 + 20, -0.9))], Progress())
    assert late.late_keys == ["market"]
    (fixed,) = late.corrections
    assert (fixed.window_start, fixed.count) == (point.window_start, 2)
    assert fixed.mean_score == pytest.approx(-0.2) and fixed.neg_share == 0.5
    assert late.points == [] and late.alerts == []
    again = engine.add_input([(["market"], obs(3, T0 + 20, -0.9))], Progress())  # redelivered
    assert again.late_keys == ["market"] and again.corrections == []


def test_a_closed_window_is_kept_only_for_the_correction_horizon() -> None:
    agg = WindowAggregator(SIZE, LATENESS, correction_horizon_s=600)
    agg.add(["market"], obs(1, T0 + 10))
    agg.add(["market"], obs(2, T0 + SIZE + LATENESS))  # closes the first window
    assert agg.open_windows() == 1
    assert agg.accumulate(["market"], obs(3, T0 + 20)).corrected
    agg.add(["market"], obs(4, T0 + SIZE + 600 + LATENESS))  # 600 s past its end: dropped
    result = agg.accumulate(["market"], obs(5, T0 + 30))
    assert result.late_keys == ["market"] and result.corrected == []


def test_idle_after_the_timeout_once_caught_up_and_again_after_new_input() -> None:
    now = [0.0]
    watch = IdleWatch(30, clock=lambda: now[0])
    tp = ("posts", 0)
    assert watch.newly_idle({tp: 5}, {tp: 5}) == []
    now[0] = 29
    assert watch.newly_idle({tp: 5}, {tp: 5}) == []
    now[0] = 30
    assert watch.newly_idle({tp: 5}, {tp: 5}) == [tp]
    now[0] = 100
    assert watch.newly_idle({tp: 5}, {tp: 5}) == []  # told once
    assert watch.newly_idle({tp: 5}, {tp: 7}) == []  # new input: its clock starts again
    now[0] = 200
    assert watch.newly_idle({tp: 6}, {tp: 7}) == []  # quiet but not caught up
    assert watch.newly_idle({tp: 7}, {tp: 7}) == [tp]
    assert watch.told() == [tp]
    assert watch.woken({tp: 7}) == []  # nothing new fetched
    assert watch.woken({tp: 9}) == [tp]  # new input fetched: wakes before the next check
    assert watch.told() == []
    now[0] = 240
    assert watch.newly_idle({tp: 9}, {tp: 9}) == [tp]  # silent since it woke


def test_idle_watch_refuses_a_timeout_that_is_not_positive() -> None:
    with pytest.raises(ValueError, match="idle_after_s must be positive"):
        IdleWatch(0)
