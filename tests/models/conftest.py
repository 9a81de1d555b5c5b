"""Fixtures shared by the model tests: the splits and one resident engine on the shipped model."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import transformers

from models.engine import Engine
from models.registry import SHIPPED_DIR
from models.splits import Splits, build_splits


@pytest.fixture(scope="session")
def splits() -> Splits:
    return build_splits()


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    """The shipped checkpoint in fp32, so batched and one-by-one results are comparable."""
    transformers.logging.set_verbosity_error()
    with Engine(SHIPPED_DIR, device="cpu", backend="fp32") as resident:
        yield resident
