"""Accuracy, macro-F1, confusion matrices and calibration error per dataset and split."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from models.batching import pad, sorted_batches
from models.calibrate import expected_calibration_error, softmax
from models.data import Example, clean
from models.files import ModelMeta
from models.network import MultiTaskModel

TASK_OF_SET = {
    "phrasebank": "sentiment",
    "phrasebank_allagree": "sentiment",
    "twitter_sentiment": "sentiment",
    "twitter_topic": "topic",
}


@torch.inference_mode()
def predict_logits(
    model: MultiTaskModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    max_length: int,
    batch_size: int = 128,
) -> tuple[np.ndarray, np.ndarray]:
    """Logits of both heads for each text (truncated to ``max_length``), in input order."""
    was_training = model.training
    device = next(model.parameters()).device
    model.eval()
    ids = tokenizer([clean(text) for text in texts], truncation=True, max_length=max_length)[
        "input_ids"
    ]
    sentiment = np.zeros((len(texts), len(model.sentiment_head.weight)), dtype=np.float32)
    topic = np.zeros((len(texts), len(model.topic_head.weight)), dtype=np.float32)
    for batch in sorted_batches([len(i) for i in ids], batch_size):
        input_ids, mask = pad([ids[i] for i in batch], tokenizer.pad_token_id)
        sentiment_logits, topic_logits = model(input_ids.to(device), mask.to(device))
        sentiment[batch] = sentiment_logits.float().cpu().numpy()
        topic[batch] = topic_logits.float().cpu().numpy()
    model.train(was_training)
    return sentiment, topic


def macro_f1(confusion: np.ndarray) -> float:
    """Mean F1 over the classes that occur in the labels or the predictions."""
    true_pos = np.diag(confusion).astype(float)
    predicted = confusion.sum(axis=0)
    actual = confusion.sum(axis=1)
    present = (predicted + actual) > 0
    f1 = np.divide(2 * true_pos, predicted + actual, out=np.zeros_like(true_pos), where=present)
    return float(f1[present].mean()) if present.any() else 0.0


def task_metrics(
    logits: np.ndarray, labels: np.ndarray, temperature: float, label_names: Sequence[str]
) -> dict[str, Any]:
    predictions = logits.argmax(axis=1)
    n = len(label_names)
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    return {
        "n": len(labels),
        "accuracy": float((predictions == labels).mean()) if len(labels) else 0.0,
        "macro_f1": macro_f1(confusion),
        "ece": expected_calibration_error(softmax(logits), labels),
        "ece_calibrated": expected_calibration_error(softmax(logits, temperature), labels),
        "labels": list(label_names),
        "confusion": confusion.tolist(),
    }


def evaluate_sets(
    model: MultiTaskModel,
    tokenizer: PreTrainedTokenizerBase,
    meta: ModelMeta,
    sets: dict[str, list[Example]],
    batch_size: int = 128,
) -> dict[str, dict[str, Any]]:
    """Metrics for each named evaluation set, on the head that set labels."""
    results = {}
    for name, examples in sets.items():
        task = TASK_OF_SET[name]
        sentiment, topic = predict_logits(
            model, tokenizer, [e.text for e in examples], meta.max_length, batch_size
        )
        logits = sentiment if task == "sentiment" else topic
        labels = np.array([e.label for e in examples], dtype=np.int64)
        names = meta.sentiment_labels if task == "sentiment" else meta.topic_labels
        results[name] = {
            "task": task,
            **task_metrics(logits, labels, meta.temperatures[task], names),
        }
    return results


def collect_logits(
    model: MultiTaskModel,
    tokenizer: PreTrainedTokenizerBase,
    meta: ModelMeta,
    sets: dict[str, list[Example]],
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per task, (logits, labels) pooled over the sets of that task (for calibration)."""
    pooled: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
    for name, examples in sets.items():
        if name == "phrasebank_allagree":
            continue
        task = TASK_OF_SET[name]
        sentiment, topic = predict_logits(
            model, tokenizer, [e.text for e in examples], meta.max_length
        )
        logits_list, labels_list = pooled.setdefault(task, ([], []))
        logits_list.append(sentiment if task == "sentiment" else topic)
        labels_list.append(np.array([e.label for e in examples], dtype=np.int64))
    return {task: (np.concatenate(lg), np.concatenate(lb)) for task, (lg, lb) in pooled.items()}
