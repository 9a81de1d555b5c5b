"""The one store method the alerts service added: resuming unfinished deliveries."""

from __future__ import annotations

from pathlib import Path

import pytest

from finsentry.store import Store, StoreError

pytestmark = pytest.mark.unit


def test_deliveries_with_status_oldest_first_and_filtered(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    try:
        store.record_delivery("a1", "slack:desk", "pending", attempts=0)
        store.record_delivery("a2", "email:desk", "retrying", attempts=2, error="451")
        store.record_delivery("a3", "slack:desk", "delivered", attempts=1)
        store.record_delivery("a4", "slack:desk", "failed", attempts=8, error="gave up")
        unfinished = store.deliveries_with_status(["pending", "retrying"])
        assert [(r.alert_id, r.status, r.attempts) for r in unfinished] == [
            ("a1", "pending", 0),
            ("a2", "retrying", 2),
        ]
        assert [r.alert_id for r in store.deliveries_with_status(["failed"], limit=5)] == ["a4"]
        assert len(store.deliveries_with_status(["pending", "retrying"], limit=1)) == 1
        with pytest.raises(StoreError, match="'lost'"):
            store.deliveries_with_status(["lost"])
    finally:
        store.close()
