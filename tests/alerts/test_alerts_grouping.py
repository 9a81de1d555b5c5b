from __future__ import annotations

import json
from datetime import time, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.grouping import Grouper
from alerts.retry import RetryPolicy
from alerts.routing import build_routing
from tests.alerts.alerts_factories import T0, make_alert, make_route

pytestmark = pytest.mark.unit

S = timedelta(seconds=1)


def test_burst_of_fifty_becomes_one_batch() -> None:
    route = make_route(group_wait=30, group_interval=300, repeat_interval=3600)
    grouper = Grouper()
    for i in range(50):
        assert grouper.add(route, "slack", make_alert(window=i), T0 + i * 0.5 * S)
    assert grouper.due(T0 + 29 * S) == []
    batches = grouper.due(T0 + 30 * S)
    assert len(batches) == 1
    assert len(batches[0].alerts) == 50
    assert batches[0].sequence == 1 and not batches[0].is_update
    assert grouper.due(T0 + 31 * S) == []


def test_updates_wait_for_group_interval() -> None:
    route = make_route(group_wait=10, group_interval=60, repeat_interval=600)
    grouper = Grouper()
    grouper.add(route, "slack", make_alert(window=0), T0)
    assert len(grouper.due(T0 + 10 * S)) == 1
    grouper.add(route, "slack", make_alert(window=1), T0 + 20 * S)
    grouper.add(route, "slack", make_alert(window=2), T0 + 30 * S)
    assert grouper.next_due() == T0 + 70 * S
    assert grouper.due(T0 + 69 * S) == []
    (update,) = grouper.due(T0 + 70 * S)
    assert update.is_update and update.sequence == 2
    assert len(update.alerts) == 2 and update.group_total == 3


def test_late_joiner_after_interval_is_sent_at_once() -> None:
    route = make_route(group_wait=10, group_interval=60, repeat_interval=600)
    grouper = Grouper()
    grouper.add(route, "slack", make_alert(window=0), T0)
    grouper.due(T0 + 10 * S)
    grouper.add(route, "slack", make_alert(window=1), T0 + 200 * S)
    assert grouper.next_due() == T0 + 200 * S


def test_group_forgotten_after_repeat_interval() -> None:
    route = make_route(group_wait=10, group_interval=60, repeat_interval=600)
    grouper = Grouper()
    grouper.add(route, "slack", make_alert(window=0), T0)
    grouper.due(T0 + 10 * S)
    assert len(grouper) == 1
    grouper.due(T0 + 610 * S)
    assert len(grouper) == 0
    grouper.add(route, "slack", make_alert(window=1), T0 + 700 * S)
    (batch,) = grouper.due(T0 + 710 * S)
    assert batch.sequence == 1


def test_snapshot_restore_keeps_interval_sequence_and_total() -> None:
    route = make_route(group_wait=10, group_interval=300, repeat_interval=3600)
    routing = build_routing({"routes": [route.model_dump(by_alias=True)]})
    before = Grouper()
    before.add(route, "slack", make_alert(window=0), T0)
    before.add(route, "slack", make_alert(window=1), T0)
    before.due(T0 + 10 * S)
    snapshot = json.loads(json.dumps(before.snapshot()))

    after = Grouper()
    assert after.restore(snapshot, routing, T0 + 60 * S) == 1
    after.add(route, "slack", make_alert(window=2), T0 + 60 * S)
    assert after.next_due() == T0 + 310 * S
    (update,) = after.due(T0 + 310 * S)
    assert (update.sequence, update.group_total, len(update.alerts)) == (2, 3, 1)


def test_resend_after_restart_waits_only_group_wait() -> None:
    route = make_route(group_wait=10, group_interval=300, repeat_interval=3600)
    routing = build_routing({"routes": [route.model_dump(by_alias=True)]})
    before = Grouper()
    failed = make_alert(window=0)
    before.add(route, "slack", failed, T0)
    before.due(T0 + 10 * S)
    after = Grouper()
    after.restore(before.snapshot(), routing, T0 + 60 * S)
    after.add(route, "slack", failed, T0 + 60 * S, resend=True)
    assert after.next_due() == T0 + 70 * S
    (batch,) = after.due(T0 + 70 * S)
    assert batch.alerts == (failed,) and batch.group_total == 1


def test_restore_skips_expired_and_unrouted_groups() -> None:
    route = make_route(group_wait=0, repeat_interval=100)
    grouper = Grouper()
    grouper.add(route, "slack", make_alert(), T0)
    grouper.due(T0)
    snapshot = grouper.snapshot()
    renamed = build_routing({"routes": [{"name": "other", "channels": ["slack"]}]})
    same = build_routing({"routes": [route.model_dump(by_alias=True)]})
    assert Grouper().restore(snapshot, renamed, T0) == 0
    assert Grouper().restore(snapshot, same, T0 + 100 * S) == 0
    assert Grouper().restore(snapshot, same, T0 + 99 * S) == 1


def test_keys_and_channels_group_separately_and_duplicates_are_ignored() -> None:
    route = make_route(group_wait=0)
    grouper = Grouper()
    alert = make_alert("ticker:AAPL")
    assert grouper.add(route, "slack", alert, T0)
    assert not grouper.add(route, "slack", alert, T0)
    grouper.add(route, "email", alert, T0)
    grouper.add(route, "slack", make_alert("ticker:MSFT"), T0)
    batches = grouper.due(T0)
    assert sorted((b.channel, b.labels) for b in batches) == [
        ("email", ("ticker:AAPL",)),
        ("slack", ("ticker:AAPL",)),
        ("slack", ("ticker:MSFT",)),
    ]


def test_group_by_kind_merges_keys() -> None:
    route = make_route(group_wait=0, group_by=["kind"])
    grouper = Grouper()
    grouper.add(route, "slack", make_alert("topic:Macro"), T0)
    grouper.add(route, "slack", make_alert("topic:Earnings"), T0)
    (batch,) = grouper.due(T0)
    assert batch.labels == ("topic",) and len(batch.alerts) == 2


def test_batch_orders_most_severe_first() -> None:
    route = make_route(group_wait=0, group_by=[])
    grouper = Grouper()
    grouper.add(route, "slack", make_alert(window=0, z=9.0), T0)
    grouper.add(route, "slack", make_alert(window=1, z=3.1, severity="critical"), T0)
    grouper.add(route, "slack", make_alert(window=2, z=5.0), T0)
    (batch,) = grouper.due(T0)
    assert [(a.severity, a.z) for a in batch.alerts] == [
        ("critical", 3.1),
        ("warning", 9.0),
        ("warning", 5.0),
    ]


def test_quiet_hours_hold_until_end_but_let_critical_through() -> None:
    quiet = {"start": time(13), "end": time(15), "timezone": "UTC"}
    route = make_route(group_wait=0, quiet_hours=quiet)
    grouper = Grouper()
    grouper.add(route, "slack", make_alert("ticker:AAPL"), T0)
    grouper.add(route, "slack", make_alert("ticker:MSFT", severity="critical"), T0)
    (batch,) = grouper.due(T0)
    assert batch.labels == ("ticker:MSFT",)
    assert grouper.next_due() == T0.replace(hour=15)
    (held,) = grouper.due(T0.replace(hour=15))
    assert held.labels == ("ticker:AAPL",)


def test_critical_joining_a_held_group_releases_it() -> None:
    quiet = {"start": time(13), "end": time(15), "timezone": "UTC"}
    route = make_route(group_wait=10, quiet_hours=quiet)
    grouper = Grouper()
    grouper.add(route, "slack", make_alert(window=0), T0)
    assert grouper.due(T0 + 10 * S) == []
    assert grouper.next_due() == T0.replace(hour=15)
    grouper.add(route, "slack", make_alert(window=1, severity="critical"), T0 + 60 * S)
    (batch,) = grouper.due(T0 + 60 * S)
    assert [a.severity for a in batch.alerts] == ["critical", "warning"]


def test_quiet_hours_can_hold_critical_too() -> None:
    quiet = {"start": time(13), "end": time(15), "timezone": "UTC", "except_critical": False}
    route = make_route(group_wait=0, quiet_hours=quiet)
    grouper = Grouper()
    grouper.add(route, "slack", make_alert(severity="critical"), T0)
    assert grouper.due(T0) == []


@settings(max_examples=60, deadline=None)
@given(
    arrivals=st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 30), st.integers(0, 2_000)),
        min_size=1,
        max_size=60,
    ),
    wait=st.integers(0, 60),
    interval=st.integers(1, 300),
    repeat=st.integers(1, 3_000),
)
def test_every_alert_sent_exactly_once_and_intervals_respected(
    arrivals: list[tuple[int, int, int]], wait: int, interval: int, repeat: int
) -> None:
    """Whatever the arrival timing, every accepted add leaves in exactly one batch (an alert
    re-added after its group was forgotten counts anew: the delivery log dedups that), and a
    group's updates are at least group_interval apart."""
    route = make_route(group_wait=wait, group_interval=interval, repeat_interval=repeat)
    grouper = Grouper()
    keys = ["ticker:AAPL", "ticker:MSFT", "topic:Macro", "market"]
    sent: list[str] = []
    last_sent: dict[tuple[str, ...], object] = {}
    expected: list[str] = []
    for key_index, window, at in sorted(arrivals, key=lambda a: a[2]):
        now = T0 + at * S
        for batch in grouper.due(now):
            _check(batch, now, last_sent, interval)
            sent.extend(a.id for a in batch.alerts)
        alert = make_alert(keys[key_index], window=window)
        if grouper.add(route, "slack", alert, now):
            expected.append(alert.id)
    now = T0 + 100_000 * S
    while (due := grouper.next_due()) is not None:
        for batch in grouper.due(due):
            _check(batch, due, last_sent, interval)
            sent.extend(a.id for a in batch.alerts)
        assert due < now
    assert sorted(sent) == sorted(expected)


def _check(batch, now, last_sent, interval) -> None:  # type: ignore[no-untyped-def]
    previous = last_sent.get(batch.labels)
    if previous is not None and batch.sequence > 1:
        assert now - previous >= timedelta(seconds=interval)
    last_sent[batch.labels] = now


@given(
    attempt=st.integers(1, 10_000),
    base=st.floats(0, 100),
    factor=st.floats(1, 1e6),
    cap=st.floats(0, 10_000),
    retry_after=st.none() | st.floats(0, 1e5),
)
def test_backoff_is_bounded_monotone_and_honours_retry_after(
    attempt: int, base: float, factor: float, cap: float, retry_after: float | None
) -> None:
    policy = RetryPolicy(base_s=base, factor=factor, max_s=cap, max_attempts=20_000)
    delay = policy.delay(attempt, retry_after)
    assert delay is not None
    assert delay.total_seconds() <= cap + 1e-6  # the peer's Retry-After too is capped
    if retry_after is not None:
        assert delay.total_seconds() >= min(retry_after, cap) - 1e-6
    following = policy.delay(attempt + 1)
    assert following is not None and following >= policy.delay(attempt)  # type: ignore[operator]


def test_backoff_doubles_then_gives_up() -> None:
    policy = RetryPolicy(base_s=1, factor=2, max_s=5, max_attempts=5)
    assert [policy.delay(n).total_seconds() for n in range(1, 5)] == [1, 2, 4, 5]  # type: ignore[union-attr]
    assert policy.delay(5) is None
    with pytest.raises(ValueError, match="start at 1"):
        policy.delay(0)
