"""Telling running workers to hot-swap: one ``ModelUpdate`` on the ``model-updates`` topic.

Every worker consumes that topic and loads the named model directory between two batches
(stream/agents.py ``swap_model``). The path is absolute, so workers on this machine or on a
shared volume find the same directory.
"""

from __future__ import annotations

from pathlib import Path

from finsentry.config import Settings
from finsentry.kafka_auth import client_options
from finsentry.schema import ModelUpdate
from finsentry.topics import ensure_topics

PUBLISH_TIMEOUT_S = 30.0


def publish_model_update(settings: Settings, version: str, model_dir: Path) -> ModelUpdate:
    """Publish and wait for the broker's acknowledgement (raises if none comes in time)."""
    from kafka import KafkaProducer

    update = ModelUpdate(version=version, path=str(model_dir.resolve()))
    ensure_topics(settings, timeout_s=PUBLISH_TIMEOUT_S)
    producer = KafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        **client_options(settings),
        client_id="finsentry-retrain",
        acks="all",
        max_block_ms=int(PUBLISH_TIMEOUT_S * 1000),
    )
    try:
        future = producer.send(
            settings.topic("model-updates"), key=version.encode(), value=update.to_json()
        )
        future.get(timeout=PUBLISH_TIMEOUT_S)
    finally:
        producer.close(timeout=5)
    return update
