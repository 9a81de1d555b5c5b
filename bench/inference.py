"""Inference throughput: naive pipeline vs textbook padded batches vs the engine's backends.

All methods score the same 2,000 texts (a seeded sample of the three test splits), each in
its own subprocess so that peak RSS is that method's alone. Prints texts/s, the ratio to
the naive baseline, peak RSS, and accuracy on those 2,000 texts; engine backends are also
scored on the full test splits.

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
METHODS = ("naive-pipeline", "padded-128", "engine-fp32", "engine-bf16", "engine-int8")


def bench_texts(n: int = N_TEXTS) -> tuple[list[str], list[str], list[int]]:
    """2,000 (text, task, label) drawn with a fixed seed from the three test splits."""
    from models.evaluate import TASK_OF_SET
    from models.splits import build_splits

    test = build_splits().test
    pool = [
        (e.text, TASK_OF_SET[name], e.label)
        for name in ("phrasebank", "twitter_sentiment", "twitter_topic")
        for e in test[name]
    ]
    sample = random.Random(7).sample(pool, n)
    return [s[0] for s in sample], [s[1] for s in sample], [s[2] for s in sample]


def _accuracy(tasks: list[str], labels: list[int], sentiment: Any, topic: Any) -> float:
    correct = [
        int((sentiment[i] if task == "sentiment" else topic[i]).argmax()) == label
        for i, (task, label) in enumerate(zip(tasks, labels, strict=True))
    ]
    return sum(correct) / len(correct)


def run_method(method: str, model_dir: Path, threads: int, n: int = N_TEXTS) -> dict[str, Any]:
    """Time one method on the benchmark texts (called in a fresh subprocess)."""
    import numpy as np
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(threads)
    texts, tasks, labels = bench_texts(n)
    result: dict[str, Any] = {"method": method}
    if method.startswith("engine-"):
        from models.engine import Engine
        from models.evaluate import TASK_OF_SET
        from models.splits import build_splits

        engine = Engine(model_dir, device="cpu", backend=method.removeprefix("engine-"))  # type: ignore[arg-type]
        started = time.perf_counter()
        sentiment, topic = engine.probabilities(texts)
        seconds = time.perf_counter() - started
        full = {}
        for name, all_examples in build_splits().test.items():
            examples = all_examples if n == N_TEXTS else all_examples[:n]
            s, t = engine.probabilities([e.text for e in examples])
            task = TASK_OF_SET[name]
            full[name] = _accuracy([task] * len(examples), [e.label for e in examples], s, t)
        result["full_test_accuracy"] = full
        engine.close()
    else:
        from models.calibrate import softmax
        from models.data import clean
        from models.network import load_model

        model, tokenizer, meta = load_model(model_dir)
        cleaned = [clean(text) for text in texts]
        with torch.inference_mode():
            if method == "naive-pipeline":
                extractor = transformers.pipeline(
                    "feature-extraction", model=model.encoder, tokenizer=tokenizer, device="cpu"
                )

                def score(text: str) -> tuple[Any, Any]:
                    states = extractor(
                        text,
                        return_tensors=True,
                        tokenize_kwargs={"truncation": True, "max_length": meta.max_length},
                    )
                    pooled = states.mean(dim=1)
                    return model.sentiment_head(pooled), model.topic_head(pooled)

                score(cleaned[0])
                started = time.perf_counter()
                outputs = [score(text) for text in cleaned]
                seconds = time.perf_counter() - started
                s_logits = torch.cat([o[0] for o in outputs]).numpy()
                t_logits = torch.cat([o[1] for o in outputs]).numpy()
            else:
                started = time.perf_counter()
                s_parts, t_parts = [], []
                for i in range(0, len(cleaned), 32):
                    batch = tokenizer(
                        cleaned[i : i + 32],
                        padding="max_length",
                        truncation=True,
                        max_length=128,
                        return_tensors="pt",
                    )
                    s, t = model(batch["input_ids"], batch["attention_mask"])
                    s_parts.append(s)
                    t_parts.append(t)
                seconds = time.perf_counter() - started
                s_logits = torch.cat(s_parts).numpy()
                t_logits = torch.cat(t_parts).numpy()
        sentiment, topic = softmax(s_logits), softmax(t_logits)
        sentiment, topic = np.asarray(sentiment), np.asarray(topic)
    result["texts_per_s"] = len(texts) / seconds
    result["accuracy"] = _accuracy(tasks, labels, sentiment, topic)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--texts", type=int, default=N_TEXTS, help="fewer texts for a dry run")
    parser.add_argument("--method", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    from models.registry import SHIPPED_DIR

    model_dir = args.model or SHIPPED_DIR
    if args.method:
        print(json.dumps(run_method(args.method, model_dir, args.threads, args.texts)))
        return
    results = []
    for method in METHODS:
        print(f"running {method} ...", file=sys.stderr, flush=True)
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--method",
                method,
                "--model",
                str(model_dir),
                "--threads",
                str(args.threads),
                "--texts",
                str(args.texts),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    naive = results[0]["texts_per_s"]
    print(f"{args.texts} texts, {args.threads} threads, model {model_dir.name}")
    print(
        f"{'method':<16}{'texts/s':>9}{'x naive':>9}{'peak RSS MB':>13}{'acc (2000)':>12}"
        "  full test accuracy (engine)"
    )
    for r in results:
        full = " ".join(f"{k}={v:.4f}" for k, v in r.get("full_test_accuracy", {}).items())
        print(
            f"{r['method']:<16}{r['texts_per_s']:>9.1f}{r['texts_per_s'] / naive:>9.2f}"
            f"{r['peak_rss_mb']:>13.0f}{r['accuracy']:>12.4f}  {full}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
