"""The shipped checkpoint: present, complete, and as accurate as it claims on a fixed sample
of the test splits (catches a broken, missing or wrong checkpoint)."""

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
# Where v2 falls short of the issue's floors on this sample (see its model card). Twitter
# sentiment meets its floor on the sample (300 texts) but not on the full test split (0.859).
SHORT_OF_FLOOR = {
    "phrasebank": "0.814 on the full test split, floor 0.84",
}


def _sample_accuracy(engine: Engine, splits: Splits, name: str) -> float:
    examples = splits.test[name]
    sample = random.Random(11).sample(examples, min(SAMPLE, len(examples)))
    verdicts = engine.classify([e.text for e in sample])
    key = TASK_OF_SET[name]
    labels = SENTIMENTS if key == "sentiment" else TOPICS
    hits = sum(v[key] == labels[e.label] for v, e in zip(verdicts, sample, strict=True))
    return hits / len(sample)


@pytest.fixture(scope="module")
def sample_accuracy(engine: Engine, splits: Splits) -> dict[str, float]:
    return {name: _sample_accuracy(engine, splits, name) for name in FLOORS}


def test_checkpoint_files_and_label_maps() -> None:
    names = {p.name for p in SHIPPED_DIR.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "metrics.json"} <= names
    assert "README.md" in names
    meta = read_meta(SHIPPED_DIR)
    assert meta.version == SHIPPED_VERSION
    assert (tuple(meta.sentiment_labels), tuple(meta.topic_labels)) == (SENTIMENTS, TOPICS)
    config = json.loads((SHIPPED_DIR / "config.json").read_text())
    assert config["id2label_topic"]["19"] == "Stock Movement"
    assert (SHIPPED_DIR / "model.safetensors").stat().st_size < 60_000_000


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_sample_accuracy_matches_the_recorded_test_accuracy(
    sample_accuracy: dict[str, float], name: str
) -> None:
    recorded = json.loads((SHIPPED_DIR / "metrics.json").read_text())["test"][name]["accuracy"]
    assert sample_accuracy[name] >= recorded - 0.05, f"{name}: {sample_accuracy[name]:.3f}"


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=pytest.mark.xfail(reason=SHORT_OF_FLOOR[name], strict=True))
        if name in SHORT_OF_FLOOR
        else name
        for name in sorted(FLOORS)
    ],
)
def test_sample_accuracy_meets_the_issue_floor(
    sample_accuracy: dict[str, float], name: str
) -> None:
    assert sample_accuracy[name] >= FLOORS[name], f"{name}: {sample_accuracy[name]:.3f}"
