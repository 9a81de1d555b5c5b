"""Time to first score: an ONNX engine starts without torch or transformers, reads the same
token ids they would, and hashes a checkpoint's weights once, not at every start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from finsentry.config import REPO_ROOT, get_settings
from models import onnx_runtime
from models.files import Tokens
from models.onnx_runtime import cached_digest, checkpoint_digest, onnx_file
from models.registry import SHIPPED_DIR
from tests.models.test_engine import TEXTS

pytestmark = pytest.mark.unit
ODD = [*TEXTS, "🚀🚀🚀 $GME to the moon", "Überraschung: Gewinn +5 %", "word " * 300, "a\tb\nc"]


@pytest.mark.parametrize("model_dir", ["finsentry-minilm-v1", "finsentry-minilm-v2"])
def test_tokens_match_transformers_tokenizer(model_dir: str) -> None:
    from models.network import load_tokenizer

    path = SHIPPED_DIR.parent / model_dir
    ours, theirs = Tokens(path), load_tokenizer(path)
    assert ours.ids(ODD) == theirs(ODD, add_special_tokens=False)["input_ids"]
    for name in ("cls_token_id", "sep_token_id", "pad_token_id"):
        assert getattr(ours, name) == getattr(theirs, name)


def test_an_onnx_engine_starts_without_torch_or_transformers() -> None:
    cache = get_settings().model_onnx_cache
    onnx_file(SHIPPED_DIR, "onnx-int8", cache)  # the export, once per checkpoint, needs torch
    script = f"""
import sys
from pathlib import Path
from models.engine import Engine
with Engine(Path({str(SHIPPED_DIR)!r}), device="auto", backend="auto",
            onnx_cache=Path({str(cache)!r}), warmup=False) as engine:
    verdict = engine.classify(["Acme beats estimates"])[0]
    print(engine.backend, verdict["sentiment"])
print(sorted(m for m in ("torch", "transformers", "sklearn") if m in sys.modules))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], check=True, cwd=REPO_ROOT, env=_env(), capture_output=True
    )
    assert done.stdout.decode().splitlines() == ["onnx-int8 positive", "[]"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT)}


def test_the_digest_is_computed_once_per_state_of_the_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "model"
    model.mkdir()
    for name in ("config.json", "model.safetensors"):
        (model / name).write_bytes((SHIPPED_DIR / name).read_bytes())
    calls: list[Path] = []

    def counting(model_dir: Path) -> str:
        calls.append(model_dir)
        return checkpoint_digest(model_dir)

    monkeypatch.setattr(onnx_runtime, "checkpoint_digest", counting)
    first = cached_digest(model, tmp_path / "cache")
    assert cached_digest(model, tmp_path / "cache") == first == checkpoint_digest(model)
    assert len(calls) == 1
    with (model / "model.safetensors").open("ab") as handle:
        handle.write(b"\0")
    assert cached_digest(model, tmp_path / "cache") != first
    assert len(calls) == 2
