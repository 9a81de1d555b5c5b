"""Text normalisation shared by dedup (stream) and leak checks (models)."""

from __future__ import annotations

import hashlib
import re

_URL = re.compile(r"(https?://|www\.)\S+", re.IGNORECASE)
_SPACE = re.compile(r"\s+")
_NON_WORD = re.compile(r"[^\w\s]+")


def normalise_text(text: str) -> str:
    """Lowercase, URLs removed, whitespace folded: two copies of one headline compare equal."""
    return _SPACE.sub(" ", _URL.sub(" ", text.lower())).strip()


def fingerprint(text: str) -> str:
    """Stable hash of a text's words, blind to case, URLs, punctuation and spacing.

    Syndicated copies of a story differ in exactly those things, so they share a fingerprint.
    """
    words = _SPACE.sub(" ", _NON_WORD.sub(" ", normalise_text(text))).strip()
    return hashlib.blake2b(words.encode("utf-8"), digest_size=12).hexdigest()
