"""Reading the three labelled datasets in ``data/`` into one example type.

Each dataset labels one task only; the other task's label is ``IGNORE`` (-100), which the
cross-entropy loss skips, so mixed-task batches need no special casing.
"""

from __future__ import annotations

import csv
import hashlib
import html
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from finsentry.config import REPO_ROOT
from finsentry.schema import SENTIMENTS, TOPICS

DATA_DIR: Final = REPO_ROOT / "data"
IGNORE: Final = -100
SENTIMENT_ID: Final = {name: index for index, name in enumerate(SENTIMENTS)}
TOPIC_ID: Final = {name: index for index, name in enumerate(TOPICS)}
# Twitter Financial News sentiment ids: 0 Bearish, 1 Bullish, 2 Neutral.
TWITTER_SENTIMENT: Final = {0: "negative", 1: "positive", 2: "neutral"}
PHRASEBANK_LEVELS: Final = ("50Agree", "66Agree", "75Agree", "AllAgree")

_URL = re.compile(r"https?://\S+|www\.\S+", re.IGNORECASE)
_SPACE = re.compile(r"\s+")


class DataError(ValueError):
    """A dataset file is missing or malformed; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled text. ``agreement`` is PhraseBank's highest level, else ``None``."""

    text: str
    sentiment: int
    topic: int
    dataset: str
    agreement: str | None = None

    @property
    def task(self) -> str:
        return "topic" if self.topic != IGNORE else "sentiment"

    @property
    def label(self) -> int:
        return self.topic if self.topic != IGNORE else self.sentiment


def clean(text: str) -> str:
    """What the model reads: HTML entities decoded, URLs dropped, whitespace folded.

    Tweets end in t.co links that carry no meaning but cost tokens; training and inference
    both pass through here so the model sees the same kind of text in both.
    """
    return _SPACE.sub(" ", _URL.sub(" ", html.unescape(text))).strip()


def load_phrasebank(data_dir: Path = DATA_DIR) -> list[Example]:
    """The 50Agree pool, one example per sentence, tagged with its highest agreement level.

    Sentences that 50Agree lists with two different labels (a tie among annotators) are
    left out: they have no label to learn or to score against.
    """
    levels: dict[str, str] = {}
    for level in PHRASEBANK_LEVELS:
        for sentence, _ in _read_phrasebank_file(data_dir, level):
            levels[sentence] = level
    labels: dict[str, set[str]] = {}
    for sentence, label in _read_phrasebank_file(data_dir, "50Agree"):
        labels.setdefault(sentence, set()).add(label)
    return [
        Example(
            text=sentence,
            sentiment=SENTIMENT_ID[next(iter(found))],
            topic=IGNORE,
            dataset="phrasebank",
            agreement=levels[sentence],
        )
        for sentence, found in labels.items()
        if len(found) == 1
    ]


def _read_phrasebank_file(data_dir: Path, level: str) -> list[tuple[str, str]]:
    path = data_dir / "financial_phrasebank" / f"Sentences_{level}.txt"
    if not path.is_file():
        raise DataError(f"{path}: missing (copy it from the dataset's source, see SOURCE.md)")
    rows = []
    for number, line in enumerate(path.read_text(encoding="latin-1").splitlines(), 1):
        if not line.strip():
            continue
        sentence, sep, label = line.rpartition("@")
        if not sep or label not in SENTIMENT_ID:
            raise DataError(f"{path}:{number}: expected 'sentence@label', got {line[:80]!r}")
        rows.append((sentence.strip(), label))
    return rows


def load_twitter_sentiment(split: str, data_dir: Path = DATA_DIR) -> list[Example]:
    """``split`` is ``train`` or ``valid`` (the published validation file, our test set)."""
    rows = _read_csv(
        data_dir / "twitter_fin_sentiment" / f"sent_{split}.csv", len(TWITTER_SENTIMENT)
    )
    return [
        Example(text, SENTIMENT_ID[TWITTER_SENTIMENT[label]], IGNORE, "twitter_sentiment")
        for text, label in rows
    ]


def load_twitter_topic(split: str, data_dir: Path = DATA_DIR) -> list[Example]:
    folder = data_dir / "twitter_fin_topic"
    classes = (folder / "classes.txt").read_text(encoding="utf-8").splitlines()
    if tuple(name.strip() for name in classes) != TOPICS:
        raise DataError(f"{folder / 'classes.txt'}: does not match finsentry.schema.TOPICS")
    rows = _read_csv(folder / f"topic_{split}.csv", len(TOPICS))
    return [Example(text, IGNORE, label, "twitter_topic") for text, label in rows]


def _read_csv(path: Path, n_labels: int) -> list[tuple[str, int]]:
    if not path.is_file():
        raise DataError(f"{path}: missing (copy it from the dataset's source, see SOURCE.md)")
    rows = []
    with path.open(encoding="utf-8", newline="") as handle:
        for number, row in enumerate(csv.DictReader(handle), 2):
            try:
                label = int(row["label"])
                text = row["text"]
            except (KeyError, TypeError, ValueError) as exc:
                raise DataError(f"{path}:{number}: bad row {row!r}") from exc
            if not 0 <= label < n_labels or not text.strip():
                raise DataError(f"{path}:{number}: label {label} or empty text")
            rows.append((text, label))
    return rows


def data_fingerprint(data_dir: Path = DATA_DIR) -> str:
    """SHA-256 over the labelled files, so a model records exactly what it was trained on."""
    digest = hashlib.sha256()
    files = [
        *(f"financial_phrasebank/Sentences_{level}.txt" for level in PHRASEBANK_LEVELS),
        "twitter_fin_sentiment/sent_train.csv",
        "twitter_fin_sentiment/sent_valid.csv",
        "twitter_fin_topic/topic_train.csv",
        "twitter_fin_topic/topic_valid.csv",
        "twitter_fin_topic/classes.txt",
    ]
    for name in files:
        digest.update(name.encode())
        digest.update((data_dir / name).read_bytes())
    return digest.hexdigest()
