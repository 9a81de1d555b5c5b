"""Assembling a split encoder: the pinned hash is checked once, a mismatch is refused, and a
missing part names the extra that installs it. A tiny fake zip stands in for MPNet's 438 MB."""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from models import encoders
from models.encoders import (
    MPNET,
    VERIFIED_FILE,
    EncoderError,
    EncoderHashError,
    SplitEncoder,
    assemble,
    encoder_dir,
    part_paths,
)

pytestmark = pytest.mark.unit
WEIGHTS = b"not really safetensors, but bytes with a known hash" * 100


def _split_zip(folder: Path, name: str, parts: int = 3) -> list[Path]:
    """A zip holding ``<name>/model.safetensors`` and ``<name>/config.json``, cut in pieces."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{name}/model.safetensors", WEIGHTS)
        archive.writestr(f"{name}/config.json", '{"model_type": "mpnet"}')
    data = buffer.getvalue()
    size = -(-len(data) // parts)
    paths = []
    for index in range(parts):
        path = folder / f"{name}.zip.{index + 1:03d}"
        path.write_bytes(data[index * size : (index + 1) * size])
        paths.append(path)
    return paths


def _spec(sha256: str) -> SplitEncoder:
    return replace(MPNET, name="fake-encoder", weights_sha256=sha256)


def test_the_right_hash_is_accepted_and_recorded(tmp_path: Path) -> None:
    parts = _split_zip(tmp_path, "fake-encoder")
    spec = _spec(hashlib.sha256(WEIGHTS).hexdigest())
    cache = tmp_path / "cache"
    target = assemble(spec, cache, parts)
    assert (target / "model.safetensors").read_bytes() == WEIGHTS
    assert (target / VERIFIED_FILE).is_file()
    assert [p.name for p in cache.iterdir()] == ["fake-encoder"]  # no work dir left behind


def test_a_wrong_hash_is_refused_and_nothing_is_installed(tmp_path: Path) -> None:
    parts = _split_zip(tmp_path, "fake-encoder")
    cache = tmp_path / "cache"
    with pytest.raises(EncoderHashError, match=r"not the pinned 0{64}; refusing"):
        assemble(_spec("0" * 64), cache, parts)
    assert list(cache.iterdir()) == []


def test_parts_out_of_order_are_not_a_zip(tmp_path: Path) -> None:
    parts = _split_zip(tmp_path, "fake-encoder")
    spec = _spec(hashlib.sha256(WEIGHTS).hexdigest())
    with pytest.raises(EncoderError, match="not a zip"):
        assemble(spec, tmp_path / "cache", [parts[1], parts[0], parts[2]])


def test_missing_packages_name_the_extra() -> None:
    spec = replace(MPNET, packages=("finsentry-no-such-part-001",))
    with pytest.raises(EncoderError, match=r"not installed.*'teacher' extra.*finsentry\[teacher\]"):
        part_paths(spec)


def test_encoder_dir_wants_an_assembly_and_notices_a_changed_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(EncoderError, match="not assembled; run `finsentry models encoders"):
        encoder_dir("mpnet", cache)
    spec = _spec(hashlib.sha256(WEIGHTS).hexdigest())
    monkeypatch.setitem(encoders.SPLIT_ENCODERS, "mpnet", spec)
    target = assemble(spec, cache, _split_zip(tmp_path, "fake-encoder"))
    assert encoder_dir("mpnet", cache) == target
    weights = target / "model.safetensors"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    with pytest.raises(EncoderError, match="changed since it was verified"):
        encoder_dir("mpnet", cache)
    with pytest.raises(EncoderError, match="unknown base encoder 'bert'"):
        encoder_dir("bert", cache)
