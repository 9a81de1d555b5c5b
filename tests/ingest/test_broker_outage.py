"""Broker outages during ingest, on a broker of this module's own (stopped and restarted)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import httpx
import pytest
from pydantic import SecretStr

from finsentry.config import Settings, load_settings
from finsentry.localkafka import LocalKafka
from finsentry.store import Store
from ingest.producer import KafkaPostSink
from ingest.replay import Pacer, detect_mapping, read_header
from ingest.replay_run import replay_file
from ingest.tickers import default_extractor
from ingest.webhook import WebhookServer, make_app
from tests.ingest.conftest import isolated, read_posts
from tests.support import free_port, wait_until

pytestmark = pytest.mark.integration
CNBC = Path(__file__).resolve().parents[2] / "data" / "fin_news_headlines" / "cnbc_headlines.csv"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalKafka, Settings]]:
    data_dir = tmp_path_factory.mktemp("outage-broker")
    kafka = LocalKafka(
        load_settings(data_dir=data_dir, kafka_port=free_port(), kafka_controller_port=free_port())
    )
    kafka.start()
    try:
        yield (
            kafka,
            load_settings(
                data_dir=data_dir / "client",
                kafka_bootstrap=kafka.bootstrap,
                kafka_partitions=3,
                ingest_producer_delivery_timeout_s=3.0,
                ingest_producer_max_block_s=2.0,
                ingest_publish_backoff_max_s=2.0,
                ingest_webhook_publish_timeout_s=4.0,
            ),
        )
    finally:
        kafka.stop()


class Warnings(logging.Handler):
    """Notices the producer's 'not acknowledged' warnings (proof the outage was felt) and
    counts the posts they say are resent."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen = threading.Event()
        self.resent = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "not acknowledged" in record.getMessage():
            assert isinstance(record.args, tuple)  # "%s: %d post(s) not acknowledged ..."
            self.resent += cast(int, record.args[1])
            self.seen.set()


def test_replay_through_a_broker_outage_loses_nothing_and_repeats_only_what_it_resent(
    broker: tuple[LocalKafka, Settings], tmp_path: Path
) -> None:
    kafka, base = broker
    settings = isolated(base, tmp_path)
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    sink = KafkaPostSink(settings)
    warnings = Warnings()
    logging.getLogger("ingest.producer").addHandler(warnings)
    state_key = f"ingest:replay:{CNBC.resolve()}"
    outcome: dict[str, object] = {}
    stop = threading.Event()

    def run() -> None:
        outcome["result"] = replay_file(
            CNBC,
            detect_mapping(read_header(CNBC)),
            sink=sink,
            store=store,
            extractor=default_extractor(),
            pacer=Pacer(rate=500),
            batch_size=50,
            progress=False,
            stop=stop,
        )

    worker = threading.Thread(target=run)
    try:
        worker.start()
        wait_until(
            lambda: (store.get_state(state_key) or {}).get("next_row", 0) >= 500,
            60,
            "replay under way",
        )
        kafka.stop()
        wait_until(warnings.seen.is_set, 60, "the producer to notice the outage")
        stalled_at = store.get_state(state_key)["next_row"]
        assert worker.is_alive()  # paused, not failed
        kafka.start()
        worker.join(timeout=240)
        assert not worker.is_alive()
    finally:
        stop.set()  # a failed assertion must not leave the replay retrying forever
        worker.join(timeout=60)
        logging.getLogger("ingest.producer").removeHandler(warnings)
        sink.close()
        store.close()
    result = outcome["result"]
    assert result.completed and result.published == 2800  # type: ignore[attr-defined]
    assert stalled_at < 3080
    records = read_posts(settings)
    ids = [post.id for _, post in records]
    assert len(set(ids)) == 2800  # nothing lost
    # A post the broker wrote but could not acknowledge before it stopped is resent: a
    # duplicate the stream's dedup by id absorbs (at-least-once). Nothing else repeats.
    assert len(ids) - 2800 <= warnings.resent
    assert min(post.published_at for _, post in records).year == 2017


def test_webhook_answers_503_while_the_broker_is_down_and_202_after(
    broker: tuple[LocalKafka, Settings], tmp_path: Path
) -> None:
    kafka, base = broker
    settings = isolated(base, tmp_path, ingest_webhook_token=SecretStr("t" * 16))
    sink = KafkaPostSink(settings)
    server = WebhookServer(make_app(settings, sink, default_extractor()), "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.start()}/posts"
    auth = {"Authorization": f"Bearer {'t' * 16}"}
    post = {"id": "outage-1", "title": "Boeing shares fall"}
    try:
        assert httpx.post(url, json=post, headers=auth, timeout=60).status_code == 202
        kafka.stop()
        started = time.monotonic()
        down = httpx.post(url, json={**post, "id": "outage-2"}, headers=auth, timeout=60)
        assert down.status_code == 503 and down.headers["Retry-After"] == "5"
        assert time.monotonic() - started < 30
        kafka.start()
        again = httpx.post(url, json={**post, "id": "outage-2"}, headers=auth, timeout=120)
        assert again.status_code == 202 and again.json() == {"accepted": ["webhook:outage-2"]}
    finally:
        server.stop()
        sink.close()
    ids = sorted(p.id for _, p in read_posts(settings))
    assert ids == ["webhook:outage-1", "webhook:outage-2"]
