"""Webhook: POST one post (JSON object) or a batch (JSON array or NDJSON) to ``/posts``.

``parse_batch`` is pure: bytes in, Posts or field-level errors out. The aiohttp handler around
it caps the requests it serves at once (one more gets a fast 503), checks the bearer token
and body size, then answers 202 with the accepted ids only after ``PostSink.publish``
returned, i.e. after Kafka acknowledged every post of the batch. A batch is all or nothing:
one bad item rejects the request, so a caller never has to work out which half of its batch
got in. Without a token the webhook serves loopback callers only (``check_binding``).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from finsentry.config import MIN_TOKEN_CHARS, Settings
from finsentry.runtime import is_loopback
from finsentry.schema import Post, SchemaError, schema_error
from ingest.metrics import SourceMetrics
from ingest.posts import future_error, make_post
from ingest.sink import PostSink, PublishError
from ingest.tickers import TickerExtractor

log = logging.getLogger(__name__)

JSON_TYPES = ("application/json", "text/json")
NDJSON_TYPES = (
    "application/x-ndjson",
    "application/ndjson",
    "application/jsonl",
    "application/x-jsonlines",
)


class WebhookPost(BaseModel):
    """What a caller sends. Only text is required; the rest has sensible defaults."""

    model_config = ConfigDict(strict=True, extra="forbid")

    id: str | None = Field(default=None, min_length=1, max_length=300)
    source: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    kind: Literal["news", "social"] = "news"
    title: str = Field(default="", max_length=2_000)
    body: str = Field(default="", max_length=100_000)
    published_at: AwareDatetime | None = None
    url: str | None = Field(default=None, max_length=4_000)
    author: str | None = Field(default=None, max_length=500)
    lang: str | None = Field(default=None, max_length=20)
    tickers: list[str] = Field(default_factory=list, max_length=50)


class WebhookConfigError(ValueError):
    """The webhook settings are unsafe; the message says what to set."""


def check_token(settings: Settings) -> str | None:
    """The bearer token to require, or None; an empty or short one is refused (guessable)."""
    if settings.ingest_webhook_token is None:
        return None
    token = settings.ingest_webhook_token.get_secret_value()
    if len(token) < MIN_TOKEN_CHARS:
        raise WebhookConfigError(
            f"ingest_webhook_token has {len(token)} characters; use at least {MIN_TOKEN_CHARS}"
        )
    return token


def check_binding(settings: Settings, host: str) -> None:
    """Refuse serving beyond loopback without a token: anyone who can reach the port could
    then feed the stream posts that raise alerts."""
    if check_token(settings) is None and not is_loopback(host):
        raise WebhookConfigError(
            f"refusing to serve the webhook on {host} without a token: anyone who can reach "
            "it could post into the stream. Set FINSENTRY_INGEST_WEBHOOK_TOKEN (at least "
            f"{MIN_TOKEN_CHARS} characters), or bind to 127.0.0.1."
        )


@dataclass
class BadRequest(Exception):
    """Refused input: the HTTP status and the errors to send back."""

    status: int
    errors: list[dict[str, Any]]


def _error(item: int | None, field: str, message: str) -> dict[str, Any]:
    return {"item": item, "field": field, "message": message}


def decode_items(body: bytes, content_type: str) -> list[Any]:
    """The JSON values in the body: one object, the elements of an array, or NDJSON lines."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(400, [_error(None, "(body)", f"not UTF-8: {exc.reason}")]) from exc
    if content_type in NDJSON_TYPES:
        items = []
        # On "\n" only: str.splitlines also splits on U+2028, U+0085 and others, which JSON
        # strings may hold unescaped.
        for line_no, line in enumerate(text.split("\n"), start=1):
            if line.strip():
                items.append(_loads(line, f"line {line_no}"))
        return items
    if content_type not in JSON_TYPES:
        accepted = ", ".join((*JSON_TYPES, *NDJSON_TYPES))
        raise BadRequest(415, [_error(None, "(content-type)", f"{content_type!r}; use {accepted}")])
    value = _loads(text, "body")
    return value if isinstance(value, list) else [value]


def _loads(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(
            400, [_error(None, f"({where})", f"not JSON: {exc.msg} at {exc.pos}")]
        ) from exc
    except RecursionError as exc:
        raise BadRequest(400, [_error(None, f"({where})", "JSON nested too deeply")]) from exc
    except ValueError as exc:  # an integer of more digits than Python converts (4,300)
        raise BadRequest(400, [_error(None, f"({where})", f"not usable JSON: {exc}")]) from exc


def parse_batch(
    body: bytes,
    content_type: str,
    *,
    extractor: TickerExtractor,
    max_posts: int,
    future_tolerance_s: float,
    allowed_tickers: Collection[str] = (),
    received_at: datetime | None = None,
) -> list[Post]:
    """Validate a request body into Posts; raises BadRequest with every field-level error.

    A ``published_at`` more than ``future_tolerance_s`` after arrival is one (422), and so
    is a ticker hint neither the extractor's list nor ``allowed_tickers`` knows."""
    items = decode_items(body, content_type)
    if not items:
        raise BadRequest(400, [_error(None, "(body)", "no posts in the request")])
    if len(items) > max_posts:
        raise BadRequest(413, [_error(None, "(body)", f"{len(items)} posts; at most {max_posts}")])
    received_at = received_at or datetime.now(UTC)
    posts: list[Post] = []
    errors: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            errors.append(_error(index, "(item)", f"a JSON {type(item).__name__}, not an object"))
            continue
        try:
            post = _to_post(item, received_at, extractor, allowed_tickers)
        except SchemaError as exc:
            errors.extend(_error(index, field, message) for field, message in exc.errors)
            continue
        too_late = future_error(post, future_tolerance_s)
        if too_late is not None:
            errors.append(_error(index, "published_at", too_late))
        posts.append(post)
    if errors:
        raise BadRequest(422, errors)
    return posts


def _to_post(
    item: dict[str, Any],
    received_at: datetime,
    extractor: TickerExtractor,
    allowed_tickers: Collection[str],
) -> Post:
    try:
        data = WebhookPost.model_validate_json(json.dumps(item))
    except ValidationError as exc:
        raise schema_error("WebhookPost", exc) from exc
    except (ValueError, RecursionError) as exc:
        raise SchemaError("WebhookPost", [("(item)", f"not encodable as JSON: {exc}")]) from exc
    unknown = extractor.unknown(data.tickers, allowed_tickers)
    if unknown:
        reason = f"unknown {unknown}: not in the ticker list nor ingest_webhook_tickers"
        raise SchemaError("WebhookPost", [("tickers", reason)])
    return make_post(
        source=f"webhook:{data.source}" if data.source else "webhook",
        kind=data.kind,
        native_id=data.id,
        title=data.title,
        body=data.body,
        published_at=data.published_at,
        received_at=received_at,
        extractor=extractor,
        url=data.url,
        author=data.author,
        lang=data.lang,
        ticker_hints=data.tickers,
    )


def make_app(settings: Settings, sink: PostSink, extractor: TickerExtractor) -> web.Application:
    """The aiohttp app; ``client_max_size`` makes aiohttp answer 413 to oversize bodies."""
    token = check_token(settings)
    metrics = SourceMetrics("webhook")
    in_flight = 0  # requests being served; the app's one event loop is the only writer

    async def receive(request: web.Request) -> web.Response:
        """Served at most ``ingest_webhook_max_concurrent`` at once: each holds an executor
        thread while Kafka acknowledges, and a queue of them only delays every caller."""
        nonlocal in_flight
        if in_flight >= settings.ingest_webhook_max_concurrent:
            metrics.add(rejected=1)
            return web.json_response(
                {"errors": [_error(None, "(server)", "too many requests at once; retry")]},
                status=503,
                headers={"Retry-After": "1"},
            )
        in_flight += 1
        try:
            return await serve(request)
        finally:
            in_flight -= 1

    async def serve(request: web.Request) -> web.Response:
        if token is not None and not _authorised(request, token):
            return web.json_response(
                {"errors": [_error(None, "(authorization)", "missing or wrong bearer token")]},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="finsentry"'},
            )
        try:
            body = await request.read()
            posts = parse_batch(
                body,
                request.content_type,
                extractor=extractor,
                max_posts=settings.ingest_webhook_max_posts,
                future_tolerance_s=settings.future_tolerance_s,
                allowed_tickers=settings.ingest_webhook_tickers,
            )
        except web.HTTPRequestEntityTooLarge:
            limit = settings.ingest_webhook_max_body_bytes
            return web.json_response(
                {"errors": [_error(None, "(body)", f"larger than {limit} bytes")]}, status=413
            )
        except BadRequest as exc:
            metrics.add(rejected=1)
            return web.json_response({"errors": exc.errors}, status=exc.status)
        metrics.add(fetched=len(posts))
        loop = asyncio.get_running_loop()
        timeout = settings.ingest_webhook_publish_timeout_s
        try:
            refused = await loop.run_in_executor(
                None, lambda: sink.publish(posts, timeout_s=timeout)
            )
        except PublishError as exc:
            metrics.add(errors=1)
            log.error("webhook: %d post(s) not accepted: %s", len(posts), exc)
            return web.json_response(
                {"errors": [_error(None, "(kafka)", "not acknowledged by Kafka; retry later")]},
                status=503,
                headers={"Retry-After": "5"},
            )
        if refused:  # too large for the broker: the rest of the batch did go in
            gone = {r.post.id for r in refused}
            accepted = [p.id for p in posts if p.id not in gone]
            metrics.add(published=len(accepted), rejected=len(refused))
            item = {id(post): index for index, post in enumerate(posts)}
            errors = [_error(item[id(r.post)], "(kafka)", r.reason) for r in refused]
            log.warning("webhook: %d post(s) refused by Kafka: %s", len(refused), errors)
            return web.json_response({"errors": errors, "accepted": accepted}, status=413)
        metrics.add(published=len(posts))
        metrics.log_cycle("202", accepted=len(posts))
        return web.json_response({"accepted": [p.id for p in posts]}, status=202)

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", **metrics.snapshot()})

    app = web.Application(client_max_size=settings.ingest_webhook_max_body_bytes)
    app.router.add_post("/posts", receive)
    app.router.add_get("/health", health)
    return app


def _authorised(request: web.Request, token: str) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


class WebhookServer:
    """Runs the app on its own thread and loop; used by tests and by embedding code."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(app)
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> int:
        """Bind and serve; returns the bound port (useful with port 0)."""
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        self.port = future.result(timeout=30)
        return self.port

    async def _start(self) -> int:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        return int(self._runner.addresses[0][1])

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()
