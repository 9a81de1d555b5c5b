"""What a retraining run learns from and is judged on.

Training data: the base training split (models/splits.py), optionally the first N examples
per dataset, plus analyst feedback from the store. Feedback takes precedence: a base
example whose normalised text is a corrected post's text is dropped, and the post is
trained on with the analyst's labels (the latest correction per post and field wins).

Evaluation: the fixed test splits, or a fixed seeded sample of each (``retrain_eval_sample``)
so a gate on a small machine stays quick; the same sample for the candidate and the
current model, and the same one in every run with the same size.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from finsentry.schema import SENTIMENTS, TOPICS
from finsentry.text import normalise_text
from models.data import IGNORE, SENTIMENT_ID, TOPIC_ID, Example, data_fingerprint
from models.splits import SEED, Splits

FEEDBACK_DATASET = "feedback"


@dataclass(frozen=True)
class FeedbackSet:
    """One example per corrected post, and the corrections that could not be used (why)."""

    examples: list[Example]
    problems: list[str] = field(default_factory=list)


def feedback_examples(
    rows: Sequence[Mapping[str, Any]], texts: Mapping[str, str | None]
) -> FeedbackSet:
    """``rows`` as Store.feedback_labels() returns them (oldest first); ``texts`` by post id."""
    latest: dict[str, dict[str, str]] = {}
    for row in rows:
        latest.setdefault(str(row["post_id"]), {})[str(row["field"])] = str(row["new_label"])
    examples, problems = [], []
    for post_id, labels in latest.items():
        text = texts.get(post_id)
        if not text or not text.strip():
            problems.append(f"post {post_id!r}: no text in the posts table")
            continue
        sentiment, topic = labels.get("sentiment"), labels.get("topic")
        if sentiment is not None and sentiment not in SENTIMENT_ID:
            problems.append(f"post {post_id!r}: sentiment {sentiment!r} is not one of {SENTIMENTS}")
            continue
        if topic is not None and topic not in TOPIC_ID:
            problems.append(f"post {post_id!r}: topic {topic!r} is not one of the {len(TOPICS)}")
            continue
        examples.append(
            Example(
                text=text,
                sentiment=IGNORE if sentiment is None else SENTIMENT_ID[sentiment],
                topic=IGNORE if topic is None else TOPIC_ID[topic],
                dataset=FEEDBACK_DATASET,
            )
        )
    return FeedbackSet(examples, problems)


def sample_sets(
    sets: Mapping[str, list[Example]], size: int | None, seed: int = SEED
) -> dict[str, list[Example]]:
    """A fixed seeded sample of ``size`` per set (all of a smaller set; everything if None)."""
    if size is None:
        return {name: list(items) for name, items in sets.items()}
    sampled = {}
    for name, items in sets.items():
        rng = random.Random(f"{seed}:{name}")
        keep = sorted(rng.sample(range(len(items)), min(size, len(items))))
        sampled[name] = [items[i] for i in keep]
    return sampled


@dataclass(frozen=True)
class RetrainData:
    splits: Splits
    fingerprint: str
    counts: dict[str, int]


def retrain_data(
    base: Splits,
    feedback: Sequence[Example],
    *,
    train_limit: int | None,
    feedback_repeat: int,
    eval_sample: int | None,
) -> RetrainData:
    """Base training examples (``train_limit`` per dataset) with feedback taking precedence."""
    corrected = {normalise_text(example.text) for example in feedback}
    taken: dict[str, int] = {}
    kept, replaced = [], 0
    for example in base.train:
        if train_limit is not None and taken.get(example.dataset, 0) >= train_limit:
            continue
        taken[example.dataset] = taken.get(example.dataset, 0) + 1
        if normalise_text(example.text) in corrected:
            replaced += 1
            continue
        kept.append(example)
    train = kept + [example for example in feedback for _ in range(feedback_repeat)]
    random.Random(SEED).shuffle(train)
    test = sample_sets(base.test, eval_sample)
    tested = {normalise_text(e.text) for items in test.values() for e in items}
    counts = {
        "base_examples": len(kept),
        "base_replaced_by_feedback": replaced,
        "feedback_examples": len(feedback),
        "feedback_in_evaluation": sum(normalise_text(e.text) in tested for e in feedback),
        "train_examples": len(train),
        **{f"test_{name}": len(items) for name, items in test.items()},
    }
    splits = Splits(train, sample_sets(base.validation, eval_sample), test, base.leaks_removed)
    return RetrainData(splits, _fingerprint(feedback, train_limit, feedback_repeat), counts)


def _fingerprint(feedback: Sequence[Example], train_limit: int | None, repeat: int) -> str:
    """SHA-256 over the base data files, the subset rule and every feedback example."""
    digest = hashlib.sha256(data_fingerprint().encode())
    digest.update(json.dumps({"train_limit": train_limit, "repeat": repeat, "seed": SEED}).encode())
    for example in sorted(feedback, key=lambda e: (e.text, e.sentiment, e.topic)):
        digest.update(json.dumps([example.text, example.sentiment, example.topic]).encode())
    return digest.hexdigest()
