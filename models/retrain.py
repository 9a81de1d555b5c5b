"""One retraining run: data, fine-tune, gate, record, and on promotion tell the workers.

1. Assemble the training data (models/retrain_data.py): base splits plus analyst feedback.
2. Fine-tune a candidate starting from the *current* model (not from the base encoder): a
   retrain refreshes a model that is already good, so a small budget and a low learning
   rate suffice, and a run cut short by its budget still starts from a served-quality model.
3. Score candidate and current model on the same evaluation sets and apply the gate
   (models/gate.py, rules in settings).
4. Register the candidate either way; promote it, or mark it rejected (never served
   without force). On promotion publish a ModelUpdate so running workers hot-swap.
5. Record the run (fingerprint, both models' metrics, decision, reason) in retrain_runs.

Only one run at a time: a file lock under data_dir; a run that finds it held is recorded
as skipped. Candidate model directories live under ``<data_dir>/models/candidates/``.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from finsentry.config import Settings
from finsentry.locks import FileLock, LockHeld
from finsentry.schema import Post
from finsentry.store import Store
from models.data import Example
from models.gate import decide, headline
from models.registry import Registry
from models.retrain_data import FeedbackSet, feedback_examples, retrain_data
from models.splits import build_splits
from models.train import TrainConfig, TrainingInterrupted, resolve_device, train
from models.updates import publish_model_update

log = logging.getLogger(__name__)

Publisher = Callable[[Settings, str, Path], Any]


@dataclass
class RetrainOutcome:
    run_id: str
    decision: str
    reason: str
    current_version: str | None = None
    candidate_version: str | None = None
    current_metrics: dict[str, float] | None = None
    candidate_metrics: dict[str, float] | None = None
    details: dict[str, Any] = field(default_factory=dict)


def candidates_dir(settings: Settings) -> Path:
    return settings.data_dir / "models" / "candidates"


def run_retrain(
    settings: Settings,
    *,
    trigger: str = "manual",
    stop: threading.Event | None = None,
    publish: Publisher = publish_model_update,
) -> RetrainOutcome:
    """Run the job once and record it; never raises for a failed run (it is recorded)."""
    stop = stop or threading.Event()
    started = datetime.now(UTC)
    run_id = f"{started:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    store = Store(settings.database_url)
    try:
        store.start_retrain_run(run_id, trigger, _budget(settings))
        lock = FileLock(settings.data_dir / "retrain.lock", "a retraining run")
        try:
            lock.acquire()
        except LockHeld as exc:
            outcome = RetrainOutcome(run_id, "skipped", str(exc))
        else:
            try:
                outcome = _run(settings, store, run_id, stop, publish)
            except Exception as exc:
                log.exception("retrain %s failed", run_id)
                outcome = RetrainOutcome(run_id, "failed", f"{type(exc).__name__}: {exc}")
            finally:
                lock.release()
        store.finish_retrain_run(
            run_id,
            outcome.decision,
            outcome.reason,
            current_version=outcome.current_version,
            candidate_version=outcome.candidate_version,
            data_fingerprint=outcome.details.get("data_fingerprint"),
            current_metrics=outcome.current_metrics,
            candidate_metrics=outcome.candidate_metrics,
            details={**_budget(settings), **outcome.details},
        )
        log.info("retrain %s: %s: %s", run_id, outcome.decision, outcome.reason)
        return outcome
    finally:
        store.close()


def _budget(settings: Settings) -> dict[str, Any]:
    names = (
        "epochs",
        "max_steps",
        "max_minutes",
        "batch_size",
        "learning_rate",
        "train_limit",
        "feedback_repeat",
        "eval_sample",
        "gate_metrics",
        "tolerance",
    )
    return {name: getattr(settings, f"retrain_{name}") for name in names}


def _run(
    settings: Settings,
    store: Store,
    run_id: str,
    stop: threading.Event,
    publish: Publisher,
) -> RetrainOutcome:
    registry = Registry(store)
    current_dir = registry.current_dir()
    current = store.current_model()
    assert current is not None  # current_dir() raised otherwise
    version = f"finsentry-minilm-r{run_id}"
    outcome = RetrainOutcome(run_id, "running", "", current_version=current["version"])
    candidate_dir = candidates_dir(settings) / version
    try:
        feedback = _feedback(store)
        data = retrain_data(
            build_splits(),
            feedback.examples,
            train_limit=settings.retrain_train_limit,
            feedback_repeat=settings.retrain_feedback_repeat,
            eval_sample=settings.retrain_eval_sample,
        )
        outcome.details = {
            "data_fingerprint": data.fingerprint,
            **data.counts,
            "feedback_problems": feedback.problems,
        }
        if data.counts["feedback_in_evaluation"]:
            log.warning(
                "%d feedback post(s) are also in the evaluation sets: the gate will see them",
                data.counts["feedback_in_evaluation"],
            )
        config = TrainConfig(
            output_dir=candidate_dir,
            init_from=current_dir,
            version=version,
            epochs=settings.retrain_epochs,
            max_steps=settings.retrain_max_steps,
            max_seconds=None
            if settings.retrain_max_minutes is None
            else settings.retrain_max_minutes * 60,
            batch_size=settings.retrain_batch_size,
            learning_rate=settings.retrain_learning_rate,
            device=settings.retrain_device,
            threads=settings.retrain_threads,
            checkpoint_every=0,
        )
        result = train(config, splits=data.splits, should_stop=stop.is_set)
        shutil.rmtree(candidate_dir / "train_state", ignore_errors=True)
        outcome.details["training"] = {
            k: result.metrics["training"][k] for k in ("seconds", "steps", "hardware")
        }
        _stamp_metrics(candidate_dir, data.fingerprint, run_id)
        registry.register(candidate_dir)
        outcome.candidate_version = version
        sets = data.splits.test
        outcome.current_metrics = _gate_metrics(settings, current_dir, sets)
        outcome.candidate_metrics = _gate_metrics(settings, candidate_dir, sets)
    except TrainingInterrupted as exc:
        shutil.rmtree(candidate_dir, ignore_errors=True)
        outcome.decision, outcome.reason = "interrupted", f"stop requested: {exc}"
        return outcome
    except Exception:
        if outcome.candidate_version is None:  # nothing registered points at it
            shutil.rmtree(candidate_dir, ignore_errors=True)
        raise
    gate = decide(outcome.candidate_metrics, outcome.current_metrics, settings.retrain_tolerance)
    outcome.details["deltas"] = gate.deltas
    outcome.reason = gate.reason
    if not gate.promote:
        store.set_model_status(version, "rejected")
        outcome.decision = "rejected"
        return outcome
    registry.promote(version)
    outcome.decision = "promoted"
    try:
        publish(settings, version, candidate_dir)
    except Exception as exc:
        log.exception("retrain %s: promoted, but the model update was not published", run_id)
        outcome.reason += (
            f"; workers not notified ({type(exc).__name__}: {exc}), they load it on restart"
        )
    return outcome


def _feedback(store: Store) -> FeedbackSet:
    rows = store.feedback_labels()
    texts: dict[str, str | None] = {}
    for post_id in {str(row["post_id"]) for row in rows}:
        post = store.get_post(post_id)
        texts[post_id] = _post_text(post) if post else None
    return feedback_examples(rows, texts)


def _post_text(row: dict[str, Any]) -> str:
    """The text the worker scored: Post.text of the stored post."""
    return Post.from_dict({name: row[name] for name in Post.model_fields if name in row}).text


def _stamp_metrics(model_dir: Path, fingerprint: str, run_id: str) -> None:
    """The registry reads metrics.json: record the retraining data, not just data/'s files."""
    path = model_dir / "metrics.json"
    metrics = json.loads(path.read_text(encoding="utf-8"))
    metrics["data_fingerprint"] = fingerprint
    metrics["retrain_run"] = run_id
    path.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")


def _gate_metrics(
    settings: Settings, model_dir: Path, sets: dict[str, list[Example]]
) -> dict[str, float]:
    from models.evaluate import evaluate_sets
    from models.network import load_model

    model, tokenizer, meta = load_model(model_dir)
    model.to(resolve_device(settings.retrain_device))
    results = evaluate_sets(model, tokenizer, meta, sets)
    return headline(results, settings.retrain_gate_metrics)
