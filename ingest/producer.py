"""The one Kafka producer every source publishes through (kafka-python).

acks=all with idempotence, so a retried batch is written once; compression; a bounded
buffer: kafka-python 3 has no ``buffer_memory``, so at most ``ingest_producer_max_pending``
posts are handed to it before their acknowledgements are awaited. The producer retries
inside one delivery timeout; past that, ``publish`` resends what was not acknowledged with
exponential backoff until it succeeds or the caller's deadline passes. A post too large for
the producer or the broker, or dated beyond ``future_tolerance_s``, is refused at once:
resending cannot help, and retrying it stalled every poller behind it.
Ids are stable, so a resend after a lost acknowledgement is a duplicate the stream drops,
never a loss.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from finsentry.config import Settings
from finsentry.kafka_auth import client_options
from finsentry.schema import Post
from ingest.posts import future_error
from ingest.sink import PublishError, Refused, story_key

log = logging.getLogger(__name__)

_FIRST_BACKOFF_S = 0.5


class KafkaPostSink:
    """Publishes posts to ``settings.topic("posts")``, keyed by ``story_key``."""

    def __init__(self, settings: Settings, *, client_id: str = "finsentry-ingest") -> None:
        self.settings = settings
        self.topic = settings.topic("posts")
        self.client_id = client_id
        self._producer: Any = None
        self._lock = threading.Lock()

    def _config(self) -> dict[str, Any]:
        s = self.settings
        delivery_ms = int(s.ingest_producer_delivery_timeout_s * 1000)
        request_ms = max(1000, min(30_000, (delivery_ms - s.ingest_producer_linger_ms) // 2))
        return {
            "bootstrap_servers": s.bootstrap_servers,
            "client_id": self.client_id,
            "acks": "all",
            "enable_idempotence": True,
            "retries": 2**31 - 1,
            "retry_backoff_ms": 200,
            "max_in_flight_requests_per_connection": 5,
            "compression_type": None
            if s.ingest_producer_compression == "none"
            else s.ingest_producer_compression,
            "linger_ms": s.ingest_producer_linger_ms,
            "max_block_ms": int(s.ingest_producer_max_block_s * 1000),
            "delivery_timeout_ms": delivery_ms,
            "request_timeout_ms": request_ms,
            "bootstrap_timeout_ms": int(s.ingest_producer_max_block_s * 1000),
            "reconnect_backoff_max_ms": 2000,
            **client_options(s),
        }

    def _get_producer(self) -> Any:
        with self._lock:
            if self._producer is None:
                from kafka import KafkaProducer

                self._producer = KafkaProducer(**self._config())
            return self._producer

    def _discard_producer(self, producer: Any) -> None:
        """Replace a producer still holding records we stopped waiting for.

        Its close (which flushes first) runs on a thread of its own so the caller is not held
        up. Records it still delivers become duplicates of the resend, which the stream's
        dedup by id absorbs; that is the at-least-once side of never losing one.
        """
        with self._lock:
            if self._producer is producer:
                self._producer = None
        timeout = self.settings.ingest_producer_delivery_timeout_s
        threading.Thread(
            target=close_producer,
            args=(producer, timeout, self.topic),
            name="finsentry-producer-close",
            daemon=True,
        ).start()

    def publish(
        self,
        posts: Sequence[Post],
        *,
        timeout_s: float | None = None,
        stop: threading.Event | None = None,
    ) -> list[Refused]:
        """Return once Kafka acknowledged every post not refused; raise PublishError at the
        deadline."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        refused: list[Refused] = []
        sendable: list[Post] = []
        for post in posts:
            reason = future_error(post, self.settings.future_tolerance_s)
            if reason is None:
                sendable.append(post)
            else:
                refused.append(Refused(post, reason))
        step = self.settings.ingest_producer_max_pending
        for start in range(0, len(sendable), step):
            try:
                refused += self._publish_bounded(sendable[start : start + step], deadline, stop)
            except PublishError as exc:
                unsent = sendable[start + step :]
                raise PublishError(str(exc), [*exc.unacknowledged, *unsent]) from exc
        return refused

    def _publish_bounded(
        self, pending: list[Post], deadline: float | None, stop: threading.Event | None
    ) -> list[Refused]:
        backoff = _FIRST_BACKOFF_S
        refused: list[Refused] = []
        while pending:
            pending, reason, too_large = self._send_round(pending, deadline)
            refused += too_large
            if not pending:
                break
            wait = backoff
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
            if wait <= 0 or (stop is not None and stop.is_set()):
                raise PublishError(
                    f"{self.topic}: {len(pending)} post(s) not acknowledged by "
                    f"{self.settings.bootstrap_servers}: {reason}",
                    pending,
                )
            log.warning(
                "%s: %d post(s) not acknowledged (%s); retrying in %.1fs",
                self.topic,
                len(pending),
                reason,
                wait,
            )
            if stop is not None:
                if stop.wait(wait):
                    raise PublishError(
                        f"{self.topic}: stopped with {len(pending)} pending", pending
                    )
            else:
                time.sleep(wait)
            backoff = min(backoff * 2, self.settings.ingest_publish_backoff_max_s)
        return refused

    def _send_round(
        self, posts: list[Post], deadline: float | None
    ) -> tuple[list[Post], str, list[Refused]]:
        """Send all, wait on every future; return the posts that failed and why, and those
        refused as too large."""
        from kafka.errors import KafkaError, MessageSizeTooLargeError

        try:
            producer = self._get_producer()
        except KafkaError as exc:
            return posts, f"cannot connect: {exc!r}", []
        futures = []
        failed: list[Post] = []
        refused: list[Refused] = []
        reason = ""
        for index, post in enumerate(posts):
            try:
                future = producer.send(self.topic, key=story_key(post), value=post.to_json())
            except MessageSizeTooLargeError as exc:
                refused.append(Refused(post, f"too large for Kafka: {exc}"))
                continue
            except KafkaError as exc:
                failed = posts[index:]
                reason = f"send refused: {exc!r}"
                break
            futures.append((post, future))
        # kafka-python fails a record after delivery_timeout, or a request timeout later when it
        # was in flight; waiting a little beyond both means a future left undone is stuck.
        # One budget for the whole round, not per record, or a stuck batch costs it 50 times.
        config = self._config()
        ack_budget = (config["delivery_timeout_ms"] + config["request_timeout_ms"]) / 1000 + 10.0
        round_deadline = time.monotonic() + ack_budget
        if deadline is not None:
            round_deadline = min(round_deadline, deadline)
        for post, future in futures:
            wait = max(0.0, round_deadline - time.monotonic())
            try:
                future.get(timeout=wait)
            except MessageSizeTooLargeError as exc:  # the broker's limit is below ours
                refused.append(Refused(post, f"too large for Kafka: {exc}"))
            except KafkaError as exc:
                failed.append(post)
                reason = reason or f"not acknowledged: {exc!r}"
        if any(not future.is_done for _, future in futures):
            # Gave up waiting while records were still queued: drop them with their producer,
            # or they could still arrive after the caller was told they did not.
            self._discard_producer(producer)
        return failed, reason, refused

    def close(self) -> None:
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            close_producer(producer, self.settings.ingest_producer_delivery_timeout_s, self.topic)


def close_producer(producer: Any, timeout_s: float, topic: str) -> None:
    """Close, giving queued records ``timeout_s`` to go out; then abort what is left.

    kafka-python's ``close`` flushes first and, when the flush times out, raises before it
    stops the sender, leaving a producer that raises again when garbage collected. Only
    records the caller was never told were acknowledged can be dropped here.
    """
    from kafka.errors import KafkaError

    try:
        producer.close(timeout=timeout_s)
    except KafkaError as exc:
        log.warning("%s: closing with unacknowledged records, aborting them: %r", topic, exc)
        sender = producer._sender  # no public way to abort a failed close
        sender.force_close()
        sender.join(timeout_s)
        producer.close(timeout=0)
