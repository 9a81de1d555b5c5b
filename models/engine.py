"""The inference engine everything else scores with (stream, backfill, CLI, benchmark).

The model is loaded once and stays resident. Model work runs on the engine's own threads:
``classify`` (sync) and ``classify_async`` (awaitable, never blocks the event loop) both
queue onto them, so callers on any thread are safe. torch backends have one such thread, so
torch sees one caller.

ONNX on CPU parallelises across batches by default (``onnx_parallelism="batches"``): a
call's padded batches go to a pool of single-threaded lanes, one per CPU thread, that share
one session (ONNX Runtime runs a session from several threads at once), and as many calls as
there are lanes are served at once (tokenising under a lock), so one call's tokenising and
tail overlap another's batches. Splitting each operator over the threads instead
(``"operators"``, ONNX Runtime's intra-op pool) makes threads wait on each other at every
operator, which costs most when other work (a worker's event loop, a broker) needs the
same cores; see ``pick_backend`` for the figures.

Long texts: a text longer than the model's window (``max_length`` tokens, special tokens
included) is cut into overlapping windows of that size (``chunk_overlap`` tokens shared by
neighbours); each window is scored and the text's probabilities are the mean of the
windows' calibrated probabilities weighted by each window's token count. Beyond
``max_chunks`` windows (a megabyte of text is ~2,000 windows) the engine scores
``max_chunks`` windows spread evenly over the whole text, first and last included, so cost
stays bounded while every part of the text is sampled; the count is logged.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, TypedDict

import numpy as np

from finsentry.config import Settings, get_settings
from models.batching import pad_arrays, sorted_batches
from models.calibrate import softmax
from models.data import clean
from models.files import Tokens, read_meta
from models.onnx_runtime import ONNX_BACKENDS, Forward, onnx_file, onnx_forward

if TYPE_CHECKING:
    import torch

    from models.network import MultiTaskModel

log = logging.getLogger(__name__)

Backend = Literal["auto", "fp32", "bf16", "fp16", "int8", "onnx-fp32", "onnx-int8"]
OnnxParallelism = Literal["batches", "operators"]
BACKENDS: Final = ("fp32", "bf16", "fp16", "int8", *ONNX_BACKENDS)
TOP_TOPICS: Final = 3


class Verdict(TypedDict):
    """The model's output for one text: the fields ScoredPost adds to a Post."""

    sentiment: str
    sentiment_probs: dict[str, float]
    score: float
    topic: str
    topic_probs: dict[str, float]
    model_version: str


class EmptyTextError(ValueError):
    """A text had nothing to score (empty or whitespace only); names the positions."""


def pick_backend(device: str | torch.device, backend: Backend) -> str:
    """``auto``: bf16 on CUDA that has it (else fp16); ``onnx-int8`` on CPU.

    The CPU default is the fastest backend whose accuracy stays within 0.5 point of torch
    fp32 on every test split (bench/inference.py, shared 2-core Xeon with AVX512-VNNI,
    2 threads, batches of 32, finsentry-minilm-v2; the machine was loaded by parallel
    work, load average 6-8, so compare within a run):
    - speed, 1,000 texts: run A torch fp32 65.8 texts/s, onnx-fp32 45.9, onnx-int8 with
      only the heads fp32 146.2 (2.2x); run B torch fp32 218.5, onnx-fp32 121.9, onnx-int8
      with heads and first layer fp32 (the shipped recipe) 563.0 (2.6x). An interleaved
      1-thread run on v1: torch fp32 33.2, onnx-fp32 40.6, int8 per-tensor 87.3, int8
      per-channel with fp32 heads 95.0, the same with the first and last layers fp32 60.8.
      Quiet machine, 2,000 texts, two runs: naive pipeline 92.6 / 98.7, torch fp32 231.3 /
      247.4, the shipped onnx-int8 613.6 / 613.6 (6.6x / 6.2x the naive pipeline).
    - accuracy in the engine, whole test splits, points vs torch fp32 (PhraseBank /
      AllAgree / Twitter sentiment / topic): onnx-fp32 0 / 0 / 0 / 0; int8 per-channel
      with fp32 heads -0.41 / -0.87 / +0.09 / -0.06; the shipped recipe -0.41 / -0.43 /
      +0.04 / +0.09. (Batches of 64 outside the engine: last layer fp32 instead of the
      first -0.83 / -0.43 / +0.09 / -0.14.)
      torch's dynamic int8 (``int8``) cost v1 0.6-1.2 points, so it stays opt-in; bf16
      ran at ~0.6x fp32 here (the casts around its matmuls cost more than they save).
    - ONNX parallelism, onnx-int8, v2, 2 threads, quiet machine, two interleaved rounds:
      calls of 64 headlines, ``operators`` 620.6 / 521.5 texts/s at 3.16 / 3.78 ms of CPU
      per text, ``batches`` with model batches of 16 687.0 / 627.5 at 2.45 / 2.71 ms; one
      call of 2,000 texts (batches of 32) 791.2 / 650.9 against 923.2 / 793.9. Then
      bench/inference.py with ``batches``: naive 62.0, onnx-int8 576.9 (9.3x). int8
      activations are quantised per batch, so the batch size (not the parallelism) moves
      accuracy a little: batches of 16 scored PhraseBank 0.8116 and Twitter sentiment 0.8565
      against 0.8095 and 0.8591 at 32.
    """
    kind = str(device).split(":")[0]
    if backend != "auto":
        if backend == "fp16" and kind == "cpu":
            raise ValueError("backend fp16 needs CUDA; use fp32, bf16 or int8 on CPU")
        if backend in ("int8", *ONNX_BACKENDS) and kind != "cpu":
            raise ValueError(f"backend {backend} runs on CPU only")
        return backend
    if kind == "cuda":
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "onnx-int8" if kind == "cpu" else "fp32"


def _cuda_available() -> bool:
    """Whether torch sees a GPU, without importing torch (seconds of start-up) where no GPU
    driver is loaded: neither NVIDIA's (``/proc/driver/nvidia``) nor AMD's (``/dev/kfd``)."""
    if "torch" not in sys.modules and not any(
        Path(p).exists() for p in ("/proc/driver/nvidia", "/dev/kfd")
    ):
        return False
    import torch

    return bool(torch.cuda.is_available())


def _cpu_threads() -> int:
    """torch's thread count where torch is loaded (a caller may have set it), else what
    torch would pick: OMP_NUM_THREADS, else the CPUs this process may run on."""
    if "torch" in sys.modules:
        import torch

        return int(torch.get_num_threads())
    return int(os.environ.get("OMP_NUM_THREADS") or len(os.sched_getaffinity(0)))


class Engine:
    """A resident multi-task model with a batched, order-keeping, thread-safe API."""

    lanes = 1  # batches scored at once, and calls served at once
    _lane_pool: ThreadPoolExecutor | None = None  # runs a call's batches side by side (ONNX)

    def __init__(
        self,
        model_dir: Path,
        *,
        device: str = "auto",
        backend: Backend = "auto",
        batch_size: int = 32,
        max_chunks: int = 64,
        chunk_overlap: int = 16,
        warmup: bool = True,
        onnx_cache: Path | None = None,
        onnx_spin: bool = True,
        onnx_parallelism: OnnxParallelism = "batches",
    ) -> None:
        if device == "auto":
            device = "cuda" if _cuda_available() else "cpu"
        self.device = device
        self.backend = pick_backend(device, backend)
        self.model_dir = model_dir
        if self.backend in ONNX_BACKENDS:
            cache = onnx_cache or get_settings().model_onnx_cache
            path = onnx_file(model_dir, self.backend, cache)
            threads = _cpu_threads()
            self.lanes = threads if onnx_parallelism == "batches" else 1
            self._forward = onnx_forward(path, threads // self.lanes, spin=onnx_spin)
            if self.lanes > 1:
                self._lane_pool = ThreadPoolExecutor(
                    self.lanes, thread_name_prefix="finsentry-lane"
                )
            self.meta = read_meta(model_dir)
        else:
            import torch

            from models.network import load_model

            dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.backend, torch.float32)
            model, _, self.meta = load_model(model_dir, dtype=dtype)
            if self.backend == "int8":
                _quantise(model)
            self._forward = _torch_forward(model.to(device), torch.device(device))
        self.tokenizer = Tokens(model_dir)
        self.batch_size = batch_size
        self.max_chunks = max_chunks
        self.window = self.meta.max_length - 2
        if not 0 <= chunk_overlap < self.window:
            raise ValueError(f"chunk_overlap must be in [0, {self.window}), got {chunk_overlap}")
        self.stride = self.window - chunk_overlap
        self._executor = ThreadPoolExecutor(self.lanes, thread_name_prefix="finsentry-model")
        self._tokenizing = threading.Lock()  # a fast tokenizer is not safe across threads
        if warmup:
            self.classify(["Shares rise after the company beats estimates."] * 2)

    @property
    def version(self) -> str:
        return self.meta.version

    def classify(self, texts: Sequence[str]) -> list[Verdict]:
        """Score texts in order; raises EmptyTextError/TypeError before doing any work."""
        return self._executor.submit(self._classify, list(texts)).result()

    async def classify_async(self, texts: Sequence[str]) -> list[Verdict]:
        """Like ``classify``, awaited: the work runs on the engine's thread, not the loop's."""
        return await asyncio.wrap_future(self._executor.submit(self._classify, list(texts)))

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        if self._lane_pool is not None:
            self._lane_pool.shutdown(wait=True)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # work on the engine thread ---------------------------------------------------------
    def _classify(self, texts: list[str]) -> list[Verdict]:
        _check(texts)
        if not texts:
            return []
        sentiment, topic = self.probabilities(texts)
        return [self._verdict(s, t) for s, t in zip(sentiment, topic, strict=True)]

    def probabilities(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated (sentiment, topic) probabilities per text, long texts chunk-averaged."""
        cleaned = [clean(t) for t in texts]
        with self._tokenizing:
            ids = self.tokenizer.ids(cleaned)
        chunks: list[list[int]] = []
        owner: list[int] = []
        for index, tokens in enumerate(ids):
            for chunk in self._windows(tokens):
                chunks.append([self.tokenizer.cls_token_id, *chunk, self.tokenizer.sep_token_id])
                owner.append(index)
        lengths = [len(chunk) for chunk in chunks]
        sentiment_logits = np.zeros((len(chunks), len(self.meta.sentiment_labels)), np.float32)
        topic_logits = np.zeros((len(chunks), len(self.meta.topic_labels)), np.float32)
        budget = self.batch_size * self.meta.max_length
        batches = list(sorted_batches(lengths, self.batch_size, budget))
        arrays = [
            pad_arrays([chunks[i] for i in batch], self.tokenizer.pad_token_id) for batch in batches
        ]
        if self._lane_pool is None:
            logits = [self._forward(*pair) for pair in arrays]
        else:
            logits = list(self._lane_pool.map(lambda pair: self._forward(*pair), arrays))
        for batch, (sentiment, topic) in zip(batches, logits, strict=True):
            sentiment_logits[batch], topic_logits[batch] = sentiment, topic
        return (
            _combine(
                softmax(sentiment_logits, self.meta.temperatures["sentiment"]),
                owner,
                lengths,
                len(texts),
            ),
            _combine(
                softmax(topic_logits, self.meta.temperatures["topic"]), owner, lengths, len(texts)
            ),
        )

    def _windows(self, tokens: list[int]) -> list[list[int]]:
        if len(tokens) <= self.window:
            return [tokens]
        starts = list(range(0, len(tokens) - self.window + self.stride, self.stride))
        starts[-1] = len(tokens) - self.window
        if len(starts) > self.max_chunks:
            log.info(
                "text of %d tokens: scoring %d of %d windows spread over it",
                len(tokens),
                self.max_chunks,
                len(starts),
            )
            picks = np.linspace(0, len(starts) - 1, self.max_chunks).round().astype(int)
            starts = [starts[i] for i in picks]
        return [tokens[start : start + self.window] for start in starts]

    def _verdict(self, sentiment: np.ndarray, topic: np.ndarray) -> Verdict:
        sentiment_probs = {
            name: float(p) for name, p in zip(self.meta.sentiment_labels, sentiment, strict=True)
        }
        top = np.argsort(-topic)[:TOP_TOPICS]
        score = sentiment_probs["positive"] - sentiment_probs["negative"]
        return Verdict(
            sentiment=self.meta.sentiment_labels[int(sentiment.argmax())],
            sentiment_probs=sentiment_probs,
            score=float(min(1.0, max(-1.0, score))),
            topic=self.meta.topic_labels[int(top[0])],
            topic_probs={self.meta.topic_labels[int(i)]: float(topic[i]) for i in top},
            model_version=self.meta.version,
        )


def _torch_forward(model: MultiTaskModel, device: torch.device) -> Forward:
    """The torch model as the engine's (input_ids, mask) -> (logits, logits) numpy call."""
    import torch

    @torch.inference_mode()
    def forward(input_ids: np.ndarray, attention_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sentiment, topic = model(
            torch.from_numpy(input_ids).to(device), torch.from_numpy(attention_mask).to(device)
        )
        return sentiment.float().cpu().numpy(), topic.float().cpu().numpy()

    return forward


def _quantise(model: torch.nn.Module) -> None:
    """Dynamic int8 quantisation of the encoder's linear layers (weights int8, activations
    quantised per batch); the heads stay fp32. torch marks the eager API deprecated in
    favour of torchao, which is not installed here; the warning says only that."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.ao.quantization.quantize_dynamic(  # type: ignore[no-untyped-call]
            model.encoder, {torch.nn.Linear}, dtype=torch.qint8, inplace=True
        )


def _check(texts: list[str]) -> None:
    wrong = [i for i, text in enumerate(texts) if not isinstance(text, str)]
    if wrong:
        kinds = sorted({type(texts[i]).__name__ for i in wrong})
        raise TypeError(f"texts must be str; positions {wrong[:10]} are {kinds}")
    empty = [i for i, text in enumerate(texts) if not text.strip()]
    if empty:
        raise EmptyTextError(
            f"nothing to score at position(s) {empty[:10]}"
            f"{' ...' if len(empty) > 10 else ''}: empty or whitespace-only text"
        )


def _combine(probs: np.ndarray, owner: list[int], weights: list[int], n: int) -> np.ndarray:
    """Token-weighted mean of chunk probabilities per text (a single chunk passes through)."""
    total = np.zeros((n, probs.shape[1]), dtype=np.float64)
    weight = np.zeros(n, dtype=np.float64)
    np.add.at(total, owner, probs * np.asarray(weights, dtype=np.float64)[:, None])
    np.add.at(weight, owner, np.asarray(weights, dtype=np.float64))
    return total / weight[:, None]


def load_engine(
    settings: Settings, model_dir: Path | None = None, *, warmup: bool = True
) -> Engine:
    """The engine as configured: ``model_dir``, else settings, registry, shipped checkpoint.

    ``warmup=False`` for one-shot use: the warm-up call only moves a resident engine's
    first-call costs out of its first real batch."""
    from models.registry import resolve_model_dir

    return Engine(
        model_dir or resolve_model_dir(settings),
        device=settings.model_device,
        backend=settings.model_backend,
        batch_size=settings.model_batch_size,
        max_chunks=settings.model_max_chunks,
        onnx_cache=settings.model_onnx_cache,
        onnx_spin=settings.model_onnx_spin,
        onnx_parallelism=settings.model_onnx_parallelism,
        warmup=warmup,
    )
