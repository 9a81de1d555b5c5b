"""Turning a source's raw fields into a valid ``Post``: the one mapping every source shares."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable
from datetime import datetime
from typing import Literal

from finsentry.schema import MAX_BODY_CHARS, MAX_TITLE_CHARS, Post, content_id, post_id
from ingest.tickers import TickerExtractor

_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")
_LANG = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")
_MAX_NATIVE_ID = 300
# A body's bytes once serialised (UTF-8, with JSON's escapes): a post must fit the 1 MB
# request both Kafka producers allow by default, with room for the worker's verdict. A
# character limit did not: a million CJK characters made a 3 MB post that no send took.
MAX_BODY_BYTES = 512 * 1024


def serialised_size(text: str) -> int:
    """Bytes of ``text`` as a JSON string value in a Post (quotes excluded)."""
    return len(json.dumps(text, ensure_ascii=False).encode("utf-8")) - 2


def cap_bytes(text: str, limit: int) -> str:
    """The longest prefix of ``text`` whose serialised size is within ``limit``."""
    if serialised_size(text) <= limit:
        return text
    low, high = 0, min(len(text), limit)  # every character costs at least one byte
    while low < high:
        middle = (low + high + 1) // 2
        if serialised_size(text[:middle]) <= limit:
            low = middle
        else:
            high = middle - 1
    return text[:low]


def future_error(post: Post, tolerance_s: float) -> str | None:
    """Why ``post`` is dated too far after its arrival to be let in, or None.

    One post from the future would carry the stream's watermark with it and leave every
    later post late (stream/windows.py).
    """
    ahead = (post.published_at - post.received_at).total_seconds()
    if ahead <= tolerance_s:
        return None
    return (
        f"published_at {post.published_at.isoformat()} is {ahead:.0f}s after received_at "
        f"{post.received_at.isoformat()}; future_tolerance_s allows {tolerance_s:g}s"
    )


def clean_text(value: str | None, limit: int) -> str:
    """Strip markup, decode entities, collapse whitespace (headlines arrive with all three)."""
    if not value:
        return ""
    text = _SPACE.sub(" ", html.unescape(_TAG.sub(" ", value))).strip()
    return text[:limit]


def normal_lang(value: str | None) -> str | None:
    """``en-US`` / ``EN`` -> the schema's form, or None when it is not a language tag."""
    if not value:
        return None
    tag = value.strip().replace("_", "-")
    primary, _, rest = tag.partition("-")
    tag = primary.lower() + (f"-{rest}" if rest else "")
    return tag if _LANG.match(tag) else None


def make_post(
    *,
    source: str,
    kind: Literal["news", "social"],
    native_id: str | None,
    title: str | None,
    body: str | None,
    published_at: datetime | None,
    received_at: datetime,
    extractor: TickerExtractor,
    url: str | None = None,
    author: str | None = None,
    lang: str | None = None,
    ticker_hints: Iterable[str] = (),
) -> Post:
    """Build and validate a Post; raises SchemaError naming the bad field.

    The id is the source's own id when it has one, else a hash of the content and time, so
    re-reading the same item always yields the same id. A missing time becomes the arrival
    time, flagged with ``published_at_estimated``.
    """
    clean_title = clean_text(title, MAX_TITLE_CHARS)
    clean_body = cap_bytes(clean_text(body, MAX_BODY_CHARS), MAX_BODY_BYTES)
    if native_id and len(native_id) <= _MAX_NATIVE_ID:
        pid = post_id(source, native_id)
    elif native_id:
        pid = content_id(source, native_id)
    else:
        stamp = published_at.isoformat() if published_at else ""
        pid = content_id(source, clean_title, clean_body, url or "", stamp)
    tickers = extractor.extract(clean_title, clean_body, hints=ticker_hints)
    return Post.from_dict(
        {
            "id": pid,
            "source": source,
            "kind": kind,
            "published_at": published_at or received_at,
            "received_at": received_at,
            "published_at_estimated": published_at is None,
            "title": clean_title,
            "body": clean_body,
            "url": url or None,
            "author": author or None,
            "lang": normal_lang(lang),
            "tickers": list(tickers),
        }
    )
