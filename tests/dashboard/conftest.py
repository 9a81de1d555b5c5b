"""Fixtures: a store filled with the known data of ``known_data``, and its query layer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dashboard.queries import DashboardQueries
from finsentry.config import Settings, load_settings
from finsentry.store import Store
from tests.dashboard.known_data import fill


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path, dashboard_page_size=10, dashboard_refresh_s=3600)


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    store = Store(settings.database_url)
    fill(store)
    yield store
    store.close()


@pytest.fixture
def queries(store: Store) -> DashboardQueries:
    return DashboardQueries(store)
