"""Wire contracts: every message on Kafka is one of these, as JSON with a ``schema_version``.

Validation is strict (no coercion of wrong types, no unknown fields, timezone-aware times
normalised to UTC) so that a bad producer is caught at the edge with an error that names
the field, instead of corrupting aggregates downstream. Decoding (``from_json`` and
``from_dict``) raises SchemaError; building a message in Python raises pydantic's
ValidationError (also a ValueError).
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal, Self, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from finsentry.text import fingerprint

SCHEMA_VERSION: Final = 1

SENTIMENTS: Final = ("negative", "neutral", "positive")
Sentiment = Literal["negative", "neutral", "positive"]

# The 20 topics of the Twitter Financial News topic set, in label-id order (classes.txt).
TOPICS: Final = (
    "Analyst Update",
    "Fed | Central Banks",
    "Company | Product News",
    "Treasuries | Corporate Debt",
    "Dividend",
    "Earnings",
    "Energy | Oil",
    "Financials",
    "Currencies",
    "General News | Opinion",
    "Gold | Metals | Materials",
    "IPO",
    "Legal | Regulation",
    "M&A | Investments",
    "Macro",
    "Markets",
    "Politics",
    "Personnel Change",
    "Stock Commentary",
    "Stock Movement",
)

MAX_TITLE_CHARS: Final = 2_000
MAX_BODY_CHARS: Final = 1_000_000
KEY_PATTERN: Final = r"^(market|(ticker|topic|source):\S.{0,199})$"


class SchemaError(ValueError):
    """A message failed validation. ``errors`` lists (field, reason) pairs."""

    def __init__(self, model: str, errors: list[tuple[str, str]]) -> None:
        self.model = model
        self.errors = errors
        detail = "; ".join(f"{field}: {reason}" for field, reason in errors)
        super().__init__(f"invalid {model}: {detail}")


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("contains a NUL (0x00) character, which no text store accepts")
    return value


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
Text = Annotated[str, AfterValidator(_no_nul)]
Probability = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Ticker = Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9.\-]{0,9}$")]


class Message(BaseModel):
    """Base of all wire messages: strict, immutable, versioned."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION

    def to_json(self) -> bytes:
        return self.model_dump_json().encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes | str) -> Self:
        """Decode and validate; raises SchemaError naming each bad field."""
        try:
            return cls.model_validate_json(raw)
        except ValidationError as exc:
            raise schema_error(cls.__name__, exc) from exc

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Validate a decoded mapping with JSON semantics (ISO strings for times)."""
        try:
            return cls.model_validate_json(_json_dumps(data))
        except ValidationError as exc:
            raise schema_error(cls.__name__, exc) from exc


def _json_dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def schema_error(model: str, exc: ValidationError) -> SchemaError:
    errors = [
        (".".join(str(part) for part in err["loc"]) or "(message)", err["msg"])
        for err in exc.errors(include_url=False)
    ]
    return SchemaError(model, errors)


class Post(Message):
    """One news item or social post, as ingested. ``published_at`` is event time."""

    id: Text = Field(min_length=1, max_length=512)
    source: Text = Field(min_length=1, max_length=200, pattern=r"^[a-z][a-z0-9_-]*(:.+)?$")
    kind: Literal["news", "social"]
    published_at: UtcDatetime
    received_at: UtcDatetime
    # True when the source gave no time and published_at is the arrival time.
    published_at_estimated: bool = False
    title: Text = Field(default="", max_length=MAX_TITLE_CHARS)
    body: Text = Field(default="", max_length=MAX_BODY_CHARS)
    url: Text | None = Field(default=None, max_length=4_000)
    author: Text | None = Field(default=None, max_length=500)
    lang: str | None = Field(default=None, pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")
    tickers: tuple[Ticker, ...] = ()

    @field_validator("tickers", mode="before")
    @classmethod
    def _tickers_as_tuple(cls, value: Any) -> Any:
        """Lists become tuples and repeats collapse, keeping first-seen order."""
        return tuple(dict.fromkeys(value)) if isinstance(value, list | tuple) else value

    @model_validator(mode="after")
    def _has_text(self) -> Self:
        if not self.title.strip() and not self.body.strip():
            raise ValueError("title and body are both empty: a post needs some text")
        return self

    @property
    def text(self) -> str:
        """What the model reads: title and body joined."""
        if self.title and self.body:
            return f"{self.title}. {self.body}"
        return self.title or self.body

    @property
    def fingerprint(self) -> str:
        """The story's fingerprint: what dedup compares and what producers key posts by."""
        return fingerprint(self.text)


class ScoredPost(Post):
    """A Post with the model's verdict."""

    sentiment: Sentiment
    sentiment_probs: dict[Sentiment, Probability]
    score: float = Field(ge=-1.0, le=1.0, allow_inf_nan=False)
    topic: str
    topic_probs: dict[str, Probability] = Field(min_length=1, max_length=3)
    model_version: str = Field(min_length=1, max_length=200)

    @field_validator("topic")
    @classmethod
    def _known_topic(cls, value: str) -> str:
        if value not in TOPICS:
            raise ValueError(f"unknown topic {value!r}")
        return value

    @field_validator("topic_probs")
    @classmethod
    def _known_topics(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(TOPICS))
        if unknown:
            raise ValueError(f"unknown topic(s) {unknown}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if set(self.sentiment_probs) != set(SENTIMENTS):
            raise ValueError(f"sentiment_probs needs exactly the keys {list(SENTIMENTS)}")
        total = sum(self.sentiment_probs.values())
        if not math.isclose(total, 1.0, abs_tol=1e-3):
            raise ValueError(f"sentiment_probs sum to {total:.4f}, not 1")
        expected = self.sentiment_probs["positive"] - self.sentiment_probs["negative"]
        if not math.isclose(self.score, expected, abs_tol=1e-3):
            raise ValueError(f"score {self.score} is not P(positive) - P(negative) = {expected}")
        return self

    @classmethod
    def from_post(cls, post: Post, **verdict: Any) -> ScoredPost:
        """Attach a model verdict; raises SchemaError if the verdict is inconsistent."""
        try:
            return cls.model_validate({**post.model_dump(exclude={"schema_version"}), **verdict})
        except ValidationError as exc:
            raise schema_error(cls.__name__, exc) from exc


class SignalPoint(Message):
    """One closed event-time window for one key."""

    key: str = Field(pattern=KEY_PATTERN)
    window_start: UtcDatetime
    window_end: UtcDatetime
    count: int = Field(ge=0)
    mean_score: float = Field(ge=-1.0, le=1.0, allow_inf_nan=False)
    neg_share: Probability
    baseline: float | None = Field(default=None, allow_inf_nan=False)
    z: float | None = Field(default=None, allow_inf_nan=False)
    is_spike: bool = False
    # Buzz: the window's post count against the key's usual posts per window.
    volume_baseline: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    buzz_z: float | None = Field(default=None, allow_inf_nan=False)
    is_buzz: bool = False

    @model_validator(mode="after")
    def _ordered_window(self) -> Self:
        if self.window_end <= self.window_start:
            raise ValueError("window_end must be after window_start")
        return self


class Evidence(Message):
    """A post that explains an alert: among the most negative of its window."""

    id: Text = Field(min_length=1, max_length=512)
    title: Text = Field(max_length=MAX_TITLE_CHARS)
    url: Text | None = None
    score: float = Field(ge=-1.0, le=1.0, allow_inf_nan=False)


class Alert(Message):
    """A spike worth telling an analyst about. ``id`` is derived from key and window."""

    id: str = Field(min_length=1, max_length=64)
    key: str = Field(pattern=KEY_PATTERN)
    window_start: UtcDatetime
    window_end: UtcDatetime
    severity: Literal["warning", "critical"]
    z: float = Field(allow_inf_nan=False)
    neg_share: Probability
    mean_score: float = Field(ge=-1.0, le=1.0, allow_inf_nan=False)
    count: int = Field(ge=1)
    baseline: float = Field(allow_inf_nan=False)
    evidence: tuple[Evidence, ...] = ()
    model_version: str = Field(min_length=1, max_length=200)
    buzz: bool = False  # the window is also a volume spike (SignalPoint.is_buzz)

    @field_validator("evidence", mode="before")
    @classmethod
    def _evidence_as_tuple(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

    @model_validator(mode="after")
    def _deterministic_id(self) -> Self:
        if self.window_end <= self.window_start:
            raise ValueError("window_end must be after window_start")
        expected = alert_id(self.key, self.window_start)
        if self.id != expected:
            raise ValueError(f"id must be alert_id(key, window_start) = {expected!r}")
        return self


class DeadLetter(Message):
    """An input the pipeline could not use, kept with why and where it came from."""

    reason: Literal[
        "not_json",
        "invalid",
        "oversized",
        "undecodable",
        "unscorable",
        "unprocessable",
        "future_event_time",
    ]
    error: str = Field(max_length=10_000)
    source_topic: str
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    raw_base64: str
    raw_bytes: int = Field(ge=0)
    failed_at: UtcDatetime


class ModelUpdate(Message):
    """Tells workers to switch to a registry version (published by ``models promote``)."""

    version: str = Field(min_length=1, max_length=200)
    path: str = Field(min_length=1)


def alert_id(key: str, window_start: datetime) -> str:
    """Deterministic so a replayed window re-raises the same alert, not a new one."""
    stamp = _to_utc(window_start).isoformat()
    return hashlib.sha256(f"{key}|{stamp}".encode()).hexdigest()[:32]


def post_id(source: str, native_id: str) -> str:
    """Stable id from a source and the source's own id for the item."""
    return f"{source}:{native_id}"


def content_id(source: str, *parts: str) -> str:
    """Stable id for sources without native ids: a hash of the content."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:24]
    return f"{source}:{digest}"


M = TypeVar("M", bound=Message)


def decode(model: type[M], raw: bytes | str) -> M:
    """Decode one wire message of the given type."""
    return model.from_json(raw)


def encode(message: Message) -> bytes:
    return message.to_json()
