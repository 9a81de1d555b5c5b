from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.liveness import StallWatch

pytestmark = pytest.mark.unit

POSTS = ("posts", 0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_commit_that_stays_behind_for_the_timeout_is_a_stall() -> None:
    clock = Clock()
    watch = StallWatch(30, clock)
    assert watch.stalled({POSTS: 100}, {POSTS: 150}) is None
    clock.now += 29
    assert watch.stalled({POSTS: 100}, {POSTS: 150}) is None
    clock.now += 2
    reason = watch.stalled({POSTS: 100}, {POSTS: 150})
    assert reason == (
        "nothing committed for 31s while 50 messages wait past the committed offset on posts[0]@100"
    )


def test_an_idle_worker_is_not_stalled() -> None:
    clock = Clock()
    watch = StallWatch(30, clock)
    for _ in range(5):
        assert watch.stalled({POSTS: 100, ("posts", 1): 7}, {POSTS: 100, ("posts", 1): 7}) is None
        clock.now += 3600


def test_a_busy_worker_that_keeps_committing_is_not_stalled() -> None:
    clock = Clock()
    watch = StallWatch(30, clock)
    for committed in range(0, 1000, 50):
        assert watch.stalled({POSTS: committed}, {POSTS: 5000}) is None
        clock.now += 25


def test_the_clock_starts_when_a_partition_falls_behind_not_when_it_last_moved() -> None:
    """An idle worker given new input has the whole timeout to commit it."""
    clock = Clock()
    watch = StallWatch(30, clock)
    assert watch.stalled({POSTS: 100}, {POSTS: 100}) is None
    clock.now += 3600
    assert watch.stalled({POSTS: 100}, {POSTS: 120}) is None
    clock.now += 29
    assert watch.stalled({POSTS: 100}, {POSTS: 120}) is None


def test_a_rebalance_restarts_the_clocks() -> None:
    clock = Clock()
    watch = StallWatch(30, clock)
    watch.stalled({POSTS: 100}, {POSTS: 150})
    clock.now += 40
    watch.rebalanced()
    assert watch.stalled({POSTS: 100}, {POSTS: 150}) is None
    clock.now += 31
    assert watch.stalled({POSTS: 100}, {POSTS: 150}) is not None


def test_partitions_whose_offsets_are_unknown_are_not_judged() -> None:
    clock = Clock()
    watch = StallWatch(30, clock)
    for _ in range(3):
        assert watch.stalled({POSTS: 10}, {POSTS: None, ("posts", 1): 500}) is None
        clock.now += 100


def test_every_stalled_partition_is_named_with_its_committed_offset() -> None:
    clock = Clock()
    watch = StallWatch(30, clock)
    committed = {("valid-posts", 1): 5, POSTS: 100, ("posts", 1): 40}
    ends = {("valid-posts", 1): 9, POSTS: 150, ("posts", 1): 40}
    watch.stalled(committed, ends)
    clock.now += 45
    reason = watch.stalled(committed, ends)
    assert reason is not None
    assert reason.endswith(
        "54 messages wait past the committed offset on posts[0]@100, valid-posts[1]@5"
    )


def test_the_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="stall_after_s must be positive, not 0"):
        StallWatch(0)


partitions = st.tuples(st.sampled_from(["posts", "valid-posts"]), st.integers(0, 3))


@given(
    first=st.dictionaries(partitions, st.integers(0, 10_000), max_size=8),
    moved=st.dictionaries(partitions, st.integers(1, 100), max_size=8),
    ahead=st.dictionaries(partitions, st.integers(0, 500), max_size=8),
)
def test_stalled_are_the_partitions_behind_whose_commit_did_not_move(
    first: dict[tuple[str, int], int],
    moved: dict[tuple[str, int], int],
    ahead: dict[tuple[str, int], int],
) -> None:
    clock = Clock()
    watch = StallWatch(30, clock)
    ends = {tp: first.get(tp, 0) + extra + 100 for tp, extra in ahead.items()}
    watch.stalled(first, ends)
    clock.now += 30
    later = {tp: offset + moved.get(tp, 0) for tp, offset in first.items()}
    ends = {tp: first.get(tp, 0) + extra for tp, extra in ahead.items()}
    stuck = {
        tp: ends[tp] - later[tp]
        for tp in ends
        if tp in later and tp not in moved and ends[tp] > later[tp]
    }
    reason = watch.stalled(later, ends)
    if not stuck:
        assert reason is None
    else:
        assert reason is not None
        assert f"while {sum(stuck.values())} messages wait past the committed offset" in reason
