from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from finsentry.schema import Post
from finsentry.text import fingerprint, normalise_text
from stream.dedup import Deduplicator, PruneSchedule

pytestmark = pytest.mark.unit

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def post(pid: str, title: str, minutes: float = 0) -> Post:
    at = T0 + timedelta(minutes=minutes)
    return Post(id=pid, source="rss:x", kind="news", published_at=at, received_at=at, title=title)


def test_exact_id_then_syndicated_copy_then_new_story() -> None:
    dedup = Deduplicator({}, horizon_s=3600)
    assert not dedup.check(post("a", "Apple beats estimates")).is_duplicate
    assert dedup.check(post("a", "Apple beats estimates")).duplicate_of == "id"
    copy = post("b", "APPLE beats   estimates! https://t.co/xyz", minutes=5)
    assert dedup.check(copy).duplicate_of == "fingerprint"
    assert not dedup.check(post("c", "Apple misses estimates")).is_duplicate


def test_a_redelivered_message_is_not_its_own_duplicate() -> None:
    seen: dict[str, list[object]] = {}
    first = post("a", "Apple beats estimates")
    assert not Deduplicator(seen, horizon_s=3600).check(first, origin="posts:0:7").is_duplicate
    restarted = Deduplicator(seen, horizon_s=3600)  # same state, as after a crash
    assert not restarted.check(first, origin="posts:0:7").is_duplicate
    assert restarted.check(first, origin="posts:0:9").duplicate_of == "id"
    copy = post("b", "APPLE beats estimates!", minutes=1)
    assert restarted.check(copy, origin="posts:0:10").duplicate_of == "fingerprint"
    assert seen["id:a"] == [T0.timestamp(), "posts:0:7"]


def test_copies_outside_the_horizon_are_new() -> None:
    dedup = Deduplicator({}, horizon_s=600)
    dedup.check(post("a", "Fed holds rates"))
    assert not dedup.check(post("b", "Fed holds rates", minutes=11)).is_duplicate


def test_prune_forgets_old_entries() -> None:
    seen: dict[str, list[object]] = {}
    dedup = Deduplicator(seen, horizon_s=600)
    dedup.check(post("a", "Fed holds rates"))
    assert dedup.prune((T0 + timedelta(minutes=20)).timestamp()) == 2
    assert seen == {}


def test_prune_deletes_only_what_the_caller_owns() -> None:
    seen: dict[str, list[object]] = {}
    dedup = Deduplicator(seen, horizon_s=600)
    dedup.check(post("a", "Fed holds rates"), origin="posts:0:1")
    dedup.check(post("b", "Oil slides"), origin="posts:1:1")
    now = (T0 + timedelta(minutes=20)).timestamp()
    assert dedup.prune(now, owned=lambda origin: origin.startswith("posts:1:")) == 2
    assert sorted(seen) == sorted(["id:a", f"fp:{post('a', 'Fed holds rates').fingerprint}"])


def test_prunes_are_due_per_partition_each_tenth_of_the_horizon_of_event_time() -> None:
    schedule = PruneSchedule(horizon_s=1_000)
    assert schedule.due(0, 5_000.0) is None  # the first event starts the clock
    assert schedule.due(0, 5_099.0) is None
    assert schedule.due(1, 5_100.0) is None  # another partition keeps its own clock
    assert schedule.due(0, 4_000.0) is None  # an older post does not move it back
    assert schedule.due(0, 5_100.0) == 4_100.0  # a horizon behind the newest
    assert schedule.due(0, 5_150.0) is None
    assert schedule.due(1, 5_200.0) == 4_200.0


@given(st.lists(st.floats(min_value=0, max_value=100_000), min_size=1, max_size=200))
def test_with_scheduled_prunes_no_claim_outlives_two_and_a_tenth_horizons(
    times: list[float],
) -> None:
    """In event-time order; a late post's claim waits for the next prune."""
    times.sort()
    seen: dict[str, list[object]] = {}
    dedup = Deduplicator(seen, horizon_s=1_000)
    schedule = PruneSchedule(horizon_s=1_000)
    for n, at in enumerate(times):
        item = post(f"p{n}", f"story {n}").model_copy(
            update={"published_at": datetime.fromtimestamp(at, UTC)}
        )
        dedup.check(item, origin=f"posts:0:{n}")
        due = schedule.due(0, at)
        if due is not None:
            dedup.prune(due)
    newest = max(times)
    assert all(newest - at <= 2_100 for at, _ in seen.values())
    assert all(f"id:p{n}" in seen for n, at in enumerate(times) if newest - at <= 2_000)


@given(st.text(min_size=1, max_size=80), st.sampled_from(["!!", " -- ", "...", "  "]))
def test_fingerprint_ignores_spacing_urls_and_punctuation(text: str, noise: str) -> None:
    noisy = f"  {text}{noise} https://example.com/x?utm=1  "
    assert fingerprint(noisy) == fingerprint(text)


@given(st.from_regex(r"[A-Za-z ]{1,40}", fullmatch=True))
def test_fingerprint_ignores_case(text: str) -> None:
    assert fingerprint(text.upper()) == fingerprint(text.lower())


def test_normalise_text() -> None:
    assert normalise_text("  Hello\tWORLD  http://x.y/z ") == "hello world"
