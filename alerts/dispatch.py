"""From accepted alerts to delivered notifications, with every step in the delivery log.

``accept`` makes an alert durable (the alert row plus one ``pending`` delivery row per route
channel) before the caller commits its Kafka offset; ``tick`` sends what grouping says is due
and retries transient failures with backoff; ``recover`` reloads unfinished deliveries and the
groups' timing (job_state ``alerts.grouping``) after a restart. A delivery that is
``delivered`` or ``failed`` is never attempted again, so a re-consumed alert is not sent twice.
The caller passes ``now``; nothing here reads a clock.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from alerts.errors import NotifyError, RoutingError, TransientNotifyError
from alerts.grouping import Batch, Grouper, channel_id
from alerts.message import build_content
from alerts.notifiers import Notifier
from alerts.retry import RetryPolicy
from alerts.routing import RoutingConfig
from alerts.secrets import AlertSecrets, redact
from finsentry.schema import Alert, SchemaError
from finsentry.store import Store

log = logging.getLogger(__name__)

UNFINISHED: Final = ("pending", "retrying")
GROUPING_STATE: Final = "alerts.grouping"
FINISHED: Final = ("delivered", "failed")


@dataclass
class _Job:
    batch: Batch
    due: datetime
    attempts: int = 0
    prior: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """What one attempt did, for callers and tests."""

    channel_id: str
    alert_ids: tuple[str, ...]
    status: str
    attempts: int
    error: str | None


class Dispatcher:
    """Routes, groups, sends and records. One per service process."""

    def __init__(
        self,
        store: Store,
        routing: RoutingConfig,
        notifiers: Mapping[str, Notifier],
        *,
        policy: RetryPolicy,
        dashboard_url: str,
        secrets: AlertSecrets,
    ) -> None:
        missing = sorted(
            f"{channel} (route {route.name})"
            for route in routing.routes
            for channel in route.channels
            if channel not in notifiers
        )
        if missing:
            raise RoutingError(f"routes use channels that are not configured: {missing}")
        self._store = store
        self._routing = routing
        self._notifiers = notifiers
        self._policy = policy
        self._dashboard_url = dashboard_url
        self._secrets = secrets
        self._grouper = Grouper()
        self._jobs: list[_Job] = []
        self._prior: dict[tuple[str, str], int] = {}
        # Sent at least once and awaiting a retry: a re-consumed copy must not join a group.
        self._in_flight: set[tuple[str, str]] = set()

    def accept(self, alert: Alert, now: datetime) -> int:
        """Record the alert and its pending deliveries; returns how many are newly queued."""
        routes = self._routing.match(alert)
        if not routes:
            log.info("alert %s for %s matches no route; not delivered", alert.id, alert.key)
            return 0
        self._store.upsert_alerts([alert])
        queued = 0
        for route in routes:
            for channel in route.channels:
                cid = channel_id(channel, route.name)
                record = self._store.get_delivery(alert.id, cid)
                if record is not None and record.status in FINISHED:
                    log.info("alert %s already %s on %s; skipped", alert.id, record.status, cid)
                    continue
                if (alert.id, cid) in self._in_flight:
                    continue
                if record is None:
                    self._store.record_delivery(alert.id, cid, "pending", attempts=0)
                else:
                    self._prior[(alert.id, cid)] = record.attempts
                queued += self._grouper.add(route, channel, alert, now)
        return queued

    def recover(self, now: datetime) -> int:
        """Reopen the groups that had notified, then requeue every pending or retrying
        delivery in the store; returns how many deliveries were requeued."""
        reopened = self._grouper.restore(
            self._store.get_state(GROUPING_STATE, []), self._routing, now
        )
        if reopened:
            log.info("reopened %d alert groups with their timing from before the restart", reopened)
        count = 0
        for record in self._store.deliveries_with_status(UNFINISHED):
            channel, _, route_name = record.channel.partition(":")
            route = self._routing.route(route_name)
            if record.attempts >= self._policy.max_attempts:
                # Counted in the store before each send: a service that keeps dying while
                # (or after) sending stops here instead of sending on every restart.
                error = f"gave up after {record.attempts} attempts (counted across restarts)"
                self._fail([record.alert_id], record.channel, record.attempts, error)
                continue
            if route is None or channel not in route.channels:
                error = f"route channel {record.channel!r} is no longer configured"
                self._fail([record.alert_id], record.channel, record.attempts, error)
                continue
            alert = self._load_alert(record.alert_id, record.channel, record.attempts)
            if alert is None:
                continue
            self._prior[(alert.id, record.channel)] = record.attempts
            resend = record.status == "retrying"
            count += self._grouper.add(route, channel, alert, now, resend=resend)
        if count:
            log.info("recovered %d unfinished deliveries from the store", count)
        return count

    def tick(self, now: datetime) -> list[Outcome]:
        """Send every batch that is due and every retry whose wait is over."""
        batches = self._grouper.due(now)
        for batch in batches:
            prior = {a.id: self._prior.pop((a.id, batch.channel_id), 0) for a in batch.alerts}
            self._jobs.append(_Job(batch=batch, due=now, prior=prior))
            self._in_flight.update((a.id, batch.channel_id) for a in batch.alerts)
        if batches:
            self._store.put_state(GROUPING_STATE, self._grouper.snapshot())
        ready = [job for job in self._jobs if job.due <= now]
        self._jobs = [job for job in self._jobs if job.due > now]
        return [self._attempt(job, now) for job in ready]

    def next_wake(self) -> datetime | None:
        """When ``tick`` next has something to do."""
        times = [job.due for job in self._jobs]
        group_due = self._grouper.next_due()
        if group_due is not None:
            times.append(group_due)
        return min(times, default=None)

    @property
    def in_flight(self) -> int:
        """Batches waiting to be retried."""
        return len(self._jobs)

    def close(self) -> None:
        for notifier in self._notifiers.values():
            notifier.close()

    def _attempt(self, job: _Job, now: datetime) -> Outcome:
        batch = job.batch
        job.attempts += 1
        for alert in batch.alerts:
            self._store.count_delivery_attempt(
                alert.id, batch.channel_id, job.prior.get(alert.id, 0) + job.attempts
            )
        ids = [a.id for a in batch.alerts]
        notifier = self._notifiers[batch.channel]
        content = build_content(batch, self._dashboard_url)
        try:
            note = notifier.send(content, batch.route)
        except TransientNotifyError as exc:
            return self._retry(job, now, redact(str(exc), self._secrets), exc.retry_after_s)
        except NotifyError as exc:
            return self._fail(
                ids, batch.channel_id, job.attempts, redact(str(exc), self._secrets), job
            )
        except Exception as exc:
            # A bug in a notifier must not lose the alert: log it loudly and retry like a
            # transient failure, so it ends as delivered or failed in the log either way.
            log.exception(
                "%s: unexpected error from the %s notifier", batch.channel_id, batch.channel
            )
            error = redact(f"unexpected {type(exc).__name__}: {exc}", self._secrets)
            return self._retry(job, now, error, None)
        self._record(job, "delivered", note)
        log.info(
            "%s: delivered %d alert(s) for %s (attempt %d)",
            batch.channel_id,
            len(ids),
            "/".join(batch.labels),
            job.attempts,
        )
        return Outcome(batch.channel_id, tuple(ids), "delivered", job.attempts, note)

    def _retry(self, job: _Job, now: datetime, error: str, retry_after_s: float | None) -> Outcome:
        batch = job.batch
        ids = tuple(a.id for a in batch.alerts)
        attempts = self._attempts(job)
        delay = self._policy.delay(attempts, retry_after_s)
        if delay is None:
            error = f"gave up after {attempts} attempts: {error}"
            return self._fail(list(ids), batch.channel_id, job.attempts, error, job)
        job.due = now + delay
        self._jobs.append(job)
        self._record(job, "retrying", error)
        log.warning(
            "%s: attempt %d for %d alert(s) failed, retry in %.3gs: %s",
            batch.channel_id,
            job.attempts,
            len(ids),
            delay.total_seconds(),
            error,
        )
        return Outcome(batch.channel_id, ids, "retrying", job.attempts, error)

    @staticmethod
    def _attempts(job: _Job) -> int:
        """The batch's attempts so far, earlier processes' included, by its most tried alert:
        no alert is sent more than ``max_attempts`` times, however often the service restarts."""
        return max(job.prior.get(alert.id, 0) for alert in job.batch.alerts) + job.attempts

    def _record(self, job: _Job, status: str, error: str | None) -> None:
        for alert in job.batch.alerts:
            if status in FINISHED:
                self._in_flight.discard((alert.id, job.batch.channel_id))
            attempts = job.prior.get(alert.id, 0) + job.attempts
            self._store.record_delivery(
                alert.id, job.batch.channel_id, status, attempts=attempts, error=error
            )

    def _fail(
        self,
        ids: list[str],
        cid: str,
        attempts: int,
        error: str,
        job: _Job | None = None,
    ) -> Outcome:
        if job is not None:
            self._record(job, "failed", error)
        else:
            for alert_id in ids:
                self._store.record_delivery(alert_id, cid, "failed", attempts=attempts, error=error)
        log.error("%s: delivery of %d alert(s) failed permanently: %s", cid, len(ids), error)
        return Outcome(cid, tuple(ids), "failed", attempts, error)

    def _load_alert(self, alert_id: str, cid: str, attempts: int) -> Alert | None:
        row = self._store.get_alert(alert_id)
        if row is None:
            self._fail([alert_id], cid, attempts, "alert row missing from the store")
            return None
        fields = {name: row[name] for name in Alert.model_fields if name != "schema_version"}
        try:
            return Alert.from_dict(fields)
        except SchemaError as exc:
            self._fail([alert_id], cid, attempts, f"stored alert is invalid: {exc}")
            return None
