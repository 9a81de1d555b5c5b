"""The webhook over real HTTP with the real broker behind it."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from finsentry.config import Settings
from ingest.producer import KafkaPostSink
from ingest.tickers import default_extractor
from ingest.webhook import WebhookServer, make_app
from tests.ingest.conftest import read_posts

pytestmark = pytest.mark.integration
TOKEN = "test-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def hook(posts_settings: Settings) -> Iterator[tuple[str, Settings]]:
    cfg = posts_settings.model_copy(
        update={
            "ingest_webhook_token": SecretStr(TOKEN),
            "ingest_webhook_max_body_bytes": 64 * 1024,
        }
    )
    sink = KafkaPostSink(cfg)
    server = WebhookServer(make_app(cfg, sink, default_extractor()), "127.0.0.1", 0)
    port = server.start()
    yield f"http://127.0.0.1:{port}/posts", cfg
    server.stop()
    sink.close()


def test_single_and_batches_land_in_kafka_before_the_202(hook: tuple[str, Settings]) -> None:
    url, cfg = hook
    single = httpx.post(
        url,
        json={"id": "s1", "title": "Apple beats", "published_at": "2024-05-01T13:00:00Z"},
        headers=AUTH,
    )
    assert single.status_code == 202 and single.json() == {"accepted": ["webhook:s1"]}
    # The 202 promised the broker has it: read it back at once, no waiting.
    assert [post.id for _, post in read_posts(cfg, timeout_s=10)] == ["webhook:s1"]
    batch = httpx.post(
        url, json=[{"id": f"b{i}", "body": f"$TSLA note {i}"} for i in range(50)], headers=AUTH
    )
    ndjson = "\n".join(json.dumps({"id": f"n{i}", "title": f"line {i}"}) for i in range(20))
    lines = httpx.post(
        url, content=ndjson.encode(), headers={**AUTH, "Content-Type": "application/x-ndjson"}
    )
    assert batch.status_code == lines.status_code == 202
    accepted = batch.json()["accepted"] + lines.json()["accepted"]
    records = read_posts(cfg, timeout_s=10)
    assert {post.id for _, post in records} == {"webhook:s1", *accepted}
    assert len(records) == 71
    by_id = {post.id: post for _, post in records}
    assert by_id["webhook:b3"].tickers == ("TSLA",) and by_id["webhook:b3"].published_at_estimated


def test_refusals(hook: tuple[str, Settings]) -> None:
    url, cfg = hook
    assert httpx.post(url, json={"title": "x"}).status_code == 401
    assert (
        httpx.post(url, json={"title": "x"}, headers={"Authorization": "Bearer nope"}).status_code
        == 401
    )
    big = httpx.post(
        url,
        content=b"[" + b'{"title":"x"},' * 10_000 + b"{}]",
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert big.status_code == 413
    bad = httpx.post(url, json=[{"title": "ok"}, {"title": 3, "colour": "red"}], headers=AUTH)
    assert bad.status_code == 422
    assert {(e["item"], e["field"]) for e in bad.json()["errors"]} == {(1, "title"), (1, "colour")}
    assert read_posts(cfg, timeout_s=10) == []  # all or nothing: the good half did not go in


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.binary(max_size=300) | st.text(max_size=200).map(str.encode),
    content_type=st.sampled_from(["application/json", "application/x-ndjson", "text/plain"]),
)
def test_hypothesis_bad_bodies_never_get_a_5xx(
    hook: tuple[str, Settings], body: bytes, content_type: str
) -> None:
    url, _ = hook
    response = httpx.post(url, content=body, headers={**AUTH, "Content-Type": content_type})
    assert response.status_code < 500
    if response.status_code != 202:
        assert 400 <= response.status_code < 500 and response.json()["errors"]
