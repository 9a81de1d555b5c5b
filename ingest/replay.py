"""Replay: dated files (CSV, JSONL, Parquet) become Posts with their original event time.

Reading and mapping are pure (``read_rows``, ``ColumnMapping.to_post``); ``replay_file``
paces, publishes through a ``PostSink`` and checkpoints the next row in the store only after
Kafka acknowledged everything before it, so a restarted replay resumes without loss and
without resending acknowledged rows. Rows that cannot become a Post are reported with their
row number and the reason, never dropped silently.
"""

from __future__ import annotations

import csv
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfoNotFoundError

from finsentry.schema import Post
from ingest.posts import make_post
from ingest.tickers import TickerExtractor
from ingest.timeparse import (
    TimeParseError,
    TimeParser,
    iso_parser,
    parse_cnbc,
    parse_day,
    strptime_parser,
)

log = logging.getLogger(__name__)

FIELDS = ("id", "title", "body", "published_at", "url", "author", "lang", "tickers")
FORMATS = ("csv", "jsonl", "parquet")
_HEADER_SAMPLE = 100  # JSONL has no header: the union of the first records' keys stands in


class ReplayError(ValueError):
    """The file or its mapping cannot be replayed at all (unknown format, missing column)."""


@dataclass(frozen=True)
class Row:
    number: int  # 1-based data row (header excluded)
    where: str  # "line 12" for text files, "row 5" for Parquet
    values: Mapping[str, Any] | None
    problem: str | None = None  # set when the record itself is malformed


@dataclass(frozen=True)
class ColumnMapping:
    """Which column feeds which Post field, and how its time is read."""

    name: str
    columns: Mapping[str, str]  # Post field -> column name
    parse_time: TimeParser = field(default_factory=iso_parser)
    source: str | None = None  # default: replay:<preset or file stem>
    kind: Literal["news", "social"] = "news"

    def fit_header(self, header: Sequence[str], path: Path) -> ColumnMapping:
        """This mapping without optional columns the file lacks; refuses a missing time/text."""
        present = {f: c for f, c in self.columns.items() if c in header}
        missing = sorted(c for c in self.columns.values() if c not in header)
        if "published_at" not in present or not ({"title", "body"} & set(present)):
            raise ReplayError(
                f"{path}: mapping {self.name!r} needs a time column and a title or body column; "
                f"missing {missing}, the file has {list(header)}"
            )
        if missing:
            log.info("%s: no column(s) %s in the file; those fields stay empty", path, missing)
        return replace(self, columns=present)

    def to_post(
        self, row: Row, *, source: str, received_at: datetime, extractor: TickerExtractor
    ) -> Post:
        """Map one row; raises ValueError (SchemaError, TimeParseError) with the reason."""
        if row.problem or row.values is None:
            raise ValueError(row.problem or "empty record")
        values = {f: _cell(row.values.get(col)) for f, col in self.columns.items()}
        if values.get("published_at") is None:
            raise TimeParseError(f"no time in column {self.columns.get('published_at')!r}")
        published_at = self.parse_time(values["published_at"])
        hints = _split_tickers(values.get("tickers"))
        native = values.get("id")
        return make_post(
            source=source,
            kind=self.kind,
            native_id=str(native) if native is not None else None,
            title=_str(values.get("title")),
            body=_str(values.get("body")),
            published_at=published_at,
            received_at=received_at,
            extractor=extractor,
            url=_str(values.get("url")),
            author=_str(values.get("author")),
            lang=_str(values.get("lang")),
            ticker_hints=hints,
        )


def _cell(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        return None
    if isinstance(value, float) and value != value:  # NaN from Parquet/pandas
        return None
    return value


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _split_tickers(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return [part for part in str(value).replace(";", ",").replace(" ", ",").split(",") if part]


# Presets for the bundled datasets in data/ (see each folder's SOURCE.md).
PRESETS: dict[str, ColumnMapping] = {
    "cnbc": ColumnMapping(
        "cnbc", {"title": "Headlines", "body": "Description", "published_at": "Time"}, parse_cnbc
    ),
    "guardian": ColumnMapping(
        "guardian", {"title": "Headlines", "published_at": "Time"}, parse_day
    ),
    "benzinga": ColumnMapping(
        "benzinga", {"id": "", "title": "title", "published_at": "date", "tickers": "stock"}
    ),
    "generic": ColumnMapping(
        "generic", {"title": "title", "body": "body", "published_at": "published_at"}
    ),
}
_PRESET_HEADERS = {
    frozenset({"Headlines", "Time", "Description"}): "cnbc",
    frozenset({"Time", "Headlines"}): "guardian",
    frozenset({"", "title", "date", "stock"}): "benzinga",
}


def detect_mapping(header: Sequence[str]) -> ColumnMapping:
    """A preset for a known header, else ``generic`` plus whichever optional fields exist."""
    preset = _PRESET_HEADERS.get(frozenset(header))
    if preset:
        return PRESETS[preset]
    columns = {f: f for f in FIELDS if f in header}
    if "published_at" not in columns or not ({"title", "body"} & set(columns)):
        raise ReplayError(
            f"no preset matches header {list(header)}; pass --preset or --map FIELD=COLUMN "
            "(needs published_at and title or body)"
        )
    return ColumnMapping("generic", columns)


def with_overrides(
    mapping: ColumnMapping, overrides: Mapping[str, str], **changes: Any
) -> ColumnMapping:
    unknown = sorted(set(overrides) - set(FIELDS))
    if unknown:
        raise ReplayError(f"--map: unknown field(s) {unknown}; fields are {list(FIELDS)}")
    return replace(mapping, columns={**mapping.columns, **overrides}, **changes)


@dataclass(frozen=True)
class MappingOptions:
    """What a user says about a file's columns (``--preset``, ``--map``, time format...)."""

    preset: str | None = None
    overrides: Mapping[str, str] = field(default_factory=dict)
    time_format: str | None = None
    tz: str = "UTC"
    source: str | None = None
    kind: Literal["news", "social"] = "news"


def parse_overrides(items: Sequence[str]) -> dict[str, str]:
    """``["title=Headline", ...]`` -> ``{"title": "Headline"}``; refuses items without ``=``."""
    pairs: dict[str, str] = {}
    for item in items:
        name, sep, column = item.partition("=")
        if not sep:
            raise ReplayError(f"--map {item!r}: use FIELD=COLUMN")
        pairs[name] = column
    return pairs


def mapping_for(path: Path, options: MappingOptions) -> ColumnMapping:
    """The mapping one file is read with: the given preset (or the one its header matches),
    the overrides, the time format, fitted to the columns the file has."""
    if options.preset is not None and options.preset not in PRESETS:
        raise ReplayError(f"unknown preset {options.preset!r}; presets are {list(PRESETS)}")
    changes: dict[str, Any] = {"kind": options.kind, "source": options.source}
    try:
        if options.time_format:
            changes["parse_time"] = strptime_parser(options.time_format, options.tz)
        elif options.tz != "UTC":
            changes["parse_time"] = iso_parser(options.tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ReplayError(f"--tz {options.tz!r}: not a known time zone") from exc
    header = read_header(path)
    if options.preset or options.overrides:
        base = PRESETS[options.preset or "generic"]
    else:
        try:
            base = detect_mapping(header)
        except ReplayError as exc:
            raise ReplayError(f"{path}: {exc}") from exc
    return with_overrides(base, options.overrides, **changes).fit_header(header, path)


def file_format(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    fmt = {"ndjson": "jsonl", "json": "jsonl", "pq": "parquet"}.get(suffix, suffix)
    if fmt not in FORMATS:
        raise ReplayError(f"{path}: unknown format {suffix!r}; use .csv, .jsonl or .parquet")
    return fmt


def read_header(path: Path) -> list[str]:
    fmt = file_format(path)
    if fmt == "csv":
        with path.open(newline="", encoding="utf-8") as handle:
            return next(csv.reader(handle), [])
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return list(pq.ParquetFile(path).schema_arrow.names)
    keys: dict[str, None] = {}
    for row in _jsonl_rows(path):
        keys.update(dict.fromkeys(row.values or {}))
        if row.number >= _HEADER_SAMPLE:
            break
    return list(keys)


def read_rows(path: Path) -> Iterator[Row]:
    """Every record of the file in order, malformed ones included (with ``problem`` set)."""
    fmt = file_format(path)
    if fmt == "csv":
        yield from _csv_rows(path)
    elif fmt == "jsonl":
        yield from _jsonl_rows(path)
    else:
        yield from _parquet_rows(path)


def _csv_rows(path: Path) -> Iterator[Row]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        for number, record in enumerate(reader, start=1):
            where = f"line {reader.line_num}"
            if not any(cell.strip() for cell in record):
                yield Row(number, where, None, "empty record")
            elif len(record) != len(header):
                yield Row(number, where, None, f"{len(record)} fields, header has {len(header)}")
            else:
                yield Row(number, where, dict(zip(header, record, strict=True)))


def _jsonl_rows(path: Path) -> Iterator[Row]:
    with path.open(encoding="utf-8") as handle:
        number = 0
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            number += 1
            where = f"line {line_no}"
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                yield Row(number, where, None, f"not JSON: {exc.msg} at column {exc.colno}")
                continue
            if not isinstance(value, dict):
                yield Row(number, where, None, f"a JSON {type(value).__name__}, not an object")
            else:
                yield Row(number, where, value)


def _parquet_rows(path: Path) -> Iterator[Row]:
    import pyarrow.parquet as pq

    number = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
        for record in batch.to_pylist():
            number += 1
            yield Row(number, f"row {number}", record)


def count_rows(path: Path) -> int:
    if file_format(path) == "parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    return sum(1 for _ in read_rows(path))


class Pacer:
    """When each post is due: as fast as possible, ``rate`` posts/s, or ``speed`` x event time."""

    def __init__(
        self,
        *,
        speed: float | None = None,
        rate: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if speed is not None and rate is not None:
            raise ReplayError("--speed and --rate exclude each other")
        if (speed is not None and speed <= 0) or (rate is not None and rate <= 0):
            raise ReplayError("--speed and --rate must be positive")
        self.speed = speed
        self.rate = rate
        self.clock = clock
        self._start: float | None = None
        self._first_event: datetime | None = None
        self._last_due = 0.0
        self._count = 0

    def due(self, event_time: datetime) -> float:
        """Monotonic time at which this post should be sent (never earlier than the last)."""
        now = self.clock()
        if self._start is None:
            self._start, self._first_event = now, event_time
        assert self._first_event is not None
        if self.rate is not None:
            due = self._start + self._count / self.rate
        elif self.speed is not None:
            due = self._start + (event_time - self._first_event).total_seconds() / self.speed
        else:
            due = now
        self._count += 1
        self._last_due = max(self._last_due, due)
        return self._last_due


@dataclass
class Rejection:
    number: int
    where: str
    reason: str


def rows_fingerprint(path: Path, mapping: ColumnMapping, sort: bool) -> str:
    """Identifies the file version and row order a checkpoint refers to."""
    stat = path.stat()
    return (
        f"{stat.st_size}:{stat.st_mtime_ns}:{mapping.name}:{sorted(mapping.columns.items())}:{sort}"
    )


def utcnow() -> datetime:
    return datetime.now(UTC)


def ordered_rows(path: Path, mapping: ColumnMapping, sort: bool) -> Iterator[Row]:
    """File order, or sorted by event time (unparseable times first, to be reported)."""
    if not sort:
        yield from read_rows(path)
        return

    def key(row: Row) -> tuple[int, datetime, int]:
        column = mapping.columns.get("published_at")
        try:
            when = mapping.parse_time(_cell((row.values or {}).get(column or "")))
        except (TimeParseError, TypeError, ValueError):
            return (0, datetime.min.replace(tzinfo=UTC), row.number)
        return (1, when, row.number)

    yield from sorted(read_rows(path), key=key)


def stop_aware_sleep(
    until: float, stop: threading.Event | None, clock: Callable[[], float]
) -> bool:
    """Sleep until ``until``; False when stopped first."""
    remaining = until - clock()
    if remaining <= 0:
        return True
    if stop is None:
        time.sleep(remaining)
        return True
    return not stop.wait(remaining)
