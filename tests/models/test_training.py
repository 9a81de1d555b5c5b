"""Training smoke runs on a tiny subset: the loss falls, saving and loading change nothing,
and an interrupted run resumes where it stopped."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

from models.card import write_model_card
from models.data import IGNORE, SENTIMENT_ID, Example, clean
from models.evaluate import predict_logits
from models.network import load_model, load_tokenizer, save_model
from models.registry import SHIPPED_DIR
from models.splits import Splits
from models.train import (
    STATE_DIR,
    TrainConfig,
    TrainResult,
    _loss,
    _oversampled,
    selection_score,
    train,
    without_phrasebank,
)

pytestmark = pytest.mark.unit
TEXTS = [
    "Operating profit rose to EUR 13.1 mn",
    "$AAPL falls after guidance cut",
    "Fed holds rates",
]


def _config(out: Path, **changes: object) -> TrainConfig:
    settings = dict(
        output_dir=out,
        epochs=2,
        batch_size=16,
        learning_rate=3e-4,
        limit_per_dataset=48,
        checkpoint_every=4,
        threads=1,
    )
    settings.update(changes)
    return TrainConfig(**settings)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    transformers.logging.set_verbosity_error()
    return train(_config(tmp_path_factory.mktemp("smoke")))


def test_loss_falls(smoke: TrainResult) -> None:
    losses = smoke.losses
    assert len(losses) == 18
    assert np.mean(losses[-4:]) < np.mean(losses[:4]) - 0.3


def test_model_directory_is_complete(smoke: TrainResult) -> None:
    names = {p.name for p in smoke.model_dir.iterdir()}
    assert {
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "metrics.json",
        "README.md",
    } <= names
    assert set(smoke.metrics["test"]) == {
        "phrasebank",
        "phrasebank_allagree",
        "twitter_sentiment",
        "twitter_topic",
    }
    assert smoke.metrics["temperatures"]["sentiment"] > 0


def test_save_then_load_gives_identical_outputs(smoke: TrainResult, tmp_path: Path) -> None:
    model, tokenizer, meta = load_model(smoke.model_dir)
    save_model(model, tokenizer, meta, tmp_path, dtype=torch.float32)
    again, tokenizer_again, _ = load_model(tmp_path)
    first = predict_logits(model, tokenizer, TEXTS, meta.max_length)
    second = predict_logits(again, tokenizer_again, TEXTS, meta.max_length)
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    assert (
        tokenizer(clean(TEXTS[0]))["input_ids"]
        == load_tokenizer(tmp_path)(clean(TEXTS[0]))["input_ids"]
    )


def test_resume_continues_an_interrupted_run(tmp_path: Path) -> None:
    transformers.logging.set_verbosity_error()
    train(_config(tmp_path, epochs=1))
    state = torch.load(tmp_path / STATE_DIR / "state.pt", weights_only=True)["progress"]
    assert state["epoch"] == 1 and state["step"] == 9
    resumed = train(_config(tmp_path, epochs=2), resume=True)
    assert resumed.metrics["training"]["steps"] == 18
    assert [h["epoch"] for h in resumed.metrics["training"]["history"]] == [1, 2]


class _RunsOnLoad:
    """Pickles to a call of ``Path.touch``: what a planted state file could run instead."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return Path.touch, (self.marker,)


def test_resume_refuses_a_state_file_that_would_run_code(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    (tmp_path / STATE_DIR).mkdir(parents=True)
    torch.save({"progress": _RunsOnLoad(marker)}, tmp_path / STATE_DIR / "state.pt")
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        train(_config(tmp_path, epochs=1), resume=True)
    assert not marker.exists()


def test_label_smoothing_raises_the_loss_of_confident_right_answers() -> None:
    model, tokenizer, _ = load_model(SHIPPED_DIR)
    batch = [
        Example(TEXTS[0], SENTIMENT_ID["positive"], IGNORE, "phrasebank"),
        Example(TEXTS[1], SENTIMENT_ID["negative"], IGNORE, "twitter_sentiment"),
    ]
    ids = tokenizer([clean(e.text) for e in batch])["input_ids"]
    cpu = torch.device("cpu")
    with torch.no_grad():
        plain = _loss(model, batch, ids, tokenizer.pad_token_id, cpu, False)
        smoothed = _loss(model, batch, ids, tokenizer.pad_token_id, cpu, False, 0.1)
    assert float(plain) < 0.2 and float(smoothed) > float(plain) + 0.05


def test_oversampling_repeats_only_the_named_datasets() -> None:
    train = [
        Example("a", 0, IGNORE, "phrasebank"),
        Example("b", 1, IGNORE, "twitter_sentiment"),
        Example("c", IGNORE, 3, "twitter_topic"),
    ]
    seen = _oversampled(train, {"phrasebank": 3, "twitter_sentiment": 2})
    assert [e.text for e in seen] == ["a", "b", "c", "a", "a", "b"]
    with pytest.raises(ValueError, match="twitter_sentiment repeat must be >= 1"):
        _oversampled(train, {"twitter_sentiment": 0})


def test_without_phrasebank_keeps_it_to_the_test_report(splits: Splits) -> None:
    free = without_phrasebank(splits)
    assert {e.dataset for e in free.train} == {"twitter_sentiment", "twitter_topic"}
    assert set(free.validation) == {"twitter_sentiment", "twitter_topic"}
    assert free.test == splits.test
    results = {"twitter_sentiment": {"accuracy": 0.8}, "twitter_topic": {"accuracy": 0.9}}
    assert selection_score(results) == pytest.approx(0.85)


def test_the_card_says_what_phrasebank_means_for_a_commercial_user(smoke: TrainResult) -> None:
    card = (smoke.model_dir / "README.md").read_text()
    assert "CC BY-NC-SA 3.0" in card and "finsentry train --no-phrasebank" in card
    metrics = {**smoke.metrics}
    metrics["training_config"] = {**metrics["training_config"], "phrasebank": False}
    write_model_card(smoke.model_dir, metrics)
    assert "do not carry its non-commercial licence" in (smoke.model_dir / "README.md").read_text()
