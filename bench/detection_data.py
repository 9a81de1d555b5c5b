"""The detection benchmark's inputs: real dated headlines and real negative texts, scored.

Calm data is every dated headline bundled in ``data/`` (Benzinga, CNBC, Guardian), read the
way a backfill reads it (replay's column presets, ticker extraction, dedup by id and text
fingerprint within the horizon) and scored by the shipped model. The burst pool is every
PhraseBank and Twitter sentiment (valid split) text the same model calls negative: bursts
are made of text the model itself finds negative, not of labels. Scores are cached per model
version under ``~/.cache/finsentry/detection`` (a cold run scores ~37,000 texts: minutes on a
shared CPU).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from finsentry.config import REPO_ROOT, Settings
from finsentry.schema import Post, ScoredPost

log = logging.getLogger(__name__)

CALM_INPUTS = (
    REPO_ROOT / "data" / "benzinga_headlines_sample",
    REPO_ROOT / "data" / "fin_news_headlines",
)
CACHE_DIR = Path.home() / ".cache" / "finsentry" / "detection"


def calm_posts(settings: Settings) -> list[Post]:
    """The bundled dated headlines in event-time order, duplicates dropped as backfill does."""
    from ingest.replay import MappingOptions
    from ingest.tickers import default_extractor
    from stream.backfill_input import EventOrder, TimeRange, expand_paths, plan_inputs
    from stream.dedup import Deduplicator

    files, _ = expand_paths(list(CALM_INPUTS))
    planned = plan_inputs(files, MappingOptions())
    seen: dict[str, Any] = {}
    dedup = Deduplicator(seen, settings.dedup_horizon_s)
    posts = []
    with EventOrder(
        planned,
        TimeRange(),
        received_at=datetime(2026, 1, 1, tzinfo=UTC),
        extractor=default_extractor(),
        run_size=1_000_000,
    ) as order:
        order.read()
        for item in order:
            if not dedup.check(item.post).is_duplicate:
                posts.append(item.post)
    return posts


def negative_texts() -> list[str]:
    """PhraseBank and Twitter sentiment (valid) texts, unique, in a fixed order (scored later)."""
    from models.data import load_phrasebank, load_twitter_sentiment

    examples = [*load_phrasebank(), *load_twitter_sentiment("valid")]
    return list(dict.fromkeys(example.text for example in examples if example.text.strip()))


class ScoreCache:
    """Model verdicts by text, kept in a JSONL file per model version."""

    def __init__(self, settings: Settings) -> None:
        from models.network import read_meta
        from models.registry import resolve_model_dir

        self.settings = settings
        self.model_dir = resolve_model_dir(settings)
        self.version = read_meta(self.model_dir).version
        self.path = CACHE_DIR / f"scores-{self.version}-{settings.model_backend}.jsonl"
        self.verdicts: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            with self.path.open(encoding="utf-8") as handle:
                for line in handle:
                    digest, verdict = json.loads(line)
                    self.verdicts[digest] = verdict

    def score(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        """Verdicts for ``texts`` in order; only texts not cached yet go to the model."""
        missing = list(dict.fromkeys(t for t in texts if _digest(t) not in self.verdicts))
        if missing:
            self._score(missing)
        return [self.verdicts[_digest(text)] for text in texts]

    def _score(self, texts: list[str]) -> None:
        from models.engine import load_engine

        log.info("scoring %d texts with %s (cached in %s)", len(texts), self.version, self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with load_engine(self.settings, self.model_dir) as engine, self.path.open("a") as out:
            for start in range(0, len(texts), 512):
                chunk = texts[start : start + 512]
                for text, verdict in zip(chunk, engine.classify(chunk), strict=True):
                    self.verdicts[_digest(text)] = dict(verdict)
                    out.write(json.dumps([_digest(text), verdict]) + "\n")
                out.flush()
                log.info("scored %d of %d", min(start + 512, len(texts)), len(texts))


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def scored_posts(posts: Sequence[Post], cache: ScoreCache) -> list[ScoredPost]:
    verdicts = cache.score([post.text for post in posts])
    return [ScoredPost.from_post(post, **v) for post, v in zip(posts, verdicts, strict=True)]


def negative_pool(cache: ScoreCache) -> list[tuple[str, dict[str, Any]]]:
    """(text, verdict) of every pool text that the model calls negative."""
    texts = negative_texts()
    return [
        (text, verdict)
        for text, verdict in zip(texts, cache.score(texts), strict=True)
        if verdict["sentiment"] == "negative"
    ]
