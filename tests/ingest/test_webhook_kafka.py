"""The webhook over real HTTP with the real broker behind it."""

from __future__ import annotations

import json
import socket
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from finsentry.config import Settings
from ingest.producer import KafkaPostSink
from ingest.tickers import default_extractor
from ingest.webhook import WebhookServer, make_app
from tests.ingest.conftest import read_posts
from tests.support import wait_until

pytestmark = pytest.mark.integration
TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def hook(posts_settings: Settings) -> Iterator[tuple[str, Settings]]:
    cfg = posts_settings.model_copy(
        update={
            "ingest_webhook_token": SecretStr(TOKEN),
            "ingest_webhook_max_body_bytes": 64 * 1024,
            "ingest_producer_linger_ms": 0,
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


class Raw(str):
    """JSON written into the body as it is (json.dumps could not write these)."""


ODD_VALUES = [
    Raw("7" * 4_301),  # one digit past what Python's int() converts: ValueError, not 400
    Raw("-" + "9" * 5_000),
    Raw("1e999"),
    Raw("NaN"),
    Raw("[" * 50 + "]" * 50),
    None,
    True,
    3.5,
    {"nested": [1, {"deeper": "x"}]},
    "\u2028 \x85 \u0000",
]
EPOCH_2200 = 7_258_118_400
times = st.integers(min_value=86_400, max_value=EPOCH_2200).map(
    lambda s: datetime.fromtimestamp(s, UTC).isoformat()
)
items = st.fixed_dictionaries(
    {"title": st.text(max_size=40)},
    optional={
        "id": st.text(min_size=1, max_size=12),
        "body": st.text(max_size=60),
        "kind": st.sampled_from(["news", "social", "blog"]),
        "published_at": times | st.sampled_from(["yesterday", "2024-05-01T09:00:00", ""]),
        "tickers": st.lists(
            st.sampled_from(["AAPL", "$msft", "ZZZQ", "TOO-LONG-TICKER"]), max_size=2
        ),
        "url": st.sampled_from(["https://example.com/a", "x" * 4_001]),
        "source": st.sampled_from(["partner", "Bad Source"]),
        "author": st.sampled_from(ODD_VALUES),
        "extra": st.sampled_from(ODD_VALUES),
    },
)


def encode(value: object) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(encode(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {encode(v)}" for k, v in value.items()) + "}"
    return json.dumps(value, ensure_ascii=False)


bodies = st.one_of(
    items.map(lambda i: ("application/json", encode(i).encode())),
    st.lists(items, min_size=1, max_size=4).map(lambda i: ("application/json", encode(i).encode())),
    st.lists(items, min_size=1, max_size=4).map(
        lambda i: ("application/x-ndjson", "\n".join(encode(x) for x in i).encode())
    ),
    st.sampled_from(ODD_VALUES).map(lambda v: ("application/json", encode(v).encode())),
    st.tuples(
        st.sampled_from(["application/json", "application/x-ndjson", "text/plain"]),
        st.binary(max_size=100),
    ),
)


def test_fuzzed_bodies_get_a_known_answer_and_every_202_reaches_kafka(
    hook: tuple[str, Settings],
) -> None:
    """2,000 generated bodies: valid, almost valid (times from 1970 to 2200, integers past
    Python's 4,300 digits, unknown fields), and garbage. A 5,000-digit integer got a 500."""
    url, cfg = hook
    accepted: set[str] = set()
    statuses: Counter[int] = Counter()

    # Ten bodies per example: hypothesis's cost per example, not the requests, dominated.
    @settings(max_examples=200, deadline=None, database=None)
    @given(st.lists(st.tuples(bodies, st.booleans() | st.just(True)), min_size=10, max_size=10))
    def send(client: httpx.Client, cases: list[tuple[tuple[str, bytes], bool]]) -> None:
        for (content_type, content), authorised in cases:
            headers = {"Content-Type": content_type, **(AUTH if authorised else {})}
            response = client.post(url, content=content, headers=headers)
            statuses[response.status_code] += 1
            assert response.status_code in {202, 400, 401, 413, 415, 422, 503}, response.text
            if response.status_code == 202:
                accepted.update(response.json()["accepted"])

    with httpx.Client(timeout=30) as client:
        send(client)
    assert sum(statuses.values()) >= 2_000
    assert statuses[202] > 50 and statuses[422] > 50, statuses  # both sides were reached
    assert accepted <= {post.id for _, post in read_posts(cfg, timeout_s=60)}, statuses


def test_requests_beyond_the_cap_get_a_fast_503(posts_settings: Settings) -> None:
    """A request still sending its body holds its slot; one more is turned away at once
    instead of waiting for a thread."""
    cfg = posts_settings.model_copy(update={"ingest_webhook_max_concurrent": 1})
    sink = KafkaPostSink(cfg)
    server = WebhookServer(make_app(cfg, sink, default_extractor()), "127.0.0.1", 0)
    port = server.start()
    url = f"http://127.0.0.1:{port}/posts"
    body = json.dumps({"id": "slow-1", "title": "Slow upload of a headline"}).encode()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as slow:
            slow.sendall(
                b"POST /posts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body[:10]
            )
            wait_until(lambda: turned_away(url), 10, "a second request to be turned away")
            slow.sendall(body[10:])
            answer = slow.makefile("rb").readline()
        assert answer.startswith(b"HTTP/1.1 202")
        assert httpx.post(url, json={"title": "After the slow one"}).status_code == 202
    finally:
        server.stop()
        sink.close()


def turned_away(url: str) -> bool:
    response = httpx.post(url, json={"title": "Second caller"}, timeout=5)
    if response.status_code != 503:
        return False
    assert response.headers["Retry-After"] == "1"
    return True
