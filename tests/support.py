"""Helpers shared by the test packages (the runtime ones live in finsentry.runtime)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from finsentry.config import Settings
from finsentry.runtime import free_port, wait_until

__all__ = ["committed_total", "free_port", "process_alive", "read_to_end", "wait_until"]


def process_alive(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped (read from /proc)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def committed_total(settings: Settings, group: str, name: str) -> int:
    """A consumer group's committed offsets on a topic, summed over its partitions (0 before
    any commit)."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    try:
        offsets = admin.list_group_offsets({group: None}).get(group, {})
    finally:
        admin.close()
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == settings.topic(name))


def read_to_end(settings: Settings, name: str, *, timeout_s: float = 60.0) -> list[Any]:
    """Every record on one of the project's topics now (kafka-python ConsumerRecords)."""
    return read_topic_to_end(settings, settings.topic(name), timeout_s=timeout_s)


def read_topic_to_end(settings: Settings, topic: str, *, timeout_s: float = 60.0) -> list[Any]:
    """Every record on ``topic`` (a full name: a changelog too) now: reads to the end
    offsets, then stops."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False)
    try:
        partitions = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        end = consumer.end_offsets(partitions)
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: could not read to the end offsets {end}")
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def changelog_keys(settings: Settings, table: str) -> tuple[int, int]:
    """(keys whose latest record is not a tombstone, records ever written) on a worker
    table's changelog: what a restarted worker recovers, and the end offsets' sum (compaction
    never removes a partition's last record, so its offset tells how many were written)."""
    from stream.app import app_id

    records = read_topic_to_end(settings, f"{app_id(settings)}-{table}-changelog", timeout_s=600)
    latest = {record.key: record.value for record in records}
    ends: dict[int, int] = {}
    for record in records:
        ends[record.partition] = max(ends.get(record.partition, 0), record.offset + 1)
    return sum(value is not None for value in latest.values()), sum(ends.values())
