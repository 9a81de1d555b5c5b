"""The Kafka topic set of DESIGN.md and its creation with the configured partition counts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from finsentry.config import Settings
from finsentry.kafka_auth import client_options

TOPIC_NAMES: Final = ("posts", "scored", "signals", "alerts", "deadletter", "model-updates")
# The stream worker's own hops (see stream/agents.py); None means the configured count.
# signal-input has one partition so that one watermark orders every key, as in backfill.
INTERNAL_TOPICS: Final[dict[str, int | None]] = {
    "valid-posts": None,
    "signal-input": 1,
}


@dataclass(frozen=True)
class TopicState:
    name: str
    partitions: int
    wanted_partitions: int
    created: bool


def ensure_topics(settings: Settings, timeout_s: float = 30.0) -> list[TopicState]:
    """Create the missing topics (the DESIGN.md set and the stream's internal hops).

    Existing topics are left as they are and reported.
    """
    from kafka import KafkaAdminClient
    from kafka.errors import for_code

    admin = KafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers,
        **client_options(settings),
        request_timeout_ms=int(timeout_s * 1000),
        client_id="finsentry-topics",
    )
    try:
        wanted = {settings.topic(name): settings.partitions_for(name) for name in TOPIC_NAMES}
        wanted |= {
            settings.topic(name): fixed or settings.partitions_for(name)
            for name, fixed in INTERNAL_TOPICS.items()
        }
        existing = set(admin.list_topics())
        missing = {
            name: {"num_partitions": count, "replication_factor": settings.kafka_replication_factor}
            for name, count in wanted.items()
            if name not in existing
        }
        created: set[str] = set()
        if missing:
            response = admin.create_topics(
                missing, timeout_ms=int(timeout_s * 1000), raise_errors=False
            )
            for topic in response["topics"]:
                error = for_code(topic["error_code"])
                if topic["error_code"] == 0:
                    created.add(topic["name"])
                elif error.__name__ != "TopicAlreadyExistsError":  # a concurrent creator won
                    raise error(f"creating topic {topic['name']}: {topic.get('error_message')}")
        # Creation is acknowledged before metadata has propagated; wait for leaders.
        admin.wait_for_topics(list(wanted), timeout_ms=int(timeout_s * 1000))
        described = admin.describe_topics(list(wanted))
        actual = {t["name"]: len(t["partitions"]) for t in described}
    finally:
        admin.close()
    return [
        TopicState(name, actual.get(name, 0), count, name in created)
        for name, count in wanted.items()
    ]
