"""Teacher soft targets, and the loss that distils them into a student.

``write_targets`` scores texts with a teacher model directory and stores its
temperature-calibrated probabilities for both heads: every training text (the topic set's
tweets get sentiment targets, the sentiment sets' texts topic targets) and the unlabelled
headlines in ``data/`` (CNBC, Guardian, Benzinga), minus any text that is in a validation or
test split. The file (Parquet: ``text``, ``source``, ``sentiment``, ``topic``) and its
``<name>.SOURCE.md`` note (teacher version, weights hash, date) are enough to retrain the
student on a fresh clone without the teacher's weights.

The student learns from ``(1 - weight) * gold + weight * T^2 * KL(teacher_T || student_T)``
per head (Hinton et al., 2015): the stored probabilities re-tempered by T (``p^(1/T)``,
renormalised, which equals the teacher's logits divided by T) against the student's
log-softmax at T; T^2 keeps the gradient scale of the soft term independent of T.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from finsentry.schema import SENTIMENTS, TOPICS
from finsentry.text import normalise_text
from models.data import DATA_DIR, DataError, clean
from models.files import WEIGHTS_FILE
from models.splits import Splits

if TYPE_CHECKING:
    import torch

# Unlabelled in-domain text: (source, file under data/, text column).
UNLABELLED: Final = (
    ("cnbc", "fin_news_headlines/cnbc_headlines.csv", "Headlines"),
    ("guardian", "fin_news_headlines/guardian_headlines.csv", "Headlines"),
    ("benzinga", "benzinga_headlines_sample/analyst_ratings_processed_head.csv", "title"),
)
FLOOR: Final = 1e-8  # smallest probability kept, so log p stays finite


@dataclass(frozen=True)
class SoftTargets:
    """Cleaned texts, where each came from, and the teacher's probabilities per head."""

    texts: list[str]
    sources: list[str]
    sentiment: np.ndarray  # (n, len(SENTIMENTS)), rows sum to 1
    topic: np.ndarray  # (n, len(TOPICS))
    note: dict[str, str]


def unlabelled_texts(data_dir: Path = DATA_DIR) -> list[tuple[str, str]]:
    """(source, text) of every non-empty headline of the UNLABELLED files."""
    rows: list[tuple[str, str]] = []
    for source, name, column in UNLABELLED:
        path = data_dir / name
        if not path.is_file():
            raise DataError(f"{path}: missing (see its folder's SOURCE.md)")
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or column not in reader.fieldnames:
                raise DataError(f"{path}: no column {column!r}")
            rows.extend((source, row[column]) for row in reader if (row[column] or "").strip())
    return rows


def target_texts(
    splits: Splits, unlabelled: list[tuple[str, str]] | None = None
) -> list[tuple[str, str]]:
    """(source, cleaned text) to score: the training texts, then the unlabelled ones; one per
    normalised text, none that a validation or test split holds."""
    held_out = {
        normalise_text(e.text)
        for part in (splits.validation, splits.test)
        for examples in part.values()
        for e in examples
    }
    chosen: dict[str, tuple[str, str]] = {}
    labelled = [(e.dataset, e.text) for e in splits.train]
    for source, text in labelled + (unlabelled_texts() if unlabelled is None else unlabelled):
        key = normalise_text(text)
        if key and key not in held_out and key not in chosen and clean(text):
            chosen[key] = (source, clean(text))
    return list(chosen.values())


def write_targets(
    teacher_dir: Path, output: Path, texts: list[tuple[str, str]], batch_size: int = 64
) -> SoftTargets:
    """Score ``texts`` with the teacher; write the Parquet file and its SOURCE note."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from models.calibrate import softmax
    from models.evaluate import predict_logits
    from models.network import load_model

    model, tokenizer, meta = load_model(teacher_dir)
    plain = [text for _, text in texts]
    sentiment_logits, topic_logits = predict_logits(
        model, tokenizer, plain, meta.max_length, batch_size
    )
    sentiment = softmax(sentiment_logits, meta.temperatures["sentiment"]).astype(np.float32)
    topic = softmax(topic_logits, meta.temperatures["topic"]).astype(np.float32)
    note = {
        "teacher_version": meta.version,
        "teacher_base": meta.base_model,
        "teacher_weights_sha256": _sha256(teacher_dir / WEIGHTS_FILE),
        "temperatures": f"sentiment {meta.temperatures['sentiment']}, "
        f"topic {meta.temperatures['topic']}",
        "written": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "rows": str(len(plain)),
    }
    table = pa.table(
        {
            "text": plain,
            "source": [source for source, _ in texts],
            "sentiment": pa.array(list(sentiment), pa.list_(pa.float32())),
            "topic": pa.array(list(topic), pa.list_(pa.float32())),
        }
    ).replace_schema_metadata({f"finsentry.{k}": v for k, v in note.items()})
    output.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, output, compression="zstd")
    _write_note(output, note, [source for source, _ in texts])
    return SoftTargets(plain, [s for s, _ in texts], sentiment, topic, note)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def note_path(output: Path) -> Path:
    return output.with_name(f"{output.stem}.SOURCE.md")


def _write_note(output: Path, note: dict[str, str], sources: list[str]) -> None:
    counts = {name: sources.count(name) for name in dict.fromkeys(sources)}
    rows = "\n".join(f"| {name} | {count} |" for name, count in counts.items())
    note_path(output).write_text(
        f"""# {output.name}: teacher soft targets

The teacher's temperature-calibrated probabilities for both heads (sentiment:
{", ".join(SENTIMENTS)}; topic: the {len(TOPICS)} topics of finsentry.schema.TOPICS, in order)
over the training texts and the unlabelled headlines of data/, minus every text of a
validation or test split. Written by `finsentry models soft-targets`; read by
`finsentry train --distil-from {output.name}`.

- teacher: `{note["teacher_version"]}` on {note["teacher_base"]}
- teacher weights SHA-256: `{note["teacher_weights_sha256"]}`
- calibration temperatures: {note["temperatures"]}
- written: {note["written"]}

| source | rows |
| --- | ---: |
{rows}

Licences: the texts are those of data/ (see each folder's SOURCE.md). A teacher trained on
Financial PhraseBank makes these targets a derivative of it (CC BY-NC-SA 3.0).
""",
        encoding="utf-8",
    )


def read_targets(path: Path) -> SoftTargets:
    """Load a soft-targets file, checking its columns, shapes and that rows are distributions."""
    import pyarrow.parquet as pq

    if not path.is_file():
        raise DataError(f"{path}: no soft-targets file (write one: finsentry models soft-targets)")
    table = pq.read_table(path)
    missing = {"text", "source", "sentiment", "topic"} - set(table.column_names)
    if missing:
        raise DataError(f"{path}: missing column(s) {sorted(missing)}")
    arrays = {}
    for head, width in (("sentiment", len(SENTIMENTS)), ("topic", len(TOPICS))):
        values = table.column(head).to_pylist()
        if any(v is None or len(v) != width for v in values):
            raise DataError(f"{path}: every {head} row must hold {width} probabilities")
        array = np.asarray(values, dtype=np.float32).reshape(len(values), width)
        bad = np.flatnonzero(np.abs(array.sum(axis=1) - 1.0) > 1e-3)
        if len(bad):
            raise DataError(f"{path}: {head} row {int(bad[0])} does not sum to 1")
        arrays[head] = array
    metadata = table.schema.metadata or {}
    note = {
        k.decode().removeprefix("finsentry."): v.decode()
        for k, v in metadata.items()
        if k.startswith(b"finsentry.")
    }
    return SoftTargets(
        [str(t) for t in table.column("text").to_pylist()],
        [str(s) for s in table.column("source").to_pylist()],
        arrays["sentiment"],
        arrays["topic"],
        note,
    )


@dataclass(frozen=True)
class DistilBatch:
    """One batch's soft targets: probabilities per head and which rows have them."""

    sentiment: torch.Tensor
    topic: torch.Tensor
    present: torch.Tensor  # bool, (batch,)


def distil_loss(
    logits: tuple[torch.Tensor, torch.Tensor], targets: DistilBatch, temperature: float
) -> torch.Tensor:
    """T^2 * KL(teacher_T || student_T), summed over the two heads, mean over rows with targets."""
    import torch
    from torch.nn import functional as F

    present = targets.present
    if not bool(present.any()):
        return torch.zeros((), device=present.device)
    total = torch.zeros((), device=present.device)
    for student, teacher in zip(logits, (targets.sentiment, targets.topic), strict=True):
        soft = F.softmax(torch.log(teacher[present].clamp(min=FLOOR)) / temperature, dim=-1)
        log_student = F.log_softmax(student[present].float() / temperature, dim=-1)
        total = total + F.kl_div(log_student, soft, reduction="batchmean")
    return total * temperature**2


def targets_for(examples: list[Any], targets: SoftTargets) -> tuple[np.ndarray, ...]:
    """Per example, its soft targets (zeros where none) and whether it has them."""
    index = {text: row for row, text in enumerate(targets.texts)}
    rows = [index.get(clean(e.text), -1) for e in examples]
    present = np.array([row >= 0 for row in rows], dtype=bool)
    sentiment = np.zeros((len(examples), len(SENTIMENTS)), np.float32)
    topic = np.zeros((len(examples), len(TOPICS)), np.float32)
    found = np.flatnonzero(present)
    picked = np.array([rows[i] for i in found], dtype=np.int64)
    sentiment[found], topic[found] = targets.sentiment[picked], targets.topic[picked]
    return sentiment, topic, present
