"""Multi-task fine-tuning: mixed-task batches, one loss per head, resumable.

Each batch mixes examples of both tasks (labels of the other task are ignored by the loss),
is length-bucketed and dynamically padded. Training state (weights, optimiser, schedule,
position in the epoch) is saved every ``checkpoint_every`` steps and at each epoch's end
under ``<output>/train_state``, so ``finsentry train --resume`` continues where a run stopped.
"""

from __future__ import annotations

import json
import platform
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from finsentry.text import normalise_text
from models.batching import bucketed_batches, pad
from models.calibrate import fit_temperature
from models.card import write_model_card
from models.data import IGNORE, Example, clean, data_fingerprint
from models.distil import DistilBatch, distil_loss, read_targets, targets_for
from models.evaluate import collect_logits, evaluate_sets
from models.files import ModelMeta, base_encoder_dir
from models.network import (
    MultiTaskModel,
    load_model,
    load_tokenizer,
    new_model,
    save_model,
)
from models.splits import SEED, Splits, build_splits

STATE_DIR = "train_state"
SELECTION_SETS = ("phrasebank", "twitter_sentiment", "twitter_topic")


@dataclass
class TrainConfig:
    """Everything that decides a training run; stored with the model it produces."""

    output_dir: Path
    base_model: Path | None = None
    # The encoder's name, recorded in the model's config and card.
    base_name: str = "all-MiniLM-L6-v2"
    # A finsentry model directory to continue from (its weights, both heads included);
    # None starts fresh heads on ``base_model``.
    init_from: Path | None = None
    version: str = "finsentry-minilm-v1"
    epochs: int = 2
    max_steps: int | None = None
    # Wall-clock budget for the training steps; when spent, the run finishes as if done.
    max_seconds: float | None = None
    batch_size: int = 32
    learning_rate: float = 1e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    max_length: int = 128
    seed: int = SEED
    patience: int = 2
    checkpoint_every: int = 200
    # Word embeddings frozen: 1.5x faster steps on CPU, and 27k examples cannot improve them.
    freeze_embeddings: bool = True
    device: str = "auto"
    # bf16 autocast on CUDA only; measured on this 2-core CPU it made training steps slower.
    bf16: bool = True
    threads: int | None = 2
    limit_per_dataset: int | None = None
    # Each PhraseBank training sentence appears this many times per epoch (the smallest set,
    # and the one furthest below its floor).
    phrasebank_repeat: int = 1
    # The same for Twitter sentiment, the other sentiment set short of its floor.
    twitter_sentiment_repeat: int = 1
    # Share of each target spread evenly over the other classes (0 = plain cross-entropy).
    # PhraseBank's 50Agree labels are majority votes of annotators who disagreed.
    label_smoothing: float = 0.0
    # False leaves Financial PhraseBank (CC BY-NC-SA 3.0) out of training, epoch selection
    # and calibration, so the weights owe it nothing; its test split is still reported.
    phrasebank: bool = True
    # A soft-targets file (models/distil.py): train on (1 - w) * gold + w * T^2 * KL at T.
    distil_from: Path | None = None
    distil_weight: float = 0.5
    distil_temperature: float = 2.0

    def as_json(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}


class TrainingInterrupted(RuntimeError):
    """``should_stop`` asked the run to end; the training state is saved for ``--resume``."""


@dataclass
class TrainResult:
    model_dir: Path
    metrics: dict[str, Any]
    losses: list[float] = field(default_factory=list)


def _limit(splits: Splits, limit: int | None) -> Splits:
    if limit is None:
        return splits
    train: list[Example] = []
    for name in ("phrasebank", "twitter_sentiment", "twitter_topic"):
        train.extend([e for e in splits.train if e.dataset == name][:limit])
    return Splits(
        train,
        {k: v[:limit] for k, v in splits.validation.items()},
        {k: v[:limit] for k, v in splits.test.items()},
        splits.leaks_removed,
    )


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _loss(
    model: MultiTaskModel,
    batch: list[Example],
    ids: list[list[int]],
    pad_id: int,
    device: torch.device,
    autocast: bool,
    label_smoothing: float = 0.0,
    distil: DistilBatch | None = None,
    distil_weight: float = 0.0,
    distil_temperature: float = 1.0,
) -> torch.Tensor:
    """The gold cross-entropy of both heads, mixed with the distillation term when
    ``distil`` holds the batch's soft targets."""
    input_ids, mask = pad(ids, pad_id)
    sentiment = torch.tensor([e.sentiment for e in batch], device=device)
    topic = torch.tensor([e.topic for e in batch], device=device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        sentiment_logits, topic_logits = model(input_ids.to(device), mask.to(device))
    loss = torch.zeros((), device=device)
    for logits, labels in ((sentiment_logits, sentiment), (topic_logits, topic)):
        if bool((labels != IGNORE).any()):
            loss = loss + F.cross_entropy(
                logits, labels, ignore_index=IGNORE, label_smoothing=label_smoothing
            )
    if distil is None:
        return loss
    soft = distil_loss((sentiment_logits, topic_logits), distil, distil_temperature)
    return (1.0 - distil_weight) * loss + distil_weight * soft


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    splits: Splits | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Run (or resume) training and write the final model directory to ``output_dir``.

    ``splits`` replaces the data sets of data/ (retraining adds analyst feedback);
    ``should_stop`` is polled between steps and raises TrainingInterrupted when true.
    """
    started = time.monotonic()
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    autocast = config.bf16 and device.type == "cuda" and torch.cuda.is_bf16_supported()
    base = config.base_model or base_encoder_dir()
    if splits is None:
        splits = _limit(build_splits(), config.limit_per_dataset)
    if not config.phrasebank:
        splits = without_phrasebank(splits)
    examples = _oversampled(
        splits.train,
        {
            "phrasebank": config.phrasebank_repeat,
            "twitter_sentiment": config.twitter_sentiment_repeat,
        },
    )
    soft: tuple[torch.Tensor, ...] | None = None
    if config.distil_from is not None:
        examples, soft = _with_soft_targets(examples, splits, config)
    tokenizer = load_tokenizer(config.init_from or base)
    train_ids = tokenizer(
        [clean(e.text) for e in examples], truncation=True, max_length=config.max_length
    )["input_ids"]
    lengths = [len(ids) for ids in train_ids]
    steps_per_epoch = -(-len(examples) // config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)

    model = _initial_model(config, base).to(device)
    if config.freeze_embeddings:
        model.encoder.get_input_embeddings().weight.requires_grad_(False)
    optimiser = _optimiser(model, config)
    scheduler = get_linear_schedule_with_warmup(  # type: ignore[no-untyped-call]
        optimiser, round(config.warmup_ratio * total_steps), total_steps
    )
    state_dir = config.output_dir / STATE_DIR
    state: dict[str, Any] = {
        "epoch": 0,
        "next_batch": 0,
        "step": 0,
        "best_score": -1.0,
        "best_epoch": -1,
        "bad_epochs": 0,
        "history": [],
        "losses": [],
        "seconds": 0.0,
    }
    if resume and (state_dir / "state.pt").is_file():
        saved = torch.load(state_dir / "state.pt", map_location=device, weights_only=True)
        model.load_state_dict(saved["model"])
        optimiser.load_state_dict(saved["optimiser"])
        scheduler.load_state_dict(saved["scheduler"])
        state = saved["progress"]
        print(f"resuming at epoch {state['epoch'] + 1}, batch {state['next_batch']}")
    elif resume:
        print(f"no training state in {state_dir}; starting from the beginning")

    def save_state() -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        state["seconds"] = elapsed_before + time.monotonic() - started
        payload = {
            "model": model.state_dict(),
            "optimiser": optimiser.state_dict(),
            "scheduler": scheduler.state_dict(),
            "progress": state,
        }
        torch.save(payload, state_dir / "state.pt.tmp")
        (state_dir / "state.pt.tmp").replace(state_dir / "state.pt")

    elapsed_before = float(state["seconds"])
    meta = ModelMeta(
        version=config.version, max_length=config.max_length, base_model=config.base_name
    )
    while state["epoch"] < config.epochs and state["step"] < total_steps:
        epoch = state["epoch"]
        batches = bucketed_batches(lengths, config.batch_size, random.Random(config.seed + epoch))
        torch.manual_seed(config.seed + epoch * 100_003 + state["next_batch"])
        model.train()
        bar = tqdm(
            total=len(batches),
            initial=state["next_batch"],
            desc=f"epoch {epoch + 1}",
            mininterval=5.0,
        )
        for index in range(state["next_batch"], len(batches)):
            if state["step"] >= total_steps:
                break
            if should_stop is not None and should_stop():
                save_state()
                raise TrainingInterrupted(f"stopped at step {state['step']} of {total_steps}")
            batch = [examples[i] for i in batches[index]]
            rows = torch.tensor(batches[index])
            loss = _loss(
                model,
                batch,
                [train_ids[i] for i in batches[index]],
                tokenizer.pad_token_id,
                device,
                autocast,
                config.label_smoothing,
                None if soft is None else DistilBatch(*(t[rows].to(device) for t in soft)),
                config.distil_weight,
                config.distil_temperature,
            )
            torch.autograd.backward(loss)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
            scheduler.step()
            optimiser.zero_grad(set_to_none=True)
            state["step"] += 1
            state["next_batch"] = index + 1
            state["losses"].append(round(float(loss.item()), 5))
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(state['losses'][-50:]):.4f}", refresh=False)
            if config.checkpoint_every and state["step"] % config.checkpoint_every == 0:
                save_state()
                _report_progress(state, total_steps)
            if _budget_spent(config, started, elapsed_before):
                total_steps = state["step"]  # ends this epoch and the run
                break
        bar.close()
        _end_epoch(model, tokenizer, meta, splits, state, config)
        save_state()
        if state["bad_epochs"] >= config.patience:
            print(f"early stop: no validation gain for {config.patience} epoch(s)")
            break
    return _finish(config, splits, state, elapsed_before + time.monotonic() - started, device)


def distil_grid(
    config: TrainConfig, pairs: list[tuple[float, float]], *, resume: bool = False
) -> TrainResult:
    """One student per (weight, temperature) under ``<output_dir>/grid/``; the one with the
    best validation score (the test split is never looked at) is copied to ``output_dir``,
    its metrics.json and card listing every candidate."""
    if config.distil_from is None or not pairs:
        raise ValueError("a distillation grid needs a soft-targets file and at least one pair")
    runs = []
    for weight, temperature in pairs:
        candidate = replace(
            config,
            output_dir=config.output_dir / "grid" / f"w{weight:g}-T{temperature:g}",
            distil_weight=weight,
            distil_temperature=temperature,
        )
        result = train(candidate, resume=resume)
        runs.append((selection_score(result.metrics["validation"]), weight, temperature, result))
    score, weight, temperature, best = max(runs, key=lambda run: run[0])
    for path in best.model_dir.iterdir():
        if path.is_file():
            shutil.copy2(path, config.output_dir / path.name)
    metrics = {
        **best.metrics,
        "distil_grid": {
            "candidates": [
                {"weight": w, "temperature": t, "validation_score": round(s, 4)}
                for s, w, t, _ in runs
            ],
            "chosen": {"weight": weight, "temperature": temperature},
        },
    }
    (config.output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_model_card(config.output_dir, metrics)
    print(f"distillation grid: weight {weight}, temperature {temperature} (validation {score:.4f})")
    return TrainResult(config.output_dir, metrics, best.losses)


def _with_soft_targets(
    examples: list[Example], splits: Splits, config: TrainConfig
) -> tuple[list[Example], tuple[torch.Tensor, ...]]:
    """The examples plus the targets file's texts that are not among them (unlabelled, soft
    targets only; none of a validation or test split), and each one's soft targets."""
    assert config.distil_from is not None
    if not 0.0 <= config.distil_weight <= 1.0 or config.distil_temperature <= 0:
        raise ValueError(
            f"distil weight must be in [0, 1] and temperature > 0, got "
            f"{config.distil_weight} and {config.distil_temperature}"
        )
    targets = read_targets(config.distil_from)
    held_out = {
        normalise_text(e.text)
        for part in (splits.validation, splits.test)
        for group in part.values()
        for e in group
    }
    known = {clean(e.text) for e in examples}
    extra = [
        Example(text, IGNORE, IGNORE, source)
        for text, source in zip(targets.texts, targets.sources, strict=True)
        if text not in known and normalise_text(text) not in held_out
    ]
    examples = examples + extra
    sentiment, topic, present = targets_for(examples, targets)
    print(
        f"distilling from {config.distil_from}: {int(present.sum())} of {len(examples)} "
        f"examples with soft targets ({len(extra)} unlabelled)"
    )
    return examples, tuple(torch.from_numpy(a) for a in (sentiment, topic, present))


def without_phrasebank(splits: Splits) -> Splits:
    """The splits with PhraseBank only in the test sets: nothing of it trains, selects an
    epoch or fits a temperature, so the weights carry none of its licence."""
    return Splits(
        [e for e in splits.train if e.dataset != "phrasebank"],
        {k: v for k, v in splits.validation.items() if not k.startswith("phrasebank")},
        splits.test,
        splits.leaks_removed,
    )


def _report_progress(state: dict[str, Any], total_steps: int) -> None:
    """One line per checkpoint, readable in a log file: the pace and the whole run's ETA."""
    step, seconds = state["step"], state["seconds"]
    pace = seconds / max(step, 1)
    left = pace * (total_steps - step)
    print(
        f"checkpoint at step {step}/{total_steps}: {pace:.2f} s/step, "
        f"{seconds / 3600:.2f} h so far, about {left / 3600:.2f} h to go",
        flush=True,
    )


def _oversampled(train: list[Example], repeats: dict[str, int]) -> list[Example]:
    """The training examples, those of each dataset named in ``repeats`` that many times."""
    extra: list[Example] = []
    for dataset, repeat in repeats.items():
        if repeat < 1:
            raise ValueError(f"{dataset} repeat must be >= 1, got {repeat}")
        extra.extend([e for e in train if e.dataset == dataset] * (repeat - 1))
    return train + extra


def _initial_model(config: TrainConfig, base: Path) -> MultiTaskModel:
    """Fresh heads on the base encoder, or a finsentry model's weights to continue from."""
    if config.init_from is None:
        return new_model(base)
    model, _, _ = load_model(config.init_from)
    return model.train()


def _budget_spent(config: TrainConfig, started: float, elapsed_before: float) -> bool:
    if config.max_seconds is None:
        return False
    return elapsed_before + time.monotonic() - started >= config.max_seconds


def _optimiser(model: MultiTaskModel, config: TrainConfig) -> torch.optim.Optimizer:
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (no_decay if parameter.ndim == 1 else decay).append(parameter)
    return torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=config.learning_rate,
    )


def _end_epoch(
    model: MultiTaskModel,
    tokenizer: Any,
    meta: ModelMeta,
    splits: Splits,
    state: dict[str, Any],
    config: TrainConfig,
) -> None:
    """Validate, keep the best weights so far, and count epochs without a gain."""
    results = evaluate_sets(model, tokenizer, meta, splits.validation)
    score = selection_score(results)
    accuracies = {name: round(r["accuracy"], 4) for name, r in results.items()}
    state["history"].append(
        {
            "epoch": state["epoch"] + 1,
            "step": state["step"],
            "validation_accuracy": accuracies,
            "score": round(score, 4),
        }
    )
    print(f"epoch {state['epoch'] + 1}: validation {json.dumps(accuracies)} score {score:.4f}")
    if score > state["best_score"]:
        state.update(best_score=score, best_epoch=state["epoch"] + 1, bad_epochs=0)
        save_model(
            model, tokenizer, meta, config.output_dir / STATE_DIR / "best", dtype=torch.float32
        )
    else:
        state["bad_epochs"] += 1
    state["epoch"] += 1
    state["next_batch"] = 0


def _finish(
    config: TrainConfig, splits: Splits, state: dict[str, Any], seconds: float, device: torch.device
) -> TrainResult:
    """Calibrate the best weights on validation, test them, write the model directory."""
    model, tokenizer, meta = load_model(config.output_dir / STATE_DIR / "best")
    record = {
        "training": {
            "seconds": round(seconds, 1),
            "hardware": _hardware(device),
            "steps": state["step"],
            "epochs_run": state["epoch"],
            "best_epoch": state["best_epoch"],
            "history": state["history"],
        },
        "training_config": config.as_json(),
    }
    metrics = write_calibrated_model(model, tokenizer, meta, splits, config.output_dir, record)
    return TrainResult(config.output_dir, metrics, list(state["losses"]))


def write_calibrated_model(
    model: MultiTaskModel,
    tokenizer: Any,
    meta: ModelMeta,
    splits: Splits,
    output_dir: Path,
    record: dict[str, Any],
) -> dict[str, Any]:
    """Fit the temperatures on validation, test once, and write the finished model directory.

    ``record`` says how the weights came about (``training``, ``training_config``, and for
    an averaged model ``averaging``); it goes into metrics.json and the model card.
    """
    for task, (logits, labels) in collect_logits(model, tokenizer, meta, splits.validation).items():
        meta.temperatures[task] = round(fit_temperature(logits, labels), 4)
    metrics = {
        "version": meta.version,
        "test": evaluate_sets(model, tokenizer, meta, splits.test),
        "validation": evaluate_sets(model, tokenizer, meta, splits.validation),
        "temperatures": meta.temperatures,
        "splits": splits.counts(),
        "data_fingerprint": data_fingerprint(),
        **record,
    }
    save_model(model, tokenizer, meta, output_dir)
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_model_card(output_dir, metrics)
    return metrics


def selection_score(results: dict[str, dict[str, Any]]) -> float:
    """Mean validation accuracy over SELECTION_SETS (those present: a run without PhraseBank
    has no PhraseBank validation): what picks an epoch or a mixing weight."""
    return float(np.mean([results[name]["accuracy"] for name in SELECTION_SETS if name in results]))


def _hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"
