"""Weight averaging of two checkpoints: the arithmetic, the guards, and a weight chosen on
validation that writes a complete, loadable model directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from finsentry.cli import app
from models.average import average_models, mix_states
from models.network import ModelDirError, load_model, save_model
from models.registry import SHIPPED_DIR, SHIPPED_VERSION
from models.splits import Splits

pytestmark = pytest.mark.unit


def test_mix_is_the_weighted_sum_and_keeps_integer_buffers() -> None:
    first = {"w": torch.tensor([1.0, 2.0]), "ids": torch.tensor([0, 1])}
    second = {"w": torch.tensor([3.0, 6.0]), "ids": torch.tensor([5, 6])}
    mixed = mix_states(first, second, 0.25)
    assert torch.allclose(mixed["w"], torch.tensor([2.5, 5.0]))
    assert torch.equal(mixed["ids"], first["ids"])


def test_mix_refuses_different_models_and_weights_outside_0_1() -> None:
    first = {"w": torch.zeros(2)}
    with pytest.raises(ModelDirError, match="differ in names"):
        mix_states(first, {"v": torch.zeros(2)}, 0.5)
    with pytest.raises(ModelDirError, match="shape"):
        mix_states(first, {"w": torch.zeros(3)}, 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        mix_states(first, first, 1.5)


def _small(splits: Splits, n: int = 60) -> Splits:
    return Splits(
        splits.train,
        {k: v[:n] for k, v in splits.validation.items()},
        {k: v[:n] for k, v in splits.test.items()},
    )


@pytest.fixture(scope="module")
def broken_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped model with its sentiment head zeroed: one class for every text."""
    model, tokenizer, meta = load_model(SHIPPED_DIR)
    torch.nn.init.zeros_(model.sentiment_head.weight)
    torch.nn.init.zeros_(model.sentiment_head.bias)
    meta.version = "broken-sentiment"
    out = tmp_path_factory.mktemp("broken")
    save_model(model, tokenizer, meta, out)
    return out


def test_the_weight_is_chosen_on_validation_and_the_mix_is_written(
    splits: Splits, broken_copy: Path, tmp_path: Path
) -> None:
    result = average_models(
        broken_copy, SHIPPED_DIR, [1.0, 0.0], tmp_path / "mix", "mix-test", splits=_small(splits)
    )
    averaging = result.metrics["averaging"]
    scores = {c["weight"]: c["score"] for c in averaging["candidates"]}
    assert scores[0.0] > scores[1.0] and result.weight == 0.0 == averaging["chosen_weight"]
    assert [s["version"] for s in averaging["sources"]] == ["broken-sentiment", SHIPPED_VERSION]
    written = load_file(str(tmp_path / "mix" / "model.safetensors"))
    shipped = load_file(str(SHIPPED_DIR / "model.safetensors"))
    assert all(torch.equal(written[name], shipped[name]) for name in shipped)
    metrics = json.loads((tmp_path / "mix" / "metrics.json").read_text())
    assert metrics["version"] == "mix-test" and set(metrics["test"]) == set(splits.test)
    card = (tmp_path / "mix" / "README.md").read_text()
    assert "Weight average" in card and "broken-sentiment" in card
    assert load_model(tmp_path / "mix")[2].version == "mix-test"


def test_cli_rejects_weights_outside_0_1(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "models",
            "average",
            str(SHIPPED_DIR),
            str(SHIPPED_DIR),
            "--output",
            str(tmp_path),
            "--version",
            "x",
            "--weights",
            "0.5,2",
        ],
    )
    assert result.exit_code == 2 and "every weight must be in [0, 1]" in result.output
