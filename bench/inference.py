"""Inference throughput: naive pipeline vs textbook padded batches vs the engine's backends.

All methods score the same 2,000 texts, a seeded sample of the three test splits
(PhraseBank whole test, Twitter sentiment test, Twitter topic test), each method in its own
subprocess so that its peak RSS is its own. Prints texts/s, the ratio to the naive
baseline, peak RSS, and accuracy on those texts (overall and per test split). Each engine
backend is then also scored on the whole of every test split (AllAgree included), with its
difference to engine-fp32 in points: the accuracy a backend is chosen on.

    PYTHONPATH=. python bench/inference.py [--model DIR] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

N_TEXTS = 2000
METHODS = (
    "naive-pipeline",
    "padded-128",
    "engine-fp32",
    "engine-bf16",
    "engine-int8",
    "engine-onnx-fp32",
    "engine-onnx-int8",
)
SETS = ("phrasebank", "twitter_sentiment", "twitter_topic")


def bench_texts(n: int = N_TEXTS) -> list[tuple[str, str, int]]:
    """``n`` (text, test set, label) drawn with a fixed seed from the three test splits."""
    from models.splits import build_splits

    test = build_splits().test
    pool = [(e.text, name, e.label) for name in SETS for e in test[name]]
    return random.Random(7).sample(pool, n)


def accuracies(sample: list[tuple[str, str, int]], sentiment: Any, topic: Any) -> dict[str, float]:
    """Accuracy overall and per test set, each text judged on the head its set labels."""
    hits: dict[str, list[bool]] = {name: [] for name in SETS}
    for i, (_, name, label) in enumerate(sample):
        probs = topic[i] if name == "twitter_topic" else sentiment[i]
        hits[name].append(int(probs.argmax()) == label)
    result = {name: sum(h) / len(h) for name, h in hits.items() if h}
    result["all"] = sum(sum(h) for h in hits.values()) / len(sample)
    return result


def full_test_accuracy(engine: Any) -> dict[str, float]:
    """The engine's accuracy on the whole of each test split, on the head it labels."""
    import numpy as np

    from models.evaluate import TASK_OF_SET
    from models.splits import build_splits

    result = {}
    for name, examples in build_splits().test.items():
        sentiment, topic = engine.probabilities([e.text for e in examples])
        probs = topic if TASK_OF_SET[name] == "topic" else sentiment
        labels = np.array([e.label for e in examples])
        result[name] = float((probs.argmax(axis=1) == labels).mean())
    return result


def run_method(
    method: str, model_dir: Path, threads: int, n: int = N_TEXTS, batch_size: int = 32
) -> dict[str, Any]:
    """Time one method on the benchmark texts (called in a fresh subprocess)."""
    import torch
    import transformers

    from models.calibrate import softmax

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(threads)
    sample = bench_texts(n)
    texts = [text for text, _, _ in sample]
    if method.startswith("engine-"):
        from models.engine import Engine

        backend = method.removeprefix("engine-")
        engine = Engine(model_dir, device="cpu", backend=backend, batch_size=batch_size)  # type: ignore[arg-type]
        started = time.perf_counter()
        sentiment, topic = engine.probabilities(texts)
        seconds = time.perf_counter() - started
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        full = full_test_accuracy(engine)
        engine.close()
    else:
        from models.data import clean
        from models.network import load_model

        model, tokenizer, meta = load_model(model_dir)
        cleaned = [clean(text) for text in texts]
        with torch.inference_mode():
            if method == "naive-pipeline":
                extractor = transformers.pipeline(
                    "feature-extraction", model=model.encoder, tokenizer=tokenizer, device="cpu"
                )
                limits = {"truncation": True, "max_length": meta.max_length}

                def score(text: str) -> tuple[Any, Any]:
                    states = extractor(text, return_tensors=True, tokenize_kwargs=limits)
                    pooled = states.mean(dim=1)
                    return model.sentiment_head(pooled), model.topic_head(pooled)

                score(cleaned[0])
                started = time.perf_counter()
                outputs = [score(text) for text in cleaned]
                seconds = time.perf_counter() - started
                s_logits = torch.cat([o[0] for o in outputs])
                t_logits = torch.cat([o[1] for o in outputs])
            else:
                started = time.perf_counter()
                parts = []
                for i in range(0, len(cleaned), 32):
                    batch = tokenizer(
                        cleaned[i : i + 32],
                        padding="max_length",
                        truncation=True,
                        max_length=128,
                        return_tensors="pt",
                    )
                    parts.append(model(batch["input_ids"], batch["attention_mask"]))
                seconds = time.perf_counter() - started
                s_logits = torch.cat([p[0] for p in parts])
                t_logits = torch.cat([p[1] for p in parts])
        sentiment, topic = softmax(s_logits.numpy()), softmax(t_logits.numpy())
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        full = {}
    return {
        "method": method,
        "texts_per_s": len(texts) / seconds,
        "accuracy": accuracies(sample, sentiment, topic),
        "full_test_accuracy": full,
        "peak_rss_mb": rss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--texts", type=int, default=N_TEXTS, help="fewer texts for a dry run")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--batch-size", type=int, default=32, help="the engine's batch size")
    parser.add_argument("--method", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    from models.registry import SHIPPED_DIR

    model_dir = args.model or SHIPPED_DIR
    if args.method:
        result = run_method(args.method, model_dir, args.threads, args.texts, args.batch_size)
        print(json.dumps(result))
        return
    results = []
    for method in args.methods.split(","):
        print(f"running {method} ...", file=sys.stderr, flush=True)
        command = [sys.executable, __file__, "--method", method, "--model", str(model_dir),
                   "--threads", str(args.threads), "--texts", str(args.texts),
                   "--batch-size", str(args.batch_size)]  # fmt: skip
        out = subprocess.run(command, check=True, capture_output=True, text=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    naive = results[0]["texts_per_s"]
    print(f"{args.texts} texts from the test splits, {args.threads} threads, {model_dir.name}")
    header = f"{'method':<16}{'texts/s':>9}{'x naive':>9}{'peak RSS MB':>13}{'acc all':>9}"
    print(header + "".join(f"{name:>19}" for name in SETS))
    for r in results:
        acc = r["accuracy"]
        print(
            f"{r['method']:<16}{r['texts_per_s']:>9.1f}{r['texts_per_s'] / naive:>9.2f}"
            f"{r['peak_rss_mb']:>13.0f}{acc['all']:>9.4f}"
            + "".join(f"{acc.get(name, float('nan')):>19.4f}" for name in SETS)
        )
    print_full_accuracy(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


def print_full_accuracy(results: list[dict[str, Any]]) -> None:
    """Whole-test-split accuracy of each engine backend and its change from engine-fp32."""
    engines = {r["method"]: r["full_test_accuracy"] for r in results if r["full_test_accuracy"]}
    if not engines:
        return
    names = list(next(iter(engines.values())))
    reference = engines.get("engine-fp32")
    print("\nwhole test splits: accuracy (points vs engine-fp32)")
    print(f"{'method':<18}" + "".join(f"{name:>28}" for name in names))
    for method, acc in engines.items():
        cells = []
        for name in names:
            delta = f" ({100 * (acc[name] - reference[name]):+.2f})" if reference else ""
            cells.append(f"{acc[name]:.4f}{delta}".rjust(28))
        print(f"{method:<18}" + "".join(cells))


if __name__ == "__main__":
    main()
