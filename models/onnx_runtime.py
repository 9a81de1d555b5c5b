"""ONNX Runtime backends of the engine: export once per checkpoint, cache, run on the CPU.

``onnx-fp32`` is the whole multi-task model (encoder, pooling, both heads) exported from
torch with dynamic batch and sequence axes. ``onnx-int8`` is that graph after ONNX
Runtime's dynamic quantisation (int8 weights with one scale per output channel, activations
quantised per batch at run time) of every weight matmul except those of the two heads and
of the first encoder layer (``INT8_KEPT_FP32``). Per-tensor scales, or quantised heads,
cost up to 1 point of topic accuracy; a quantised first layer cost v2 0.87 point on
PhraseBank AllAgree; keeping the last layer in fp32 instead did not help (figures in
``models.engine.pick_backend``).

Both files are built from the checkpoint on disk, never fetched, and cached under
``<cache_dir>/<version>-<digest>/``, where the digest covers the weights, the config and
``FORMAT``: a changed checkpoint or export recipe gets new files, an unchanged one is
exported once and then only loaded. Writes go to a temporary file renamed into place, so
processes starting together never read a half-written model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Final

import numpy as np

from models.files import CONFIG_FILE, WEIGHTS_FILE, ModelDirError, read_meta

log = logging.getLogger(__name__)

ONNX_BACKENDS: Final = ("onnx-fp32", "onnx-int8")
# Bump when the export or quantisation recipe changes: cached files are keyed on it.
FORMAT: Final = "finsentry-onnx-1;opset17;int8:per-channel,fp32-heads,fp32-layer0"
OPSET: Final = 17
INPUTS: Final = ("input_ids", "attention_mask")
OUTPUTS: Final = ("sentiment_logits", "topic_logits")
# Node-name fragments of the matmuls that onnx-int8 keeps in fp32.
INT8_KEPT_FP32: Final = ("/sentiment_head/", "/topic_head/", "/layer.0/")

Forward = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def checkpoint_digest(model_dir: Path) -> str:
    """A short hash of what the exported graph depends on: weights, config, FORMAT."""
    digest = hashlib.sha256(FORMAT.encode())
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        path = model_dir / name
        if not path.is_file():
            raise ModelDirError(f"{model_dir}: no {name}")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def cached_digest(model_dir: Path, cache_dir: Path) -> str:
    """``checkpoint_digest``, computed once per state of the files: kept under
    ``<cache_dir>/digests/`` with the size and mtime of the weights and config, and reused
    while both are unchanged (hashing the weights was part of every engine start)."""
    stats = []
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        path = model_dir / name
        if not path.is_file():
            raise ModelDirError(f"{model_dir}: no {name}")
        stat = path.stat()
        stats.append([name, stat.st_size, stat.st_mtime_ns])
    resolved = str(model_dir.resolve())
    key = {"dir": resolved, "format": FORMAT, "files": stats}
    name = hashlib.sha256(resolved.encode()).hexdigest()[:16]
    record = cache_dir / "digests" / f"{name}.json"
    try:
        saved = json.loads(record.read_text(encoding="utf-8"))
        if saved.get("key") == key:
            return str(saved["digest"])
    except (OSError, ValueError):
        pass
    digest = checkpoint_digest(model_dir)
    payload = json.dumps({"key": key, "digest": digest}) + "\n"
    record.parent.mkdir(parents=True, exist_ok=True)
    tmp = record.with_name(f".{record.name}.{os.getpid()}")
    tmp.write_text(payload, encoding="utf-8")
    tmp.replace(record)
    return digest


def onnx_file(model_dir: Path, backend: str, cache_dir: Path) -> Path:
    """The cached ONNX file for ``backend``, exported (and quantised) first if missing."""
    if backend not in ONNX_BACKENDS:
        raise ValueError(f"not an ONNX backend: {backend!r}; expected one of {ONNX_BACKENDS}")
    folder = cache_dir / f"{read_meta(model_dir).version}-{cached_digest(model_dir, cache_dir)}"
    fp32 = folder / "model-fp32.onnx"
    if not fp32.is_file():
        log.info("exporting %s to ONNX at %s (once per checkpoint)", model_dir, fp32)
        _atomic_write(fp32, lambda tmp: export_onnx(model_dir, tmp))
    if backend == "onnx-fp32":
        return fp32
    int8 = folder / "model-int8.onnx"
    if not int8.is_file():
        log.info("quantising %s to int8 at %s (once per checkpoint)", fp32, int8)
        _atomic_write(int8, lambda tmp: quantise_onnx(fp32, tmp))
    return int8


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".onnx")
    os.close(handle)
    tmp = Path(name)
    try:
        write(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def export_onnx(model_dir: Path, path: Path) -> None:
    """Export the fp32 multi-task model with dynamic batch and sequence axes."""
    import torch

    from models.network import load_model

    model, _, _ = load_model(model_dir)
    example = torch.ones((2, 8), dtype=torch.long)
    dynamic = {name: {0: "batch", 1: "sequence"} for name in INPUTS}
    dynamic |= {name: {0: "batch"} for name in OUTPUTS}
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of torch.export (which needs
        # onnxscript); its tracer warnings are about shape checks that are constant here.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example, example),
            str(path),
            input_names=list(INPUTS),
            output_names=list(OUTPUTS),
            dynamic_axes=dynamic,
            opset_version=OPSET,
            dynamo=False,
        )


def quantise_onnx(source: Path, path: Path) -> None:
    """Dynamic int8 quantisation of the weight matmuls not matched by INT8_KEPT_FP32."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(source), load_external_data=False).graph
    kept = [
        node.name
        for node in graph.node
        if node.op_type in ("MatMul", "Gemm") and any(part in node.name for part in INT8_KEPT_FP32)
    ]
    quantize_dynamic(
        str(source),
        str(path),
        weight_type=QuantType.QInt8,
        per_channel=True,
        nodes_to_exclude=kept,
    )


def onnx_forward(path: Path, threads: int, *, spin: bool = True) -> Forward:
    """An ONNX Runtime session on ``path`` as a (input_ids, mask) -> (logits, logits) call.

    ``spin``: idle intra-op threads busy-wait for the next batch: a little faster when the
    engine has the cores to itself, much slower when other work needs them.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def forward(input_ids: np.ndarray, attention_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sentiment, topic = session.run(
            list(OUTPUTS), {INPUTS[0]: input_ids, INPUTS[1]: attention_mask}
        )
        return np.asarray(sentiment), np.asarray(topic)

    return forward
