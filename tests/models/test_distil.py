"""Soft targets and distillation on tiny data, the shipped MiniLM standing in for the teacher:
the targets file round-trips, leaves held-out texts out, and a distilled run uses the KL term."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
import typer

from finsentry.text import normalise_text
from models.batching import pad
from models.cli import _pairs
from models.data import IGNORE, DataError, Example, clean
from models.distil import (
    DistilBatch,
    note_path,
    read_targets,
    target_texts,
    unlabelled_texts,
    write_targets,
)
from models.network import load_model
from models.registry import SHIPPED_DIR
from models.splits import Splits, build_splits
from models.train import STATE_DIR, TrainConfig, _limit, _loss, distil_grid, train

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def tiny() -> Splits:
    return _limit(build_splits(), 16)


@pytest.fixture(scope="module")
def targets_file(tiny: Splits, tmp_path_factory: pytest.TempPathFactory) -> Path:
    transformers.logging.set_verbosity_error()
    unlabelled = unlabelled_texts()
    picked = unlabelled[:8] + unlabelled[3000:3008] + unlabelled[-8:]
    path = tmp_path_factory.mktemp("targets") / "teacher.parquet"
    write_targets(SHIPPED_DIR, path, target_texts(tiny, picked))
    return path


def test_unlabelled_headlines_come_from_all_three_files() -> None:
    sources = {source for source, _ in unlabelled_texts()}
    assert sources == {"cnbc", "guardian", "benzinga"}


def test_targets_round_trip_with_a_source_note(tiny: Splits, targets_file: Path) -> None:
    targets = read_targets(targets_file)
    assert len(targets.texts) == len(set(targets.texts)) > 3 * 16
    assert {"phrasebank", "twitter_sentiment", "twitter_topic", "cnbc", "benzinga"} <= set(
        targets.sources
    )
    assert np.allclose(targets.sentiment.sum(1), 1, atol=1e-5)
    assert np.allclose(targets.topic.sum(1), 1, atol=1e-5)
    model, tokenizer, meta = load_model(SHIPPED_DIR)
    text = targets.texts[0]
    with torch.no_grad():
        ids = torch.tensor([tokenizer(text)["input_ids"]])
        sentiment, _ = model(ids, torch.ones_like(ids))
    expected = torch.softmax(sentiment / meta.temperatures["sentiment"], -1)[0].numpy()
    assert np.allclose(targets.sentiment[0], expected, atol=1e-4)
    assert targets.note["teacher_version"] == meta.version
    note = note_path(targets_file).read_text()
    assert targets.note["teacher_weights_sha256"] in note and meta.version in note


def test_no_validation_or_test_text_gets_a_target(tiny: Splits) -> None:
    held = next(iter(tiny.test["twitter_topic"]))
    chosen = target_texts(tiny, [("cnbc", held.text), ("cnbc", "A fresh headline")])
    keys = {normalise_text(text) for _, text in chosen}
    assert normalise_text(held.text) not in keys and "a fresh headline" in keys


def test_a_malformed_targets_file_is_refused(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "bad.parquet"
    pq.write_table(
        pa.table({"text": ["x"], "source": ["cnbc"], "sentiment": [[0.5, 0.5]], "topic": [[1.0]]}),
        path,
    )
    with pytest.raises(DataError, match="every sentiment row must hold 3 probabilities"):
        read_targets(path)
    with pytest.raises(DataError, match="no soft-targets file"):
        read_targets(tmp_path / "none.parquet")


def test_the_kl_term_is_zero_on_the_students_own_predictions_and_not_otherwise() -> None:
    model, tokenizer, _ = load_model(SHIPPED_DIR)
    texts = ["Profit rose 30%", "Shares plunge on fraud probe", "Fed holds rates"]
    ids = [tokenizer(clean(t))["input_ids"] for t in texts]
    input_ids, mask = pad(ids, tokenizer.pad_token_id)
    with torch.no_grad():
        sentiment, topic = model(input_ids, mask)
    own = DistilBatch(sentiment.softmax(-1), topic.softmax(-1), torch.ones(3, dtype=torch.bool))
    shuffled = DistilBatch(own.sentiment.roll(1, 0), own.topic.roll(1, 0), own.present)
    batch = [Example(t, IGNORE, IGNORE, "cnbc") for t in texts]
    cpu = torch.device("cpu")
    with torch.no_grad():
        same = _loss(model, batch, ids, tokenizer.pad_token_id, cpu, False, 0.0, own, 1.0, 1.0)
        other = _loss(
            model, batch, ids, tokenizer.pad_token_id, cpu, False, 0.0, shuffled, 1.0, 1.0
        )
    assert float(same) < 1e-4 and float(other) > 0.5


def test_a_distilled_run_trains_on_the_soft_targets(
    tiny: Splits, targets_file: Path, tmp_path: Path
) -> None:
    transformers.logging.set_verbosity_error()

    def run(out: Path, **changes: object) -> list[float]:
        config = TrainConfig(
            output_dir=out,
            epochs=1,
            max_steps=3,
            batch_size=16,
            learning_rate=3e-4,
            checkpoint_every=0,
            threads=1,
            **changes,  # type: ignore[arg-type]
        )
        return train(config, splits=tiny).losses

    # The same examples and batches (the file's unlabelled headlines included) in both runs:
    # only the KL term's weight differs, so the first step's losses differ only through it.
    gold = run(tmp_path / "gold", distil_from=targets_file, distil_weight=0.0)
    distilled = run(
        tmp_path / "distil", distil_from=targets_file, distil_weight=1.0, distil_temperature=1.0
    )
    assert len(gold) == len(distilled) == 3
    # Fresh heads: gold cross-entropy ~ ln 3 + ln 20 = 4.1; KL to a confident teacher less.
    assert gold[0] - distilled[0] > 0.3
    assert (tmp_path / "distil" / STATE_DIR / "state.pt").is_file()


def test_the_grid_keeps_the_student_best_on_validation(
    tiny: Splits, targets_file: Path, tmp_path: Path
) -> None:
    transformers.logging.set_verbosity_error()
    config = TrainConfig(
        output_dir=tmp_path,
        epochs=1,
        max_steps=2,
        batch_size=16,
        learning_rate=3e-4,
        checkpoint_every=0,
        threads=1,
        distil_from=targets_file,
        limit_per_dataset=16,
    )
    result = distil_grid(config, [(0.2, 1.0), (0.8, 4.0)])
    grid = json.loads((tmp_path / "metrics.json").read_text())["distil_grid"]
    scores = {(c["weight"], c["temperature"]): c["validation_score"] for c in grid["candidates"]}
    chosen = (grid["chosen"]["weight"], grid["chosen"]["temperature"])
    assert set(scores) == {(0.2, 1.0), (0.8, 4.0)} and scores[chosen] == max(scores.values())
    assert result.metrics["training_config"]["distil_weight"] == chosen[0]
    assert (tmp_path / "model.safetensors").is_file()
    assert "Chosen by mean validation accuracy among" in (tmp_path / "README.md").read_text()


def test_grid_pairs_are_parsed_and_checked() -> None:
    assert _pairs("0.5:2,0.7:4") == [(0.5, 2.0), (0.7, 4.0)]
    for bad in ("0.5", "1.5:2", "0.5:0", "a:b"):
        with pytest.raises(typer.BadParameter, match="--distil-grid"):
            _pairs(bad)
