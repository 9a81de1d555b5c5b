"""Model versions in the store: metrics, data fingerprint, training config, one current.

The checkpoint shipped in the repository is registered as the first version, and made
current, the first time the registry is used on a store with no versions. Paths inside the
repository are stored relative to it, so a registry survives moving the checkout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from finsentry.config import REPO_ROOT, Settings
from finsentry.store import Store, StoreError
from models.files import ModelDirError, read_meta

SHIPPED_VERSION: Final = "finsentry-minilm-v2"
SHIPPED_DIR: Final = REPO_ROOT / "models" / "checkpoints" / SHIPPED_VERSION


class RegistryError(LookupError):
    """A version is unknown or its directory unusable; the message names which."""


def _stored_path(model_dir: Path) -> str:
    resolved = model_dir.resolve()
    return (
        str(resolved.relative_to(REPO_ROOT))
        if resolved.is_relative_to(REPO_ROOT)
        else str(resolved)
    )


def real_path(stored: str) -> Path:
    path = Path(stored)
    return path if path.is_absolute() else REPO_ROOT / path


class Registry:
    """A thin layer over ``Store``'s ``model_versions`` table."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def register(self, model_dir: Path, *, current: bool = False) -> dict[str, Any]:
        """Record a trained model directory (its config and metrics.json) as a version.

        The shipped checkpoint is registered first, so a new registry always has a current
        version, whatever is registered into it.
        """
        if model_dir.resolve() != SHIPPED_DIR.resolve():
            self.ensure_shipped()
        meta = read_meta(model_dir)
        metrics_path = model_dir / "metrics.json"
        if not metrics_path.is_file():
            raise ModelDirError(f"{model_dir}: no metrics.json; register only trained models")
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        self.store.register_model_version(
            meta.version,
            _stored_path(model_dir),
            metrics={
                "test": _headline(metrics.get("test", {})),
                "temperatures": metrics.get("temperatures", {}),
            },
            data_fingerprint=str(metrics.get("data_fingerprint", "unknown")),
            training_config=dict(metrics.get("training_config", {})),
        )
        if current:
            self.store.set_current_model(meta.version)
        return self.get(meta.version)

    def ensure_shipped(self) -> None:
        """Register the shipped checkpoint as the first, current version of an empty registry."""
        if not self.store.model_versions():
            self.register(SHIPPED_DIR, current=True)

    def versions(self) -> list[dict[str, Any]]:
        self.ensure_shipped()
        return self.store.model_versions()

    def get(self, version: str) -> dict[str, Any]:
        for row in self.store.model_versions():
            if row["version"] == version:
                return row
        raise RegistryError(f"no model version {version!r} in the registry")

    def promote(self, version: str, *, force: bool = False) -> dict[str, Any]:
        """Make ``version`` the one the engine loads by default.

        A version the retraining gate rejected is refused unless ``force``.
        """
        row = self.get(version)
        read_meta(real_path(row["path"]))
        try:
            self.store.set_current_model(version, force=force)
        except StoreError as exc:
            raise RegistryError(str(exc)) from exc
        return self.get(version)

    def current_dir(self) -> Path:
        self.ensure_shipped()
        row = self.store.current_model()
        if row is None:
            raise RegistryError("the registry has versions but none is current; promote one")
        return real_path(row["path"])


def _headline(test: dict[str, Any]) -> dict[str, Any]:
    """Accuracy, macro-F1 and size per test set: what a version listing needs, not the
    matrices. A retraining candidate's test sets may be the gate's sample (see ``n``)."""
    return {
        name: {"accuracy": r["accuracy"], "macro_f1": r["macro_f1"], "n": r["n"]}
        for name, r in test.items()
    }


def registered_dir(settings: Settings, version: str) -> Path:
    """The registry's directory for ``version``; RegistryError when the registry lacks it.

    What a running worker loads for a ``model-updates`` message: the message only names a
    version, so whoever can write to that topic cannot make workers load (and unpickle)
    a directory of their choosing."""
    store = Store(settings.database_url)
    try:
        return real_path(Registry(store).get(version)["path"])
    finally:
        store.close()


def resolve_model_dir(settings: Settings) -> Path:
    """``model_path`` if set, else the registry's current version (the shipped one at first)."""
    if settings.model_path is not None:
        return settings.model_path
    store = Store(settings.database_url)
    try:
        return Registry(store).current_dir()
    finally:
        store.close()
