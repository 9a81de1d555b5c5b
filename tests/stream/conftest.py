"""Fixtures shared by the worker and backfill tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stream.process import WorkerProcess


@pytest.fixture
def run_worker(tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        if worker.process is not None and worker.process.poll() is None:
            worker.kill()
