"""The model card written next to every trained model (``README.md`` in the model dir)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

SET_TITLES = {
    "phrasebank": "Financial PhraseBank, whole test split (50Agree pool)",
    "phrasebank_allagree": "Financial PhraseBank, AllAgree subset of the test split",
    "twitter_sentiment": "Twitter Financial News sentiment (published valid file)",
    "twitter_topic": "Twitter Financial News topic (published valid file)",
}
ENCODERS = {
    "all-MiniLM-L6-v2": "all-MiniLM-L6-v2 encoder (6 layers, 384 hidden, 22.7M parameters; "
    "Apache-2.0)",
    "all-mpnet-base-v2": "all-mpnet-base-v2 encoder (MPNet, 12 layers, 768 hidden, 109M "
    "parameters; Apache-2.0; the teacher)",
}
FLOORS = {
    "phrasebank": 0.84,
    "phrasebank_allagree": 0.95,
    "twitter_sentiment": 0.86,
    "twitter_topic": 0.86,
}


def metrics_table(metrics: dict[str, Any], split: str = "test") -> str:
    rows = [
        "| data set | n | accuracy | floor | macro-F1 | ECE | ECE after T |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, result in metrics[split].items():
        rows.append(
            f"| {SET_TITLES.get(name, name)} | {result['n']} | {result['accuracy']:.4f} | "
            f"{FLOORS.get(name, 0):.2f} | {result['macro_f1']:.4f} | {result['ece']:.4f} | "
            f"{result['ece_calibrated']:.4f} |"
        )
    return "\n".join(rows)


def _training_text(metrics: dict[str, Any]) -> str:
    """How the weights came about: one training run, or a weight average of two models."""
    if "averaging" in metrics:
        return _averaging_text(metrics)
    training = metrics["training"]
    config = metrics["training_config"]
    start = (
        f"`{config['init_from']}` (its weights and heads)"
        if config.get("init_from")
        else "fresh heads on the base encoder"
    )
    repeat = config.get("phrasebank_repeat", 1)
    tweets = config.get("twitter_sentiment_repeat", 1)
    return f"""Started from {start}; per epoch each PhraseBank sentence seen {repeat}x, each
Twitter sentiment tweet {tweets}x.
{training["steps"]} steps, {training["epochs_run"]} epoch(s), best epoch
{training["best_epoch"]} by mean validation accuracy; batch {config["batch_size"]},
lr {config["learning_rate"]} (linear warm-up {config["warmup_ratio"]}, linear decay),
max length {config["max_length"]}, word embeddings frozen: {config["freeze_embeddings"]},
label smoothing {config.get("label_smoothing", 0.0)}.
{training["seconds"] / 60:.1f} minutes on {training["hardware"]}.{_distil_text(metrics)}
Data fingerprint `{metrics["data_fingerprint"][:16]}…`. Reproduce with `finsentry train`."""


def _distil_text(metrics: dict[str, Any]) -> str:
    """How the soft targets were used, and the validation grid that chose weight and T."""
    config = metrics["training_config"]
    if not config.get("distil_from"):
        return ""
    text = (
        f"\nDistilled from the soft targets `{config['distil_from']}`: (1 - w) x gold + w x "
        f"T^2 x KL, w = {config['distil_weight']}, T = {config['distil_temperature']}."
    )
    grid = metrics.get("distil_grid")
    if grid:
        tried = ", ".join(
            f"w {c['weight']} T {c['temperature']}: {c['validation_score']:.4f}"
            for c in grid["candidates"]
        )
        text += f" Chosen by mean validation accuracy among: {tried}."
    return text


def _averaging_text(metrics: dict[str, Any]) -> str:
    averaging = metrics["averaging"]
    first, second = averaging["sources"]
    rows = "\n".join(
        f"| {c['weight']} | "
        + " | ".join(f"{c['validation_accuracy'].get(name, 0):.4f}" for name in FLOORS)
        + f" | {c['score']:.4f} |"
        for c in averaging["candidates"]
    )
    sources = "\n".join(
        f"- `{s['version']}` (weight {s['weight']}): "
        + (
            f"from `{s['training_config'].get('init_from') or 'the base encoder'}`, "
            f"{s['training']['steps']} steps, lr {s['training_config'].get('learning_rate')}, "
            f"PhraseBank x{s['training_config'].get('phrasebank_repeat', 1)}, "
            f"Twitter sentiment x{s['training_config'].get('twitter_sentiment_repeat', 1)}, "
            f"{s['training']['seconds'] / 60:.1f} minutes on {s['training']['hardware']}."
            if s["training"]
            else "no training record."
        )
        for s in (first, second)
    )
    return f"""Weight average ("model soup") of two fine-tunes, `finsentry models average`:
{averaging["chosen_weight"]} x `{first["version"]}` + {second["weight"]} x `{second["version"]}`.
The weight was chosen by mean validation accuracy (PhraseBank, Twitter sentiment, Twitter
topic) among these candidates; the test split was not looked at to choose it.

| weight of {first["version"]} | {" | ".join(f"{name} (val)" for name in FLOORS)} | score |
| ---: | {" | ".join("---:" for _ in FLOORS)} | ---: |
{rows}

{sources}

Data fingerprint `{metrics["data_fingerprint"][:16]}…`.
Reproduce with `finsentry models average`."""


def _phrasebank_text(trained_on_it: bool) -> str:
    if trained_on_it:
        return """- Financial PhraseBank v1.0 (Malo et al., 2014), **CC BY-NC-SA 3.0**:
  non-commercial use only, and this model, a derivative, is shared under the same
  licence. A commercial user must not use these weights; retrain with
  `finsentry train --no-phrasebank` (or obtain a licence from PhraseBank's authors)."""
    return """- Trained with `--no-phrasebank`: Financial PhraseBank (CC BY-NC-SA 3.0) took no part
  in training, epoch selection or calibration; its test split is only measured below, so
  these weights do not carry its non-commercial licence."""


def write_model_card(model_dir: Path, metrics: dict[str, Any]) -> None:
    config = metrics["training_config"]
    splits = metrics["splits"]
    split_rows = "\n".join(
        f"| {name} | {c['train']} | {c['validation']} | {c['test']} | {c['leaks_removed']} |"
        for name, c in splits.items()
    )
    base = config.get("base_name", "all-MiniLM-L6-v2")
    card = f"""# {metrics["version"]}: finsentry topic + sentiment model

One {ENCODERS.get(base, base)} with two
linear heads over mean-pooled token states: sentiment (negative / neutral / positive) and
topic (the 20 topics of Twitter Financial News topic). Weights are fp16 safetensors;
`config.json` holds both label maps and the calibration temperatures
(sentiment T = {metrics["temperatures"]["sentiment"]},
topic T = {metrics["temperatures"]["topic"]}).

## Data and licences
{_phrasebank_text(config.get("phrasebank", True))}
- Twitter Financial News sentiment and topic (zeroshot, Hugging Face), MIT; tweet text
  under Twitter/X terms.

## Splits (seed {config["seed"]}, see data/SPLITS.md)
PhraseBank's 50Agree pool split 80/10/10 by unique normalised sentence, stratified;
Twitter validation is 10 % of the published train file; the published valid files are the
test sets. Validation and test rows whose normalised text occurs in training (or, for
test, validation) are removed.

| data set | train | validation | test | test leaks removed |
| --- | ---: | ---: | ---: | ---: |
{split_rows}

## Test metrics
{metrics_table(metrics)}

ECE: 15-bin expected calibration error of the predicted class, before and after
temperature scaling fitted on validation.

## Training
{_training_text(metrics)}

## Intended use and limits
Scoring short English financial news headlines and posts for a monitoring dashboard, where
aggregates over many posts matter more than any single verdict. Not investment advice.
- Trained on 2004-2011 Nordic business news and 2020-2022 finance tweets: newer jargon,
  other markets and long articles are out of distribution. Texts longer than
  {config["max_length"]} tokens are scored in chunks whose probabilities are averaged.
- Non-English text gets a verdict, but a meaningless one.
- Sarcasm, hedged language and mixed news (good for one company, bad for another) are weak.
"""
    (model_dir / "README.md").write_text(card, encoding="utf-8")
