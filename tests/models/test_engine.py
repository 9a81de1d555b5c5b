"""The inference engine on the shipped checkpoint: batching, order, chunking, odd inputs,
the wire shape of its output, threads and asyncio."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime

import numpy as np
import pytest

from finsentry.schema import SENTIMENTS, TOPICS, Post, ScoredPost
from models.engine import EmptyTextError, Engine

pytestmark = pytest.mark.unit

TEXTS = [
    "Operating profit rose to EUR 13.1 mn from EUR 8.7 mn in the corresponding period in 2007.",
    "$TSLA - Tesla shares slide after deliveries miss estimates https://t.co/abc",
    "Fed's Powell says rate hikes may slow",
    "ECB",
    "Apple to buy a start-up for $1 billion, sources say",
    "The company said it would cut 500 jobs.",
]


def _probs(verdicts: list[dict]) -> np.ndarray:
    return np.array([[v["sentiment_probs"][s] for s in SENTIMENTS] for v in verdicts])


def test_batched_and_one_by_one_agree_in_fp32(engine: Engine) -> None:
    batched = engine.classify(TEXTS)
    single = [engine.classify([text])[0] for text in TEXTS]
    assert np.abs(_probs(batched) - _probs(single)).max() < 1e-5
    for b, s in zip(batched, single, strict=True):
        assert b["topic"] == s["topic"]
        for name, p in b["topic_probs"].items():
            assert abs(p - s["topic_probs"][name]) < 1e-5


def test_output_order_follows_input_order(engine: Engine) -> None:
    forward = engine.classify(TEXTS)
    backward = engine.classify(TEXTS[::-1])
    assert np.abs(_probs(forward) - _probs(backward[::-1])).max() < 1e-5


def test_verdict_validates_as_a_scored_post(engine: Engine) -> None:
    verdict = engine.classify([TEXTS[1]])[0]
    now = datetime.now(UTC)
    post = Post(
        id="t:1", source="webhook", kind="social", published_at=now, received_at=now, title=TEXTS[1]
    )
    scored = ScoredPost.from_post(post, **verdict)
    assert scored.topic in TOPICS and len(scored.topic_probs) == 3
    assert scored.score == pytest.approx(
        verdict["sentiment_probs"]["positive"] - verdict["sentiment_probs"]["negative"]
    )
    assert scored.model_version == engine.version


def test_long_text_is_split_into_windows_whose_probabilities_are_averaged(engine: Engine) -> None:
    sentence = "Profit warning: the company expects sharply lower sales and deep losses. "
    long_text = sentence * 60
    tokens = engine.tokenizer(long_text, add_special_tokens=False)["input_ids"]
    windows = engine._windows(tokens)
    assert len(tokens) > engine.window and len(windows) > 1
    assert windows[0] == tokens[: engine.window] and windows[-1] == tokens[-engine.window :]
    assert all(len(w) <= engine.window for w in windows)
    whole = engine.classify([long_text])[0]
    assert whole["sentiment"] == "negative"
    sentiment, _ = engine.probabilities([engine.tokenizer.decode(w) for w in windows])
    weights = np.array([len(w) + 2 for w in windows], dtype=float)
    expected = (sentiment * weights[:, None]).sum(0) / weights.sum()
    assert np.abs(_probs([whole])[0] - expected).max() < 1e-3


def test_megabyte_text_is_scored_within_the_window_budget(engine: Engine) -> None:
    huge = ("Markets were mixed today as investors weighed earnings. " * 20_000)[:1_000_000]
    tokens = engine.tokenizer(huge, add_special_tokens=False)["input_ids"]
    assert len(engine._windows(tokens)) == engine.max_chunks
    verdict = engine.classify([huge])[0]
    assert sum(verdict["sentiment_probs"].values()) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize(
    "text",
    [
        "🚀🚀🚀",
        "📉",
        "Die Aktie fiel nach der Gewinnwarnung um 10 Prozent.",
        "株価が急落した",
        "https://t.co/only-a-link",
        "a",
        "$$$ !!!",
    ],
)
def test_odd_but_non_empty_inputs_get_a_valid_verdict(engine: Engine, text: str) -> None:
    verdict = engine.classify([text])[0]
    assert verdict["sentiment"] in SENTIMENTS and verdict["topic"] in TOPICS
    assert sum(verdict["sentiment_probs"].values()) == pytest.approx(1.0, abs=1e-4)
    assert -1.0 <= verdict["score"] <= 1.0


@pytest.mark.parametrize("text", ["", "   ", "\n\t "])
def test_empty_or_blank_text_is_a_clear_error_naming_its_position(
    engine: Engine, text: str
) -> None:
    with pytest.raises(EmptyTextError, match=r"position\(s\) \[1\]"):
        engine.classify(["fine", text])


def test_non_string_input_is_a_type_error(engine: Engine) -> None:
    with pytest.raises(TypeError, match=r"positions \[0\]"):
        engine.classify([None])  # type: ignore[list-item]


def test_empty_batch_gives_no_verdicts(engine: Engine) -> None:
    assert engine.classify([]) == []


def test_classify_async_leaves_the_event_loop_free(engine: Engine) -> None:
    async def scenario() -> tuple[list[dict], int]:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        verdicts = await engine.classify_async(TEXTS * 20)
        done.set()
        await task
        return verdicts, ticks

    verdicts, ticks = asyncio.run(scenario())
    assert len(verdicts) == len(TEXTS) * 20
    assert ticks > 10


def test_concurrent_callers_get_their_own_results(engine: Engine) -> None:
    expected = engine.classify(TEXTS)
    results: dict[int, list[dict]] = {}

    def call(index: int) -> None:
        results[index] = engine.classify(TEXTS[index:] + TEXTS[:index])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(TEXTS))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, verdicts in results.items():
        rotated = expected[index:] + expected[:index]
        assert [v["topic"] for v in verdicts] == [v["topic"] for v in rotated]
        assert np.abs(_probs(verdicts) - _probs(rotated)).max() < 1e-5
