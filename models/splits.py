"""The fixed, seeded train / validation / test splits (documented in data/SPLITS.md).

- PhraseBank: the 50Agree pool is split by unique normalised sentence, stratified by label,
  80 / 10 / 10, so that no test sentence is in training at any agreement level. The
  AllAgree test set is the subset of the test split whose sentences are in AllAgree.
- Twitter sentiment and topic: validation is 10 % of the published train file, stratified;
  the published ``valid`` files are the test sets.
- Leak removal: validation rows whose normalised text also occurs in the training split of
  any dataset are removed, and so are test rows whose normalised text occurs in training or
  validation (the topic set has ~680 such near-duplicates).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from finsentry.text import normalise_text
from models.data import (
    DATA_DIR,
    Example,
    load_phrasebank,
    load_twitter_sentiment,
    load_twitter_topic,
)

SEED: Final = 20240611
VALIDATION_SHARE: Final = 0.1
TEST_SHARE: Final = 0.1
# Evaluation sets by name; "phrasebank_allagree" is a subset of "phrasebank".
EVAL_SETS: Final = ("phrasebank", "phrasebank_allagree", "twitter_sentiment", "twitter_topic")


@dataclass(frozen=True)
class Splits:
    train: list[Example]
    validation: dict[str, list[Example]]
    test: dict[str, list[Example]]
    leaks_removed: dict[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, dict[str, int]]:
        """Rows per dataset and split, for the model card and the splits note."""
        train: dict[str, int] = defaultdict(int)
        for example in self.train:
            train[example.dataset] += 1
        return {
            name: {
                "train": train.get(name.removesuffix("_allagree"), 0),
                "validation": len(self.validation[name]),
                "test": len(self.test[name]),
                "leaks_removed": self.leaks_removed.get(name, 0),
            }
            for name in EVAL_SETS
        }


def stratified_split(
    items: Sequence[Example], shares: Sequence[float], seed: int
) -> list[list[Example]]:
    """Split into len(shares)+1 parts; part i gets shares[i] of each label, the last the rest."""
    by_label: dict[tuple[str, int], list[Example]] = defaultdict(list)
    for item in items:
        by_label[(item.task, item.label)].append(item)
    parts: list[list[Example]] = [[] for _ in range(len(shares) + 1)]
    rng = random.Random(seed)
    for key in sorted(by_label):
        group = by_label[key]
        rng.shuffle(group)
        start = 0
        for index, share in enumerate(shares):
            size = round(len(group) * share)
            parts[index].extend(group[start : start + size])
            start += size
        parts[-1].extend(group[start:])
    for part in parts:
        rng.shuffle(part)
    return parts


def _unique_by_text(items: Sequence[Example]) -> list[Example]:
    """One example per normalised text, so near-duplicates cannot straddle splits."""
    seen: dict[str, Example] = {}
    for item in items:
        seen.setdefault(normalise_text(item.text), item)
    return list(seen.values())


def _without(items: list[Example], seen: set[str]) -> tuple[list[Example], int]:
    kept = [item for item in items if normalise_text(item.text) not in seen]
    return kept, len(items) - len(kept)


def build_splits(data_dir: Path = DATA_DIR, seed: int = SEED) -> Splits:
    """Read ``data_dir`` and return the splits; the same files and seed give the same splits."""
    pb_test, pb_val, pb_train = stratified_split(
        _unique_by_text(load_phrasebank(data_dir)), [TEST_SHARE, VALIDATION_SHARE], seed
    )
    sources: dict[str, Callable[[str, Path], list[Example]]] = {
        "twitter_sentiment": load_twitter_sentiment,
        "twitter_topic": load_twitter_topic,
    }
    train = list(pb_train)
    validation = {"phrasebank": pb_val}
    test = {"phrasebank": pb_test}
    for name, load in sources.items():
        val, rest = stratified_split(load("train", data_dir), [VALIDATION_SHARE], seed)
        train.extend(rest)
        validation[name] = val
        test[name] = load("valid", data_dir)
    seen = {normalise_text(example.text) for example in train}
    removed: dict[str, int] = {}
    for name in list(test):
        validation[name], _ = _without(validation[name], seen)
    seen |= {normalise_text(example.text) for part in validation.values() for example in part}
    for name in list(test):
        test[name], removed[name] = _without(test[name], seen)
    validation["phrasebank_allagree"] = _allagree(validation["phrasebank"])
    test["phrasebank_allagree"] = _allagree(test["phrasebank"])
    rng = random.Random(seed)
    rng.shuffle(train)
    return Splits(train, validation, test, removed)


def _allagree(items: list[Example]) -> list[Example]:
    return [item for item in items if item.agreement == "AllAgree"]
