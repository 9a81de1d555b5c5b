"""Retraining on a tiny budget with the real model, store, Kafka and worker process.

The gate judges on a fixed seeded sample of the test splits (``retrain_eval_sample``) so
each run takes a minute or two on a CPU. A candidate trained with a learning rate far too
high is worse and rejected; a candidate given analyst feedback that corrects the current
model's errors on that sample is better (by construction: it has seen those texts, which
the run records as ``feedback_in_evaluation``) and is promoted, and a running worker swaps
to it between two batches without losing a post.
"""

from __future__ import annotations

import json
import threading
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer
from typer.testing import CliRunner

from finsentry.config import Settings, load_settings
from finsentry.locks import FileLock
from finsentry.schema import SENTIMENTS, TOPICS, Post
from finsentry.store import Store
from finsentry.topics import ensure_topics
from models.evaluate import TASK_OF_SET, predict_logits
from models.network import load_model
from models.registry import SHIPPED_DIR, SHIPPED_VERSION, Registry, RegistryError
from models.retrain import candidates_dir, run_retrain
from models.retrain_data import sample_sets
from models.splits import Splits
from stream.process import WorkerProcess
from tests.stream.test_worker import make_post, produce, start, unique_headlines
from tests.support import wait_until

SAMPLE = 30


def retrain_settings(kafka_settings: Settings, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "var",
        "store_url": f"sqlite:///{tmp_path / 'store.db'}",
        "kafka_bootstrap": kafka_settings.bootstrap_servers,
        "kafka_topic_prefix": f"r{uuid.uuid4().hex[:8]}.",
        "kafka_partitions": 1,
        "window_size_s": 3600,
        "allowed_lateness_s": 6 * 3600,
        "retrain_eval_sample": SAMPLE,
        "retrain_train_limit": 8,
        "retrain_batch_size": 16,
        "retrain_device": "cpu",
        "retrain_tolerance": 0.0,
    }
    values.update(overrides)
    return load_settings(**values)


def model_updates(settings: Settings) -> list[bytes]:
    ensure_topics(settings)
    consumer = KafkaConsumer(
        settings.topic("model-updates"),
        bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="earliest",
        group_id=None,
        consumer_timeout_ms=5_000,
    )
    try:
        return [record.value for record in consumer]
    finally:
        consumer.close()


@pytest.mark.integration
def test_a_worse_candidate_is_rejected_with_the_reason_kept_and_never_served(
    kafka_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = retrain_settings(
        kafka_settings, tmp_path, retrain_learning_rate=3e-3, retrain_max_steps=2
    )
    outcome = run_retrain(settings)
    assert outcome.decision == "rejected"
    assert outcome.reason.startswith("worse beyond tolerance 0 on ")
    assert outcome.current_metrics and outcome.candidate_metrics
    worse = [m for m, v in outcome.candidate_metrics.items() if v < outcome.current_metrics[m]]
    assert worse and all(name in outcome.reason for name in worse)

    store = Store(settings.database_url)
    try:
        (run,) = store.retrain_runs()
        assert run["decision"] == "rejected" and run["reason"] == outcome.reason
        assert run["current_version"] == SHIPPED_VERSION
        assert run["candidate_version"] == outcome.candidate_version
        assert run["current_metrics"] == outcome.current_metrics
        assert run["candidate_metrics"] == outcome.candidate_metrics
        assert len(run["data_fingerprint"]) == 64
        assert run["details"]["training"]["steps"] == 2
        assert run["details"]["test_twitter_topic"] == SAMPLE
        registry = Registry(store)
        candidate = registry.get(outcome.candidate_version or "")
        assert candidate["status"] == "rejected" and not candidate["is_current"]
        assert Path(candidate["path"]).parent == candidates_dir(settings).resolve()
        assert registry.current_dir() == SHIPPED_DIR
        with pytest.raises(RegistryError, match="rejected by the retraining gate"):
            registry.promote(candidate["version"])
    finally:
        store.close()
    assert model_updates(settings) == []

    from finsentry.config import get_settings
    from models.cli import models_app

    monkeypatch.setenv("FINSENTRY_STORE_URL", settings.database_url)
    monkeypatch.setenv("FINSENTRY_KAFKA_BOOTSTRAP", settings.bootstrap_servers)
    monkeypatch.setenv("FINSENTRY_KAFKA_TOPIC_PREFIX", settings.kafka_topic_prefix)
    get_settings.cache_clear()
    runner = CliRunner()
    listed = runner.invoke(models_app, ["runs"])
    assert f"rejected     {SHIPPED_VERSION} -> {outcome.candidate_version}" in listed.output
    forced = runner.invoke(models_app, ["promote", candidate["version"], "--force", "--publish"])
    get_settings.cache_clear()
    assert forced.exit_code == 0, forced.output
    (update,) = [json.loads(raw) for raw in model_updates(settings)]
    assert update["version"] == candidate["version"]


def current_model_errors(splits: Splits) -> list[tuple[str, str, str]]:
    """(text, field, true label) for the gate sample's texts the shipped model gets wrong."""
    model, tokenizer, meta = load_model(SHIPPED_DIR)
    errors = []
    for name, examples in sample_sets(splits.test, SAMPLE).items():
        sentiment, topic = predict_logits(
            model, tokenizer, [e.text for e in examples], meta.max_length
        )
        task = TASK_OF_SET[name]
        predicted = (topic if task == "topic" else sentiment).argmax(axis=1)
        labels = TOPICS if task == "topic" else SENTIMENTS
        errors += [
            (e.text, task, labels[e.label])
            for e, guess in zip(examples, predicted, strict=True)
            if guess != e.label
        ]
    return errors


@pytest.mark.integration
def test_a_better_candidate_is_promoted_and_a_running_worker_swaps_without_losing_posts(
    kafka_settings: Settings,
    tmp_path: Path,
    run_worker: list[WorkerProcess],
    splits: Splits,
) -> None:
    settings = retrain_settings(kafka_settings, tmp_path, retrain_feedback_repeat=3)
    store = Store(settings.database_url)
    errors = current_model_errors(splits)
    assert len(errors) >= 10
    now = datetime.now(UTC)
    for n, (text, field, label) in enumerate(errors):
        post = Post(
            id=f"fb:{n}", source="rss:t", kind="news", published_at=now, received_at=now, title=text
        )
        store.upsert_posts([post])
        store.add_feedback(post.id, field, label, user="analyst")

    worker = start(settings, run_worker)
    titles = unique_headlines(200)
    first = [make_post(n, t, minutes=n) for n, t in enumerate(titles[:100])]
    second = [make_post(100 + n, t, minutes=100 + n) for n, t in enumerate(titles[100:])]
    produce(settings, [p.to_json() for p in first])

    outcome = run_retrain(settings, trigger="manual")
    assert outcome.decision == "promoted", outcome.reason
    assert outcome.reason.startswith("better on ")
    new = outcome.candidate_version
    assert new is not None
    (update,) = [json.loads(raw) for raw in model_updates(settings)]
    assert update["version"] == new
    assert Path(update["path"]) == (candidates_dir(settings) / new).resolve()
    wait_until(lambda: _worker_version(worker) == new, 180, "the worker to swap models")
    produce(settings, [p.to_json() for p in second])
    wait_until(lambda: len(_scored(store)) >= 200, 300, "all 200 posts stored")

    versions = _scored(store)
    assert set(versions) == {p.id for p in first + second}
    assert {versions[p.id] for p in second} == {new}
    assert {versions[p.id] for p in first} <= {SHIPPED_VERSION, new}
    registry = Registry(store)
    assert registry.current_dir() == (candidates_dir(settings) / new).resolve()
    statuses = {r["version"]: r["status"] for r in registry.versions()}
    assert statuses == {SHIPPED_VERSION: "promoted", new: "promoted"}
    (run,) = store.retrain_runs()
    assert run["decision"] == "promoted"
    assert run["details"]["feedback_examples"] == len(errors)
    assert run["details"]["feedback_in_evaluation"] == len(errors)
    store.close()


def _worker_version(worker: WorkerProcess) -> str:
    with urllib.request.urlopen(f"{worker.url}/health", timeout=5) as reply:
        return str(json.loads(reply.read())["model_version"])


def _scored(store: Store) -> dict[str, str]:
    from sqlalchemy import select

    from finsentry.store import posts

    with store.engine.connect() as conn:
        rows = conn.execute(
            select(posts.c.id, posts.c.model_version).where(posts.c.score.is_not(None))
        )
        return {row.id: row.model_version for row in rows}


@pytest.mark.integration
def test_a_stop_request_interrupts_the_run_and_leaves_no_candidate(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, retrain_train_limit=8, retrain_device="cpu")
    stop = threading.Event()
    stop.set()
    outcome = run_retrain(settings, stop=stop)
    assert outcome.decision == "interrupted"
    assert outcome.reason.startswith("stop requested: stopped at step 0")
    assert list(candidates_dir(settings).glob("*")) == []
    store = Store(settings.database_url)
    try:
        assert [v["version"] for v in store.model_versions()] == [SHIPPED_VERSION]
        assert store.retrain_runs()[0]["decision"] == "interrupted"
    finally:
        store.close()


@pytest.mark.unit
def test_a_run_while_another_holds_the_lock_is_recorded_as_skipped(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    with FileLock(tmp_path / "retrain.lock", "a retraining run"):
        outcome = run_retrain(settings)
    assert outcome.decision == "skipped"
    assert "a retraining run already running" in outcome.reason
    store = Store(settings.database_url)
    try:
        (run,) = store.retrain_runs()
        assert run["decision"] == "skipped" and run["finished_at"] is not None
    finally:
        store.close()


@pytest.mark.unit
def test_a_failing_run_is_recorded_with_the_error_and_leaves_no_candidate(tmp_path: Path) -> None:
    broken = tmp_path / "broken"  # metadata of a model, but no weights
    broken.mkdir()
    config = json.loads((SHIPPED_DIR / "config.json").read_text())
    config["finsentry"]["version"] = "broken"
    (broken / "config.json").write_text(json.dumps(config))
    (broken / "metrics.json").write_text((SHIPPED_DIR / "metrics.json").read_text())
    settings = load_settings(data_dir=tmp_path / "var", retrain_train_limit=4)
    store = Store(settings.database_url)
    try:
        Registry(store).register(broken, current=True)
        outcome = run_retrain(settings)
        assert outcome.decision == "failed"
        assert (
            outcome.reason.startswith("ModelDirError: ") and "model.safetensors" in outcome.reason
        )
        (run,) = store.retrain_runs()
        assert run["decision"] == "failed" and run["reason"] == outcome.reason
        assert list(candidates_dir(settings).glob("*")) == []
    finally:
        store.close()
