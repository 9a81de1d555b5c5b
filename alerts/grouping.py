"""Grouping and timing, in the manner of Prometheus Alertmanager; pure and clock-injected.

Alerts of one route and channel with the same group labels (by default the key) form a group:

- ``group_wait``: a new group waits this long before its first notification, so that a burst
  of alerts on one ticker becomes one message rather than fifty.
- ``group_interval``: once a group has notified, alerts that join it are sent as an update
  at most this often.
- ``repeat_interval``: how long a group remembers that it has notified. Alerts are one-shot
  events (a window that spiked), not ongoing states, so nothing is re-sent unchanged; a group
  quiet for this long is forgotten and the next alert starts afresh with ``group_wait``.
- quiet hours: a flush that falls in the route's quiet span waits for its end (a critical
  alert passes unless the route says otherwise). Nothing is dropped.

``snapshot``/``restore`` carry the timing of groups that have notified across a restart (the
dispatcher keeps it in the store), so a storm does not start over when the service does.
The caller passes ``now`` to every method; no method reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from alerts.routing import Route, RoutingConfig
from finsentry.schema import Alert


@dataclass(frozen=True)
class Batch:
    """One notification to send: a group's new alerts on one channel of one route."""

    route: Route
    channel: str
    labels: tuple[str, ...]
    alerts: tuple[Alert, ...]
    sequence: int
    group_total: int

    @property
    def channel_id(self) -> str:
        return channel_id(self.channel, self.route.name)

    @property
    def is_update(self) -> bool:
        return self.sequence > 1


@dataclass
class _Group:
    route: Route
    channel: str
    labels: tuple[str, ...]
    opened_at: datetime
    pending: dict[str, Alert] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    next_flush: datetime | None = None
    last_flush: datetime | None = None
    sequence: int = 0
    # Alerts counted before a restart, whose ids are no longer held in ``seen``.
    earlier: int = 0

    @property
    def total(self) -> int:
        return self.earlier + len(self.seen)


def channel_id(channel: str, route_name: str) -> str:
    """The delivery log's channel column: ``slack:desk``, ``email:oncall``."""
    return f"{channel}:{route_name}"


class Grouper:
    """Holds open groups and says which batches are due at a given time."""

    def __init__(self) -> None:
        self._groups: dict[tuple[str, str, tuple[str, ...]], _Group] = {}

    def __len__(self) -> int:
        return len(self._groups)

    def add(
        self, route: Route, channel: str, alert: Alert, now: datetime, *, resend: bool = False
    ) -> bool:
        """Put an alert into its group; False when the group already holds it.

        ``resend`` marks an alert whose earlier send failed before a restart: it is not news
        joining the group, so it waits only ``group_wait``, not the group's interval.
        """
        labels = route.group_labels(alert)
        key = (route.name, channel, labels)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(route, channel, labels, opened_at=now)
        if alert.id in group.seen:
            return False
        group.seen.add(alert.id)
        group.pending[alert.id] = alert
        if resend and group.earlier:
            group.earlier -= 1  # a restored group already counted it
        on_schedule = now + route.group_wait if resend else self._scheduled(group, now)
        if resend and group.next_flush is not None:
            group.next_flush = min(group.next_flush, on_schedule)
        elif group.next_flush is None:
            group.next_flush = on_schedule
        elif (
            alert.severity == "critical" and route.quiet_hours and route.quiet_hours.except_critical
        ):
            # A flush held by quiet hours must not hold a critical alert that may pass them.
            group.next_flush = min(group.next_flush, on_schedule)
        return True

    def due(self, now: datetime) -> list[Batch]:
        """Batches whose time has come; their alerts leave the pending set."""
        batches = []
        for group in self._groups.values():
            if group.next_flush is None or group.next_flush > now:
                continue
            quiet = group.route.quiet_hours
            held_until = quiet.quiet_until(now) if quiet else None
            if held_until is not None and not (
                quiet is not None
                and quiet.except_critical
                and any(a.severity == "critical" for a in group.pending.values())
            ):
                group.next_flush = held_until
                continue
            group.sequence += 1
            batches.append(
                Batch(
                    route=group.route,
                    channel=group.channel,
                    labels=group.labels,
                    alerts=tuple(sorted(group.pending.values(), key=_order)),
                    sequence=group.sequence,
                    group_total=group.total,
                )
            )
            group.pending.clear()
            group.last_flush = now
            group.next_flush = None
        self._expire(now)
        return batches

    @staticmethod
    def _scheduled(group: _Group, now: datetime) -> datetime:
        """When the group's next flush falls by its timing alone, ignoring quiet hours."""
        route = group.route
        if group.last_flush is None:
            return max(now, group.opened_at + route.group_wait)
        return max(now, group.last_flush + route.group_interval)

    def next_due(self) -> datetime | None:
        """The earliest time at which ``due`` could return something."""
        times = [g.next_flush for g in self._groups.values() if g.next_flush is not None]
        return min(times, default=None)

    def snapshot(self) -> list[dict[str, Any]]:
        """The timing of groups that have notified, as JSON-ready data, so that a restarted
        service keeps their group_interval instead of starting them afresh."""
        return [
            {
                "route": g.route.name,
                "channel": g.channel,
                "labels": list(g.labels),
                "last_flush": g.last_flush.isoformat(),
                "sequence": g.sequence,
                "total": g.total,
            }
            for g in self._groups.values()
            if g.last_flush is not None
        ]

    def restore(self, snapshot: list[dict[str, Any]], routing: RoutingConfig, now: datetime) -> int:
        """Reopen the snapshot's groups that still exist in the routing and have not expired;
        returns how many. Call before adding any alert."""
        restored = 0
        for entry in snapshot:
            route = routing.route(entry["route"])
            if route is None or entry["channel"] not in route.channels:
                continue
            last_flush = datetime.fromisoformat(entry["last_flush"])
            if now >= last_flush + route.repeat_interval:
                continue
            labels = tuple(entry["labels"])
            self._groups[(route.name, entry["channel"], labels)] = _Group(
                route,
                entry["channel"],
                labels,
                opened_at=last_flush,
                last_flush=last_flush,
                sequence=entry["sequence"],
                earlier=entry["total"],
            )
            restored += 1
        return restored

    def _expire(self, now: datetime) -> None:
        stale = [
            key
            for key, group in self._groups.items()
            if group.next_flush is None
            and group.last_flush is not None
            and now >= group.last_flush + group.route.repeat_interval
        ]
        for key in stale:
            del self._groups[key]


def _order(alert: Alert) -> tuple[int, float, str]:
    """Most severe first, then strongest z, then id for a stable order."""
    return (0 if alert.severity == "critical" else 1, -alert.z, alert.id)
