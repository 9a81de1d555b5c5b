"""The model registry over a real SQLite store, and the ``finsentry models`` commands."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from finsentry.config import load_settings
from finsentry.store import Store, StoreError
from models.cli import models_app
from models.network import ModelDirError
from models.registry import SHIPPED_DIR, SHIPPED_VERSION, Registry, RegistryError, resolve_model_dir

pytestmark = pytest.mark.unit
SECOND = "finsentry-minilm-experiment"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    created = Store(f"sqlite:///{tmp_path / 'finsentry.db'}")
    yield created
    created.close()


def _second_version(tmp_path: Path) -> Path:
    """A copy of the shipped model's metadata under another version name (no weights)."""
    target = tmp_path / "v2"
    target.mkdir()
    config = json.loads((SHIPPED_DIR / "config.json").read_text())
    config["finsentry"]["version"] = SECOND
    (target / "config.json").write_text(json.dumps(config))
    shutil.copy(SHIPPED_DIR / "metrics.json", target / "metrics.json")
    return target


def test_shipped_checkpoint_is_the_first_current_version(store: Store) -> None:
    registry = Registry(store)
    assert registry.current_dir() == SHIPPED_DIR
    (row,) = registry.versions()
    assert row["version"] == SHIPPED_VERSION and row["is_current"]
    assert row["path"] == f"models/checkpoints/{SHIPPED_VERSION}"
    assert row["metrics"]["test"]["twitter_topic"]["accuracy"] > 0.5
    assert len(row["data_fingerprint"]) == 64 and row["training_config"]["seed"]


def test_register_and_promote_switch_the_current_version(store: Store, tmp_path: Path) -> None:
    registry = Registry(store)
    registry.ensure_shipped()
    second = registry.register(_second_version(tmp_path))
    assert not second["is_current"]
    registry.promote(SECOND)
    assert registry.current_dir() == tmp_path / "v2"
    assert [r["is_current"] for r in registry.versions()] == [False, True]


def test_unknown_version_and_untrained_directory_are_clear_errors(
    store: Store, tmp_path: Path
) -> None:
    registry = Registry(store)
    with pytest.raises(RegistryError, match="no model version 'nope'"):
        registry.promote("nope")
    with pytest.raises(ModelDirError, match=r"no config\.json"):
        registry.register(tmp_path)


def test_model_path_setting_wins_over_the_registry(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, model_path=tmp_path / "mine")
    assert resolve_model_dir(settings) == tmp_path / "mine"
    assert resolve_model_dir(load_settings(data_dir=tmp_path)) == SHIPPED_DIR


def test_models_commands_list_show_promote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINSENTRY_DATA_DIR", str(tmp_path))
    from finsentry.config import get_settings

    get_settings.cache_clear()
    runner = CliRunner()
    listed = runner.invoke(models_app, ["list"])
    assert listed.exit_code == 0 and f"current    {SHIPPED_VERSION}" in listed.output
    shown = runner.invoke(models_app, ["show", SHIPPED_VERSION])
    assert json.loads(shown.output)["version"] == SHIPPED_VERSION
    assert runner.invoke(models_app, ["register", str(_second_version(tmp_path))]).exit_code == 0
    promoted = runner.invoke(models_app, ["promote", SECOND])
    assert promoted.exit_code == 0 and "now current" in promoted.output
    missing = runner.invoke(models_app, ["promote", "nope"])
    assert missing.exit_code == 2 and "no model version 'nope'" in missing.output
    get_settings.cache_clear()


def test_a_rejected_version_is_never_made_current_without_force(
    store: Store, tmp_path: Path
) -> None:
    registry = Registry(store)
    registry.ensure_shipped()
    registry.register(_second_version(tmp_path))
    store.set_model_status(SECOND, "rejected")
    with pytest.raises(RegistryError, match=r"rejected by the retraining gate.*--force"):
        registry.promote(SECOND)
    assert registry.current_dir() == SHIPPED_DIR
    registry.promote(SECOND, force=True)
    statuses = {r["version"]: (r["status"], r["is_current"]) for r in registry.versions()}
    assert statuses == {
        SHIPPED_VERSION: ("promoted", False),
        SECOND: ("promoted", True),
    }
    with pytest.raises(StoreError, match="no non-current model version"):
        store.set_model_status(SECOND, "rejected")  # the served one stays


def test_a_store_from_before_model_statuses_gets_the_column(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = Store(url)
    Registry(old).ensure_shipped()
    with old.begin() as conn:
        conn.execute(text("ALTER TABLE model_versions DROP COLUMN status"))
    old.close()
    upgraded = Store(url)
    try:
        (row,) = upgraded.model_versions()
        assert row["status"] == "promoted" and row["is_current"]
    finally:
        upgraded.close()


def test_models_list_shows_statuses_and_promote_refuses_a_rejected_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FINSENTRY_DATA_DIR", str(tmp_path))
    from finsentry.config import get_settings

    get_settings.cache_clear()
    runner = CliRunner()
    assert runner.invoke(models_app, ["register", str(_second_version(tmp_path))]).exit_code == 0
    store = Store(get_settings().database_url)
    store.set_model_status(SECOND, "rejected")
    store.start_retrain_run("run-1", "manual", {"tolerance": 0.005})
    store.finish_retrain_run(
        "run-1",
        "rejected",
        "worse beyond tolerance 0.005 on twitter_topic.accuracy",
        current_version=SHIPPED_VERSION,
        candidate_version=SECOND,
        data_fingerprint="ab" * 32,
    )
    store.close()
    listed = runner.invoke(models_app, ["list"]).output.splitlines()
    assert listed[0].startswith(f"current    {SHIPPED_VERSION}")
    assert listed[1].startswith(f"rejected   {SECOND}")
    # The second version's directory has no weights (a model trained on another machine).
    assert "not available" not in listed[0] and listed[1].endswith(
        "[no weights here: not available]"
    )
    refused = runner.invoke(models_app, ["promote", SECOND])
    assert refused.exit_code == 2 and "rejected by the retraining gate" in refused.output
    forced = runner.invoke(models_app, ["promote", SECOND, "--force"])
    assert forced.exit_code == 0, forced.output
    runs = runner.invoke(models_app, ["runs"])
    assert runs.exit_code == 0
    assert "manual  rejected" in runs.output and "data abababababab" in runs.output
    assert f"{SHIPPED_VERSION} -> {SECOND}" in runs.output
    (record,) = json.loads(runner.invoke(models_app, ["runs", "--json"]).output)
    assert record["details"] == {"tolerance": 0.005} and record["finished_at"]
    get_settings.cache_clear()
