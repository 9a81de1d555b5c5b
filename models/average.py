"""Weight averaging ("model soup") of two fine-tuned checkpoints, the weight chosen on validation.

Two fine-tunes that share a starting point (v2 continued from v1, or a run continued from
v2) sit in one basin of the loss, so the element-wise mean of their weights is itself a
good model and often better than either (Wortsman et al., 2022). Each candidate weight is
scored on the validation splits only, with the same mean accuracy that picks a training
epoch; the chosen mix is then calibrated, tested once and written like a trained model.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from models.evaluate import evaluate_sets
from models.files import ModelDirError, ModelMeta
from models.network import load_model
from models.splits import SEED, Splits, build_splits
from models.train import selection_score, write_calibrated_model


@dataclass
class AverageResult:
    model_dir: Path
    weight: float
    metrics: dict[str, Any]


def mix_states(
    first: Mapping[str, torch.Tensor], second: Mapping[str, torch.Tensor], weight: float
) -> dict[str, torch.Tensor]:
    """``weight * first + (1 - weight) * second`` for every floating-point tensor.

    Integer buffers (position ids) are taken from ``first``; the two states must name the
    same tensors with the same shapes.
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be in [0, 1], got {weight}")
    if first.keys() != second.keys():
        differ = sorted(first.keys() ^ second.keys())
        raise ModelDirError(f"the two models' weights differ in names: {differ[:5]}")
    mixed = {}
    for name, tensor in first.items():
        other = second[name]
        if tensor.shape != other.shape:
            raise ModelDirError(f"{name}: shape {tuple(tensor.shape)} vs {tuple(other.shape)}")
        mixed[name] = (
            weight * tensor + (1.0 - weight) * other if tensor.is_floating_point() else tensor
        )
    return mixed


def average_models(
    first_dir: Path,
    second_dir: Path,
    weights: Sequence[float],
    output_dir: Path,
    version: str,
    *,
    splits: Splits | None = None,
) -> AverageResult:
    """Try each weight of ``first_dir`` (the rest is ``second_dir``) on validation, keep the
    best (the earliest listed on a tie), and write it to ``output_dir`` as ``version``."""
    if not weights:
        raise ValueError("give at least one weight")
    started = time.monotonic()
    first, tokenizer, first_meta = load_model(first_dir)
    second, _, second_meta = load_model(second_dir)
    if first_meta.max_length != second_meta.max_length:
        raise ModelDirError(
            f"max length {first_meta.max_length} ({first_dir}) vs "
            f"{second_meta.max_length} ({second_dir})"
        )
    if splits is None:
        splits = build_splits()
    first_state = {k: v.clone() for k, v in first.state_dict().items()}
    second_state = second.state_dict()
    meta = ModelMeta(version=version, max_length=first_meta.max_length)
    scores: dict[float, float] = {}
    validation: dict[float, dict[str, float]] = {}
    for weight in tqdm(weights, desc="weights"):
        first.load_state_dict(mix_states(first_state, second_state, weight))
        results = evaluate_sets(first, tokenizer, meta, splits.validation)
        scores[weight] = round(selection_score(results), 4)
        validation[weight] = {name: round(r["accuracy"], 4) for name, r in results.items()}
        print(f"weight {weight}: validation {validation[weight]} score {scores[weight]:.4f}")
    chosen = max(weights, key=lambda w: scores[w])
    first.load_state_dict(mix_states(first_state, second_state, chosen))
    record = {
        "averaging": {
            "sources": [
                _source(first_dir, first_meta, chosen),
                _source(second_dir, second_meta, round(1.0 - chosen, 6)),
            ],
            "candidates": [
                {"weight": w, "validation_accuracy": validation[w], "score": scores[w]}
                for w in weights
            ],
            "chosen_weight": chosen,
            "seconds": round(time.monotonic() - started, 1),
        },
        "training_config": {"max_length": meta.max_length, "seed": SEED},
    }
    metrics = write_calibrated_model(first, tokenizer, meta, splits, output_dir, record)
    return AverageResult(output_dir, chosen, metrics)


def _source(model_dir: Path, meta: ModelMeta, weight: float) -> dict[str, Any]:
    """One averaged model: version, path, weight, and how it was trained (its metrics.json),
    so the card of the mix still says where its weights came from."""
    path = model_dir / "metrics.json"
    trained = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    return {
        "version": meta.version,
        "path": str(model_dir),
        "weight": weight,
        "training": {k: v for k, v in trained.get("training", {}).items() if k != "history"},
        "training_config": trained.get("training_config", {}),
    }
