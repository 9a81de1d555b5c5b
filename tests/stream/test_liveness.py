from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.liveness import StallWatch

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_input_waiting_and_nothing_seen_for_the_timeout_is_a_stall() -> None:
    clock = Clock()
    watch = StallWatch(30, clock)
    watch.saw("posts", 0, 99)
    clock.now += 29
    assert watch.stalled({("posts", 0): 150}) is None
    clock.now += 2
    reason = watch.stalled({("posts", 0): 150})
    assert reason == "no input reached the stream for 31s while 50 messages wait on posts[0]"


def test_an_idle_worker_is_not_stalled() -> None:
    clock = Clock()
    watch = StallWatch(30, clock)
    watch.saw("posts", 0, 99)
    clock.now += 3600
    assert watch.stalled({("posts", 0): 100, ("posts", 1): None}) is None


def test_fresh_input_restarts_the_clock() -> None:
    clock = Clock()
    watch = StallWatch(30, clock)
    watch.saw("posts", 0, 10)
    clock.now += 25
    watch.saw("valid-posts", 1, 5)
    clock.now += 25
    assert watch.stalled({("posts", 0): 500, ("valid-posts", 1): 6}) is None


def test_a_rebalance_restarts_the_clock_and_forgets_where_the_stream_stood() -> None:
    clock = Clock()
    watch = StallWatch(30, clock)
    watch.saw("posts", 0, 10)
    clock.now += 40
    watch.rebalanced()
    clock.now += 10
    assert not watch.due()
    assert watch.stalled({("posts", 0): 500}) is None
    assert watch.unplaced([("posts", 0)]) == [("posts", 0)]


def test_partitions_seen_on_need_no_resume_offset() -> None:
    watch = StallWatch(30, Clock())
    watch.saw("posts", 1, 0)
    assert watch.unplaced([("posts", 1), ("posts", 0), ("valid-posts", 0)]) == [
        ("posts", 0),
        ("valid-posts", 0),
    ]


def test_partitions_whose_place_is_unknown_are_not_judged() -> None:
    clock = Clock()
    watch = StallWatch(30, clock)
    clock.now += 100
    assert watch.due()
    assert watch.stalled({("posts", 0): 500}) is None
    watch.saw("posts", 1, 0)
    clock.now += 100
    assert watch.stalled({("posts", 0): 500, ("posts", 1): 1}) is None


def test_a_stream_that_never_resumed_is_judged_from_its_committed_offset() -> None:
    """A restarted worker whose stream gets nothing, while its input waits, is stuck."""
    clock = Clock()
    watch = StallWatch(30, clock)
    watch.rebalanced()
    clock.now += 31
    watch.resume_from({("posts", 0): 120, ("posts", 1): 40})
    reason = watch.stalled({("posts", 0): 200, ("posts", 1): 40})
    assert reason == "no input reached the stream for 31s while 80 messages wait on posts[0]"


def test_the_resume_offset_never_overrides_what_the_stream_saw() -> None:
    clock = Clock()
    watch = StallWatch(30, clock)
    watch.saw("posts", 0, 199)
    clock.now += 31
    watch.resume_from({("posts", 0): 120})
    assert watch.stalled({("posts", 0): 200}) is None


def test_the_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="stall_after_s must be positive, not 0"):
        StallWatch(0)


partitions = st.tuples(st.sampled_from(["posts", "valid-posts"]), st.integers(0, 3))


@given(
    seen=st.lists(st.tuples(partitions, st.integers(0, 10_000)), max_size=30),
    resumed=st.dictionaries(partitions, st.integers(0, 10_000), max_size=8),
    ahead=st.dictionaries(partitions, st.integers(0, 500), max_size=8),
)
def test_what_waits_is_the_end_offset_past_where_the_stream_stands(
    seen: list[tuple[tuple[str, int], int]],
    resumed: dict[tuple[str, int], int],
    ahead: dict[tuple[str, int], int],
) -> None:
    clock = Clock()
    watch = StallWatch(30, clock)
    stands: dict[tuple[str, int], int] = {}
    for (topic, partition), offset in seen:
        watch.saw(topic, partition, offset)
        stands[(topic, partition)] = offset + 1
    watch.resume_from(resumed)
    stands = {**resumed, **stands}  # what the stream saw wins over a resume offset
    clock.now += 30
    ends = {tp: stands.get(tp, 0) + extra for tp, extra in ahead.items()}
    waiting = {tp: n for tp, n in ahead.items() if tp in stands and n > 0}
    reason = watch.stalled(ends)
    if not waiting:
        assert reason is None
    else:
        assert reason is not None
        assert f"while {sum(waiting.values())} messages wait on " in reason
