"""The ONNX Runtime backends on the shipped checkpoint: export once into a cache, agree with
torch fp32, keep the engine's batching guarantees, refuse non-CPU devices."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from models.engine import Engine, OnnxParallelism, pick_backend
from models.onnx_runtime import FORMAT, checkpoint_digest, onnx_file
from models.registry import SHIPPED_DIR
from tests.models.test_engine import TEXTS as ENGINE_TEXTS

pytestmark = pytest.mark.unit

TEXTS = [*ENGINE_TEXTS, "word " * 400]  # the last one is scored in two windows


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def onnx_fp32(cache: Path) -> Iterator[Engine]:
    with Engine(SHIPPED_DIR, device="cpu", backend="onnx-fp32", onnx_cache=cache) as engine:
        yield engine


@pytest.fixture(scope="module")
def onnx_int8(cache: Path) -> Iterator[Engine]:
    with Engine(SHIPPED_DIR, device="cpu", backend="onnx-int8", onnx_cache=cache) as engine:
        yield engine


def _stack(probs: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return np.concatenate(probs, axis=1)


def test_onnx_fp32_matches_torch_fp32(engine: Engine, onnx_fp32: Engine) -> None:
    torch_probs = _stack(engine.probabilities(TEXTS))
    onnx_probs = _stack(onnx_fp32.probabilities(TEXTS))
    assert np.abs(torch_probs - onnx_probs).max() < 1e-4


def test_onnx_fp32_batched_and_one_by_one_agree(onnx_fp32: Engine) -> None:
    batched = _stack(onnx_fp32.probabilities(TEXTS))
    single = np.concatenate([_stack(onnx_fp32.probabilities([text])) for text in TEXTS])
    assert np.abs(batched - single).max() < 1e-5


def test_onnx_int8_stays_close_to_fp32(engine: Engine, onnx_int8: Engine) -> None:
    reference = engine.classify(TEXTS)
    quantised = onnx_int8.classify(TEXTS)
    sentiment = np.array([[v["sentiment_probs"][k] for k in sorted(v["sentiment_probs"])]
                          for v in quantised])  # fmt: skip
    expected = np.array([[v["sentiment_probs"][k] for k in sorted(v["sentiment_probs"])]
                         for v in reference])  # fmt: skip
    assert np.abs(sentiment - expected).max() < 0.1
    agree = sum(q["sentiment"] == r["sentiment"] for q, r in zip(quantised, reference, strict=True))
    assert agree >= len(TEXTS) - 1
    assert all(q["model_version"] == onnx_int8.version for q in quantised)


def test_parallelism_and_spinning_change_no_result(cache: Path) -> None:
    """Lanes (batches side by side) or one batch split over the threads, spinning or not:
    how the work is spread never changes what it computes. Batches of 2, so a call has
    several for the lanes to share."""
    results = []
    setups: tuple[tuple[OnnxParallelism, bool], ...] = (
        ("batches", True),
        ("operators", True),
        ("operators", False),
    )
    for parallelism, spin in setups:
        with Engine(
            SHIPPED_DIR,
            device="cpu",
            backend="onnx-int8",
            batch_size=2,
            onnx_cache=cache,
            onnx_spin=spin,
            onnx_parallelism=parallelism,
        ) as engine:
            results.append(_stack(engine.probabilities(TEXTS)))
    assert np.abs(results[0] - results[1]).max() < 1e-6
    assert np.array_equal(results[1], results[2])


def test_concurrent_calls_get_their_own_results(onnx_int8: Engine) -> None:
    """Calls from several threads at once (the engine serves one per lane, tokenising under a
    lock) return what each would get alone, in its own order."""
    calls = [TEXTS[i:] + TEXTS[:i] for i in range(8)]
    alone = [onnx_int8.classify(texts) for texts in calls]
    with ThreadPoolExecutor(4) as callers:
        together = list(callers.map(onnx_int8.classify, calls))
    for one, other in zip(alone, together, strict=True):
        assert [v["sentiment"] for v in one] == [v["sentiment"] for v in other]
        assert all(abs(a["score"] - b["score"]) < 1e-6 for a, b in zip(one, other, strict=True))


def test_export_is_cached_per_checkpoint(cache: Path, onnx_int8: Engine) -> None:
    fp32 = onnx_file(SHIPPED_DIR, "onnx-fp32", cache)
    int8 = onnx_file(SHIPPED_DIR, "onnx-int8", cache)
    assert fp32.parent.name.endswith(checkpoint_digest(SHIPPED_DIR))
    assert int8.stat().st_size < fp32.stat().st_size / 2
    stamps = (fp32.stat().st_mtime_ns, int8.stat().st_mtime_ns)
    with Engine(SHIPPED_DIR, device="cpu", backend="onnx-int8", onnx_cache=cache, warmup=False):
        pass
    assert (fp32.stat().st_mtime_ns, int8.stat().st_mtime_ns) == stamps
    assert not [p for p in fp32.parent.iterdir() if p.name.startswith(".")]


def test_digest_changes_with_the_weights(tmp_path: Path) -> None:
    for name in ("config.json", "model.safetensors"):
        (tmp_path / name).write_bytes((SHIPPED_DIR / name).read_bytes())
    same = checkpoint_digest(tmp_path)
    assert same == checkpoint_digest(SHIPPED_DIR) and FORMAT
    with (tmp_path / "model.safetensors").open("ab") as handle:
        handle.write(b"\0")
    assert checkpoint_digest(tmp_path) != same


def test_onnx_backends_are_cpu_only() -> None:
    import torch

    for backend in ("onnx-fp32", "onnx-int8"):
        with pytest.raises(ValueError, match="CPU only"):
            pick_backend(torch.device("cuda"), backend)  # type: ignore[arg-type]


def test_unknown_onnx_backend_is_refused(cache: Path) -> None:
    with pytest.raises(ValueError, match="not an ONNX backend"):
        onnx_file(SHIPPED_DIR, "onnx-fp16", cache)


def test_auto_on_cpu_is_onnx_int8() -> None:
    import torch

    assert pick_backend(torch.device("cpu"), "auto") == "onnx-int8"
