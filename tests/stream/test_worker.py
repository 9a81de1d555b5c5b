"""The real worker process on the real broker, with the real model."""

from __future__ import annotations

import base64
import contextlib
import csv
import json
import os
import shutil
import sqlite3
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from sqlalchemy import select

from finsentry.config import REPO_ROOT, Settings, load_settings
from finsentry.schema import DeadLetter, ModelUpdate, Post
from finsentry.store import Store, signal_points
from finsentry.text import fingerprint
from stream.app import app_id
from stream.dedup import Deduplicator
from stream.process import WorkerProcess
from stream.windows import observations_from_json
from tests.support import committed_total, read_to_end, wait_until

pytestmark = pytest.mark.integration

T0 = datetime(2024, 5, 1, tzinfo=UTC)
HEADLINES = REPO_ROOT / "data" / "fin_news_headlines"


def worker_settings(kafka_settings: Settings, tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": tmp_path / "var",
        "kafka_bootstrap": kafka_settings.bootstrap_servers,
        "kafka_topic_prefix": f"w{uuid.uuid4().hex[:8]}.",
        "kafka_partitions": 1,
        "store_url": f"sqlite:///{tmp_path / 'store.db'}",
        "window_size_s": 3600,
        "allowed_lateness_s": 6 * 3600,
    }
    values.update(overrides)
    return load_settings(**values)


def start(settings: Settings, started: list[WorkerProcess], **env: str) -> WorkerProcess:
    worker = WorkerProcess(settings, settings.data_dir.parent / "worker.log", **env)
    started.append(worker)
    worker.start()
    return worker


def unique_headlines(limit: int) -> list[str]:
    titles: dict[str, str] = {}
    for name in ("cnbc_headlines.csv", "guardian_headlines.csv"):
        with (HEADLINES / name).open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                title = " ".join((row.get("Headlines") or "").split())
                if title:
                    titles.setdefault(fingerprint(title), title)
    return list(titles.values())[:limit]


def make_post(n: int, title: str, minutes: float, ticker: str = "AAPL") -> Post:
    return Post(
        id=f"test:{n}",
        source="replay:headlines",
        kind="news",
        published_at=T0 + timedelta(minutes=minutes),
        received_at=datetime.now(UTC),
        title=title,
        tickers=(ticker,),
    )


def produce(settings: Settings, values: list[bytes], topic: str = "posts") -> None:
    producer = KafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, acks="all", max_request_size=8_000_000
    )
    try:
        futures = [producer.send(settings.topic(topic), value=value) for value in values]
        producer.flush()
        for future in futures:
            future.get(timeout=30)  # raises if the broker refused a message
    finally:
        producer.close()


def produce_steadily(settings: Settings, values: list[bytes], per_second: float) -> None:
    """Sends ``values`` at a steady rate, as a live feed does (pacing, not waiting)."""
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    try:
        for value in values:
            producer.send(settings.topic("posts"), value=value).get(timeout=30)
            time.sleep(1 / per_second)
    finally:
        producer.close()


def stored_ids(settings: Settings) -> dict[str, str]:
    store = Store(settings.database_url)
    try:
        with store.engine.connect() as conn:
            from finsentry.store import posts

            rows = conn.execute(select(posts.c.id, posts.c.model_version, posts.c.score))
            return {row.id: row.model_version for row in rows if row.score is not None}
    finally:
        store.close()


def wait_stored(settings: Settings, count: int, timeout_s: float, worker: WorkerProcess) -> None:
    """Waits for ``count`` scored posts in the store; a timeout says how many came, what the
    worker's liveness check makes of it and what the worker logged last."""
    try:
        wait_until(lambda: len(stored_ids(settings)) >= count, timeout_s, f"{count} posts stored")
    except TimeoutError:
        try:
            health: object = _health_answer(worker)
        except OSError as exc:  # the worker exited, or its web server is stuck too
            health = repr(exc)
        raise AssertionError(
            f"{len(stored_ids(settings))} of {count} posts stored after {timeout_s}s; "
            f"/health: {health}; worker log:\n{worker.tail(60)}"
        ) from None


def malformed(count: int) -> list[bytes]:
    good = json.loads(make_post(0, "x", 0).to_json())
    bad: list[bytes] = [b"{not json", b"\xff\xfe\x00garbage"]
    for n in range(count - 3):
        case = dict(good, id=f"bad:{n}")
        match n % 3:
            case 0:
                del case["published_at"]
            case 1:
                case["tickers"] = "AAPL"
            case _:
                case["published_at"] = "yesterday"
        bad.append(json.dumps(case).encode())
    bad.append(json.dumps(dict(good, id="bad:huge", body="x" * 5_000_000)).encode())
    return bad


def test_two_thousand_posts_with_garbage_and_duplicates(
    kafka_settings: Settings, tmp_path: Path, run_worker: list[WorkerProcess]
) -> None:
    settings = worker_settings(kafka_settings, tmp_path, kafka_partitions=2)
    titles = unique_headlines(2000)
    assert len(titles) == 2000
    posts = [make_post(n, title, minutes=n) for n, title in enumerate(titles)]
    resent = [post.to_json() for post in posts[:100]]  # exact duplicates
    syndicated = [  # same story, other id, other case / punctuation / link
        make_post(10_000 + n, f"{p.title.upper()}!! https://t.co/x{n}", minutes=n + 1).to_json()
        for n, p in enumerate(posts[100:200])
    ]
    bad = malformed(60)
    values = [p.to_json() for p in posts] + resent + syndicated + bad
    worker = start(settings, run_worker)
    produce(settings, values)

    wait_until(lambda: len(stored_ids(settings)) >= len(posts), 600, "every unique post stored")
    assert set(stored_ids(settings)) == {p.id for p in posts}

    letters = read_topic(settings, "deadletter", len(bad))
    assert len(letters) == len(bad)
    reasons = {DeadLetter.from_json(v).reason for v in letters}
    assert reasons == {"not_json", "undecodable", "invalid", "oversized"}
    metrics = urllib.request.urlopen(f"{worker.url}/metrics").read().decode()
    assert 'finsentry_duplicates_total{kind="id"} 100.0' in metrics
    assert 'finsentry_duplicates_total{kind="fingerprint"} 100.0' in metrics
    assert f"finsentry_scored_total {float(len(posts))}" in metrics
    assert "finsentry_consumer_lag{" in metrics
    assert worker.stop() == 0


def test_garbage_on_valid_posts_is_dead_lettered_and_the_worker_goes_on(
    kafka_settings: Settings, tmp_path: Path, run_worker: list[WorkerProcess]
) -> None:
    """Any producer can write valid-posts: its garbage once stopped the worker for good."""
    settings = worker_settings(kafka_settings, tmp_path)
    start(settings, run_worker)
    produce(settings, [b"{not json", b'{"id": "no-fields"}'], topic="valid-posts")
    posts = [make_post(n, t, minutes=n) for n, t in enumerate(unique_headlines(50))]
    produce(settings, [p.to_json() for p in posts])

    wait_until(lambda: len(stored_ids(settings)) >= len(posts), 300, "the posts after it stored")
    assert set(stored_ids(settings)) == {p.id for p in posts}
    letters = [DeadLetter.from_json(v) for v in read_topic(settings, "deadletter", 2)]
    assert sorted(letter.reason for letter in letters) == ["invalid", "not_json"]
    assert {letter.source_topic for letter in letters} == {settings.topic("valid-posts")}


def test_a_post_that_fails_admission_is_dead_lettered_as_unprocessable(
    kafka_settings: Settings, tmp_path: Path, run_worker: list[WorkerProcess]
) -> None:
    """Dedup state the worker cannot read (a bare float, as an old format wrote) fails the
    one post that meets it; that post becomes a dead letter and the stream goes on."""
    settings = worker_settings(kafka_settings, tmp_path)
    posts = [make_post(n, t, minutes=n) for n, t in enumerate(unique_headlines(30))]
    victim = posts[10]
    changelog = f"{app_id(settings)}-dedup-seen-changelog"
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    try:
        admin.create_topics([NewTopic(changelog, num_partitions=1, replication_factor=1)])
    finally:
        admin.close()
    produce_raw(settings, changelog, json.dumps(f"fp:{victim.fingerprint}").encode(), b"1.5")
    start(settings, run_worker)
    produce(settings, [p.to_json() for p in posts])

    wait_until(lambda: len(stored_ids(settings)) >= len(posts) - 1, 300, "the other posts")
    (letter,) = [DeadLetter.from_json(v) for v in read_topic(settings, "deadletter", 1)]
    assert letter.reason == "unprocessable" and "TypeError" in letter.error
    assert Post.from_json(base64.b64decode(letter.raw_base64)).id == victim.id
    assert set(stored_ids(settings)) == {p.id for p in posts} - {victim.id}


def test_inputs_with_nothing_to_score_are_not_acknowledged_ahead_of_waiting_posts(
    kafka_settings: Settings, tmp_path: Path, run_worker: list[WorkerProcess]
) -> None:
    """A duplicate or a dead letter is done with at once, while the post before it waits
    for its batch. Faust commits past acknowledged offsets if the first of them is at most
    one beyond the committed offset: acknowledged at once, the duplicate right after a
    waiting post let a commit pass that post, and a crash then lost it."""
    settings = worker_settings(kafka_settings, tmp_path)
    first, waiting, after = (make_post(n, t, minutes=n) for n, t in enumerate(unique_headlines(3)))
    start(settings, run_worker, FINSENTRY_STREAM_BATCH_WITHIN_S="15")
    send_keyed(settings, [first])
    wait_until(
        lambda: committed_total(settings, app_id(settings), "posts") == 1,
        120,
        "the first post committed",
    )

    # The duplicate and the garbage right behind the waiting post, at offsets 2 and 3.
    send_keyed(settings, [waiting, first, b"{not json", after])

    def every_input_committed() -> bool:
        committed = committed_total(settings, app_id(settings), "posts")
        stored = stored_ids(settings)  # read after: stored posts only ever grow
        assert committed <= 1 or waiting.id in stored, (
            f"offsets below {committed} committed before {waiting.id}, at offset 1, was stored"
        )
        return committed == 5

    wait_until(every_input_committed, 120, "every input committed")
    assert set(stored_ids(settings)) == {first.id, waiting.id, after.id}


def send_keyed(settings: Settings, values: list[Post | bytes]) -> None:
    """Posts keyed by their fingerprint, as ingest keys them, so they are scored off posts."""
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    try:
        for value in values:
            if isinstance(value, Post):
                key, value = Deduplicator.routing_key(value).encode(), value.to_json()
            else:
                key = b"garbage"
            producer.send(settings.topic("posts"), key=key, value=value).get(timeout=30)
    finally:
        producer.close()


def leave_a_backlog(settings: Settings, run_worker: list[WorkerProcess], posts: list[Post]) -> None:
    """A worker scores the first post and stops; the rest wait for the next worker, which
    then has a dedup changelog to recover first."""
    first = start(settings, run_worker)
    send_keyed(settings, posts[:1])
    wait_until(
        lambda: committed_total(settings, app_id(settings), "posts") == 1,
        120,
        "the first post committed",
    )
    assert first.stop() == 0
    send_keyed(settings, posts[1:])


def python_path_with_hook(folder: Path, code: str) -> str:
    """A PYTHONPATH under which a worker process loads ``code`` as its sitecustomize."""
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(code, encoding="utf-8")
    return os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH", "")) if p)


def produce_raw(settings: Settings, topic: str, key: bytes, value: bytes) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    try:
        producer.send(topic, key=key, value=value).get(timeout=30)
    finally:
        producer.close()


def read_topic(settings: Settings, topic: str, expected: int) -> list[bytes]:
    consumer = KafkaConsumer(
        settings.topic(topic),
        bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="earliest",
        group_id=None,
        consumer_timeout_ms=10_000,
        fetch_max_bytes=16_000_000,
        max_partition_fetch_bytes=16_000_000,
    )
    values: list[bytes] = []
    try:
        for record in consumer:
            values.append(record.value)
            if len(values) >= expected:
                break
    finally:
        consumer.close()
    return values


CALM = [
    "Company reports steady quarterly results in line with expectations",
    "Shares rise after the company beats earnings estimates",
    "Company announces new product launch and raises guidance",
    "Board approves quarterly dividend at the usual rate",
    "Company opens a new office and hires staff",
    "Analysts keep their rating unchanged after the meeting",
]
BURST = [
    "ZZZZ shares plunge after fraud investigation and profit warning",
    "ZZZZ misses estimates badly and cuts full-year guidance",
    "ZZZZ stock crashes as regulator sues over accounting fraud",
    "ZZZZ reports heavy losses and announces mass layoffs",
    "ZZZZ downgraded to sell after revenue collapse",
    "ZZZZ shares tumble on bankruptcy fears",
    "ZZZZ suspends dividend after a huge quarterly loss",
    "ZZZZ faces lawsuit and shares fall sharply",
]


def spike_story(with_burst: bool) -> list[Post]:
    """Six calm hours for ZZZZ, then (maybe) two hours of bad news, then a calm tail."""
    story, n = [], 0
    for hour in range(10):
        texts = BURST if with_burst and hour in (6, 7) else CALM
        for k, text in enumerate(texts):
            story.append(make_post(n, f"{text} ({hour}.{k})", hour * 60 + k, ticker="ZZZZ"))
            n += 1
    story.append(make_post(n, "ZZZZ holds its annual meeting", 20 * 60, ticker="ZZZZ"))
    return story  # the last post moves the watermark past every window above


@pytest.mark.parametrize("with_burst", [True, False], ids=["burst", "calm"])
def test_burst_gives_exactly_one_alert(
    kafka_settings: Settings, tmp_path: Path, run_worker: list[WorkerProcess], with_burst: bool
) -> None:
    settings = worker_settings(kafka_settings, tmp_path)
    start(settings, run_worker)
    story = spike_story(with_burst)
    produce(settings, [p.to_json() for p in story])
    store = Store(settings.database_url)
    wait_until(lambda: len(store.signal_series("ticker:ZZZZ")) >= 10, 300, "ten ZZZZ windows")
    alerts = [a for a in _alerts(store) if a["key"] == "ticker:ZZZZ"]
    if with_burst:
        (alert,) = alerts
        assert alert["window_start"] == T0 + timedelta(hours=6)
        assert alert["evidence"] and "ZZZZ" in alert["evidence"][0]["title"]
    else:
        assert alerts == []


def _alerts(store: Store) -> list[dict[str, object]]:
    from finsentry.store import alerts

    with store.engine.connect() as conn:
        return [dict(row) for row in conn.execute(select(alerts)).mappings()]


def test_crash_and_restart_count_every_post_once(
    kafka_settings: Settings, tmp_path: Path, run_worker: list[WorkerProcess]
) -> None:
    titles = unique_headlines(600)
    posts = [make_post(n, t, minutes=n * 2) for n, t in enumerate(titles)]
    values = [p.to_json() for p in posts]
    fp32 = {"FINSENTRY_MODEL_BACKEND": "fp32"}  # identical scores whatever the batching

    crashed = worker_settings(kafka_settings, tmp_path / "crashed")
    worker = start(crashed, run_worker, **fp32)
    produce(crashed, values)
    wait_until(lambda: len(stored_ids(crashed)) >= 100, 300, "a first part stored")
    worker.kill()
    assert len(stored_ids(crashed)) < len(posts), "the kill should land mid-stream"
    # A short stall timeout: should Faust's recovery leave the restarted worker without its
    # place (stream/liveness.py), it seeks back well within the wait, and its log says so.
    restarted = start(crashed, run_worker, **fp32, FINSENTRY_WORKER_STALL_TIMEOUT_S="60")
    wait_stored(crashed, len(posts), 240, restarted)

    calm = worker_settings(kafka_settings, tmp_path / "uninterrupted")
    uninterrupted = start(calm, run_worker, **fp32)
    produce(calm, values)
    wait_stored(calm, len(posts), 180, uninterrupted)

    assert set(stored_ids(crashed)) == set(stored_ids(calm)) == {p.id for p in posts}
    last_window = T0 + timedelta(minutes=2 * len(posts) - 6 * 60 - 60)
    wait_until(
        lambda: _points(crashed, last_window) == _points(calm, last_window),
        120,
        "signal points of both runs to agree",
    )
    assert len(_points(calm, last_window)) > 10


SLOW_SEEK = """\
import asyncio

from faust.transport.consumer import Consumer

_perform_seek = Consumer.perform_seek


async def perform_seek(self):
    await _perform_seek(self)
    await asyncio.sleep(2.0)


Consumer.perform_seek = perform_seek
"""


def test_a_worker_joining_and_leaving_mid_stream_loses_nothing(
    kafka_settings: Settings, tmp_path: Path, run_worker: list[WorkerProcess]
) -> None:
    """Scaling out and back in while posts keep coming: two rebalances mid-stream."""
    settings = worker_settings(kafka_settings, tmp_path, kafka_partitions=2)
    posts = [make_post(n, t, minutes=n) for n, t in enumerate(unique_headlines(2000))]
    first = start(settings, run_worker)
    with ThreadPoolExecutor(1) as feeder:
        feeding = feeder.submit(produce_steadily, settings, [p.to_json() for p in posts], 50)
        wait_stored(settings, 100, 120, first)
        second = start(settings, run_worker)
        wait_until(lambda: _scored(second) >= 50, 120, "the second worker scoring its share")
        assert not feeding.done(), "the second worker should leave while posts still come"
        assert second.stop() == 0
        feeding.result()
    wait_stored(settings, len(posts), 300, first)
    assert set(stored_ids(settings)) == {p.id for p in posts}


def test_a_restarted_worker_scores_the_whole_backlog_it_finds(
    kafka_settings: Settings, tmp_path: Path, run_worker: list[WorkerProcess]
) -> None:
    """A worker that recovers tables and finds a backlog scores all of it.

    Faust ends a recovery by seeking the input back to its committed offsets, then empties
    the streams' queues; a fetch in between was lost (stream/app.py,
    hold_fetching_until_seeked). The window is short, so the restarted worker here runs with
    Faust's seek followed by a 2 s pause (loaded as sitecustomize), so a fetch lands in it,
    and with batches of 4, so it cannot score the backlog of 600 within the pause."""
    settings = worker_settings(kafka_settings, tmp_path)
    posts = [make_post(n, t, minutes=n) for n, t in enumerate(unique_headlines(601))]
    leave_a_backlog(settings, run_worker, posts)

    path = python_path_with_hook(tmp_path / "slow_seek", SLOW_SEEK)
    restarted = start(settings, run_worker, PYTHONPATH=path, FINSENTRY_STREAM_BATCH_SIZE="4")
    assert "Restoring state from changelog topics" in restarted.tail(400)

    def all_stored() -> bool:
        return len(stored_ids(settings)) == len(posts)

    try:
        wait_until(all_stored, 180, "every post of the backlog stored")
    except TimeoutError:
        committed = committed_total(settings, app_id(settings), "posts")
        stored = len(stored_ids(settings))
        pytest.fail(f"{stored} of {len(posts)} posts stored, offsets below {committed} committed")


def _points(settings: Settings, before: datetime) -> list[tuple[object, ...]]:
    store = Store(settings.database_url)
    try:
        with store.engine.connect() as conn:
            rows = conn.execute(
                select(signal_points)
                .where(signal_points.c.window_start < before)
                .order_by(signal_points.c.key, signal_points.c.window_start)
            )
            return [
                (
                    r.key,
                    r.window_start,
                    r.count,
                    round(r.mean_score, 4),
                    round(r.neg_share, 4),
                    r.is_spike,
                )
                for r in rows
            ]
    finally:
        store.close()


def test_hot_swap_between_batches(
    kafka_settings: Settings, tmp_path: Path, run_worker: list[WorkerProcess]
) -> None:
    from models.registry import Registry, resolve_model_dir

    settings = worker_settings(kafka_settings, tmp_path)
    current = resolve_model_dir(settings)
    candidate = tmp_path / "candidate"
    shutil.copytree(current, candidate)
    config = json.loads((candidate / "config.json").read_text())
    old_version = config["finsentry"]["version"]
    config["finsentry"]["version"] = "hot-swap-test"
    (candidate / "config.json").write_text(json.dumps(config))

    worker = start(settings, run_worker)
    titles = unique_headlines(200)
    first = [make_post(n, t, minutes=n) for n, t in enumerate(titles[:100])]
    second = [make_post(100 + n, t, minutes=100 + n) for n, t in enumerate(titles[100:])]
    produce(settings, [p.to_json() for p in first])
    # A version the registry lacks is never loaded, whatever directory the message names
    # (before, the worker loaded any path it was sent).
    unknown = ModelUpdate(version="not-registered", path=str(candidate))
    produce(settings, [unknown.to_json()], topic="model-updates")
    wait_until(
        lambda: "ignoring model update for 'not-registered'" in worker.tail(400), 60, "refusal"
    )
    assert _health(worker)["model_version"] == old_version
    store = Store(settings.database_url)
    try:
        Registry(store).register(candidate)
    finally:
        store.close()
    # The registry's directory is what loads: the message's path is not used.
    update = ModelUpdate(version="hot-swap-test", path=str(tmp_path / "elsewhere"))
    produce(settings, [update.to_json()], topic="model-updates")
    wait_until(lambda: _health(worker)["model_version"] == "hot-swap-test", 120, "the swap")
    produce(settings, [p.to_json() for p in second])
    wait_until(lambda: len(stored_ids(settings)) >= 200, 300, "all 200 posts stored")

    versions = stored_ids(settings)
    assert len(versions) == 200
    assert {versions[p.id] for p in second} == {"hot-swap-test"}
    assert {versions[p.id] for p in first} <= {old_version, "hot-swap-test"}


def test_a_stuck_worker_fails_its_health_check_until_it_flows_again(
    kafka_settings: Settings, tmp_path: Path, run_worker: list[WorkerProcess]
) -> None:
    """Another writer holding the store's lock stops the stream: /health says so, then heals."""
    settings = worker_settings(kafka_settings, tmp_path)
    worker = start(settings, run_worker, FINSENTRY_WORKER_STALL_TIMEOUT_S="5")
    posts = [make_post(n, t, minutes=n) for n, t in enumerate(unique_headlines(400))]
    produce(settings, [p.to_json() for p in posts[:10]])
    wait_until(lambda: len(stored_ids(settings)) >= 10, 120, "a first batch stored")
    assert _health_answer(worker) == (200, "ok")

    lock = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # the worker's upserts wait (busy_timeout 30 s)
    try:
        produce(settings, [p.to_json() for p in posts[10:]])
        wait_until(lambda: _health_answer(worker)[0] == 503, 30, "/health to report the stall")
        status, reason = _health_answer(worker)
        assert status == 503
        assert reason.startswith("nothing committed for ")
        assert f"messages wait past the committed offset on {settings.topic('posts')}[0]@" in reason
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    wait_until(lambda: len(stored_ids(settings)) >= len(posts), 300, "every post stored")
    wait_until(lambda: _health_answer(worker) == (200, "ok"), 30, "/health ok again")
    log = worker.tail(400)
    assert "worker stalled: nothing committed for " in log
    assert "seeking the input back" not in log  # the posts in hand are not sent for twice


LATE_DELIVERY = """\
import asyncio

from aiokafka.producer.producer import AIOKafkaProducer

_send = AIOKafkaProducer.send


async def send(self, topic, *args, **kwargs):
    if not topic.endswith({suffix!r}):
        return await _send(self, topic, *args, **kwargs)
    delivered = asyncio.get_running_loop().create_future()

    async def later():
        await asyncio.sleep(8.0)
        inner = await _send(self, topic, *args, **kwargs)
        delivered.set_result(await inner)

    asyncio.ensure_future(later())
    return delivered


AIOKafkaProducer.send = send
"""


@pytest.mark.parametrize("topic", ["signal-input", "deadletter"])
def test_an_input_is_committed_only_once_kafka_has_what_it_sent(
    topic: str, kafka_settings: Settings, tmp_path: Path, run_worker: list[WorkerProcess]
) -> None:
    """A send returns once queued and Faust's commit does not wait for the producer: a
    batch's observations (signal-input) or a dead letter still queued when the worker was
    killed after the commit were lost for good. Here their delivery takes 8 s (loaded as
    sitecustomize); the worker is killed once the inputs are committed, or after 5 s."""
    settings = worker_settings(kafka_settings, tmp_path)
    posts = [make_post(n, t, minutes=n) for n, t in enumerate(unique_headlines(10))]
    path = python_path_with_hook(tmp_path / "late_delivery", LATE_DELIVERY.format(suffix=topic))
    worker = start(settings, run_worker, PYTHONPATH=path, FINSENTRY_STREAM_BATCH_WITHIN_S="0.1")
    send_keyed(settings, [*posts, b"{not json"])
    wait_until(lambda: len(stored_ids(settings)) == len(posts), 120, "the posts stored")

    def all_committed() -> bool:
        return committed_total(settings, app_id(settings), "posts") == len(posts) + 1

    with contextlib.suppress(TimeoutError):  # the held delivery holds the commit back
        wait_until(all_committed, 5, "the inputs committed")
    worker.kill()

    start(settings, run_worker)
    wait_until(all_committed, 120, "the inputs committed after the restart")
    observed = {
        obs.post_id
        for record in read_to_end(settings, "signal-input")
        for _, obs in observations_from_json(record.value).observations
    }
    assert observed == {p.id for p in posts}
    letters = [DeadLetter.from_json(r.value) for r in read_to_end(settings, "deadletter")]
    assert {(letter.reason, letter.offset) for letter in letters} == {("not_json", len(posts))}


NEVER_RESUMED = """\
from faust.tables.recovery import Recovery

_on_recovery_completed = Recovery.on_recovery_completed


async def on_recovery_completed(self, generation_id=0):
    await _on_recovery_completed(self, generation_id)
    self.app.consumer.stop_flow()


Recovery.on_recovery_completed = on_recovery_completed
"""


def restart_with_a_hook_until_the_backlog_is_stored(
    settings: Settings, run_worker: list[WorkerProcess], folder: Path, hook: str
) -> WorkerProcess:
    """Leaves a backlog of 30 posts after one committed, restarts the worker with ``hook``
    as its sitecustomize and a 5 s stall timeout, and waits for the backlog to be stored,
    which it must be after the stall was logged and the input sought back."""
    posts = [make_post(n, t, minutes=n) for n, t in enumerate(unique_headlines(31))]
    leave_a_backlog(settings, run_worker, posts)
    path = python_path_with_hook(folder, hook)
    restarted = start(settings, run_worker, PYTHONPATH=path, FINSENTRY_WORKER_STALL_TIMEOUT_S="5")
    wait_stored(settings, len(posts), 120, restarted)
    log = restarted.tail(400)
    topic = settings.topic("posts")
    assert f"30 messages wait past the committed offset on {topic}[0]@1; /health now fails" in log
    assert "seeking the input back to what was committed" in log
    return restarted


def test_a_restarted_worker_whose_stream_never_resumes_is_caught_and_sent_back(
    kafka_settings: Settings, tmp_path: Path, run_worker: list[WorkerProcess]
) -> None:
    """Input waits past the committed offset and nothing is committed (stream/liveness.py):
    /health fails, and a worker holding nothing unacknowledged seeks back and flows again.
    Its fetcher is held after the recovery (loaded as sitecustomize), so it reads nothing."""
    settings = worker_settings(kafka_settings, tmp_path)
    restarted = restart_with_a_hook_until_the_backlog_is_stored(
        settings, run_worker, tmp_path / "never_resumed", NEVER_RESUMED
    )
    wait_until(lambda: _health_answer(restarted) == (200, "ok"), 30, "/health ok again")


DROPPED_AFTER_SEEK = """\
from faust.tables.recovery import Recovery

_on_recovery_completed = Recovery.on_recovery_completed
_done = False


async def on_recovery_completed(self, generation_id=0):
    global _done
    consumer = self.app.consumer
    if _done:
        return await _on_recovery_completed(self, generation_id)
    _done = True
    seek = consumer.perform_seek

    async def seek_and_skip_ten():
        await seek()
        for tp, offset in list(consumer._read_offset.items()):
            if tp.topic.endswith(".posts"):
                consumer._read_offset[tp] = (offset or 0) + 10

    consumer.perform_seek = seek_and_skip_ten
    try:
        await _on_recovery_completed(self, generation_id)
    finally:
        del consumer.perform_seek


Recovery.on_recovery_completed = on_recovery_completed
"""


def test_messages_dropped_after_a_seek_are_fetched_again(
    kafka_settings: Settings, tmp_path: Path, run_worker: list[WorkerProcess]
) -> None:
    """Faust 0.15.3 can leave its read offset past a seek back, when its fetch loop stores
    the offset of a message it was handing on as the seek lands; the messages between are
    then dropped as already read, and its commit never passes them. The restarted worker here
    has the read offset moved 10 past its first seek (loaded as sitecustomize): it scores the
    other twenty, but its commit stays at the first of the ten, so it seeks back to it."""
    settings = worker_settings(kafka_settings, tmp_path)
    restart_with_a_hook_until_the_backlog_is_stored(
        settings, run_worker, tmp_path / "dropped", DROPPED_AFTER_SEEK
    )


def _health_answer(worker: WorkerProcess) -> tuple[int, str]:
    """HTTP status and the stall reason (or "ok") of the worker's /health."""
    try:
        with urllib.request.urlopen(f"{worker.url}/health", timeout=10) as response:
            return response.status, json.loads(response.read())["status"]
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())["reason"]


def _scored(worker: WorkerProcess) -> float:
    """The worker's count of posts scored, from its /metrics."""
    with urllib.request.urlopen(f"{worker.url}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("finsentry_scored_total "):
                return float(line.split()[1])
    raise AssertionError("no finsentry_scored_total in /metrics")


def _health(worker: WorkerProcess) -> dict[str, str]:
    return json.loads(urllib.request.urlopen(f"{worker.url}/health").read())
