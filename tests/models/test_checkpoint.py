"""The shipped checkpoint: present, complete, loaded by default, and meeting its floors on a
fixed sample of the test splits (catches a broken, missing or wrong checkpoint)."""

from __future__ import annotations

import json
import random

import pytest

from finsentry.schema import SENTIMENTS, TOPICS
from models.card import FLOORS
from models.engine import Engine
from models.evaluate import TASK_OF_SET
from models.network import read_meta
from models.registry import SHIPPED_DIR, SHIPPED_VERSION
from models.splits import Splits

pytestmark = pytest.mark.model
SAMPLE = 300


def test_checkpoint_files_and_label_maps() -> None:
    names = {p.name for p in SHIPPED_DIR.iterdir()}
    assert {
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "metrics.json",
        "README.md",
    } <= names
    meta = read_meta(SHIPPED_DIR)
    assert meta.version == SHIPPED_VERSION
    assert (tuple(meta.sentiment_labels), tuple(meta.topic_labels)) == (SENTIMENTS, TOPICS)
    config = json.loads((SHIPPED_DIR / "config.json").read_text())
    assert config["id2label_topic"]["19"] == "Stock Movement"
    assert (SHIPPED_DIR / "model.safetensors").stat().st_size < 60_000_000


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_accuracy_on_a_fixed_test_sample_meets_the_floor(
    engine: Engine, splits: Splits, name: str
) -> None:
    examples = splits.test[name]
    sample = random.Random(11).sample(examples, min(SAMPLE, len(examples)))
    verdicts = engine.classify([e.text for e in sample])
    labels = SENTIMENTS if TASK_OF_SET[name] == "sentiment" else TOPICS
    key = "sentiment" if TASK_OF_SET[name] == "sentiment" else "topic"
    accuracy = sum(v[key] == labels[e.label] for v, e in zip(verdicts, sample, strict=True)) / len(
        sample
    )
    assert accuracy >= FLOORS[name], f"{name}: {accuracy:.3f} < floor {FLOORS[name]}"
