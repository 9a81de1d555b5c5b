"""Backfill input: which files, which time range, and every post in event-time order.

Files are read with ingest's replay readers and column mappings (CSV, JSONL, Parquet; presets,
``--map``), so a row becomes the same ``Post`` in a backfill as in a replay. Rows that cannot
become a post are reported with their reason; posts outside the range are counted.

Ordering is an external merge sort: runs of ``run_size`` posts are sorted in memory and, when
there is more than one, spilled to temporary files and merged, so memory is bounded by the run
size whatever the size of the input. Ties break on (file, row), so the order, and everything
computed from it, is the same on every run.
"""

from __future__ import annotations

import heapq
import logging
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import TracebackType

from finsentry.schema import Post
from ingest.replay import (
    ColumnMapping,
    MappingOptions,
    Rejection,
    ReplayError,
    file_format,
    mapping_for,
    read_rows,
    rows_fingerprint,
)
from ingest.replay_run import source_name
from ingest.tickers import TickerExtractor

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class BackfillError(ValueError):
    """The backfill cannot start: a bad path, date, file format or column mapping."""


def expand_paths(paths: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """Files to read (directories searched recursively, in name order) and files skipped.

    A named file must have a known format; inside a directory, files of other formats (a
    SOURCE.md beside the data) are skipped and returned so that the caller can say so.
    """
    if not paths:
        raise BackfillError("no input: give one or more files or directories")
    files: dict[Path, None] = {}
    skipped: list[Path] = []
    for path in paths:
        if not path.exists():
            raise BackfillError(f"{path}: no such file or directory")
        if path.is_dir():
            found = [p for p in sorted(path.rglob("*")) if p.is_file()]
            data = [p for p in found if _is_data(p)]
            skipped += [p for p in found if not _is_data(p)]
            if not data:
                raise BackfillError(f"{path}: no .csv, .jsonl or .parquet files in it")
            files.update(dict.fromkeys(p.resolve() for p in data))
        else:
            try:
                file_format(path)
            except ReplayError as exc:
                raise BackfillError(str(exc)) from exc
            files[path.resolve()] = None
    return list(files), skipped


def _is_data(path: Path) -> bool:
    try:
        file_format(path)
    except ReplayError:
        return False
    return True


def parse_bound(text: str, option: str, *, end: bool = False) -> datetime:
    """``2020-01-31`` or an ISO 8601 time (UTC unless it has an offset).

    A bare date as ``--to`` includes that whole day: the bound is the next midnight.
    """
    value = text.strip()
    try:
        day = date.fromisoformat(value)
    except ValueError:
        pass
    else:
        midnight = datetime.combine(day, datetime.min.time(), UTC)
        return midnight + timedelta(days=1) if end else midnight
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BackfillError(
            f"{option} {text!r}: not a date; use YYYY-MM-DD or an ISO 8601 time such as "
            "2020-01-31T12:00:00Z"
        ) from exc
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


@dataclass(frozen=True)
class TimeRange:
    """Event times ``start <= t < end``; either side may be open."""

    start: datetime | None = None
    end: datetime | None = None

    def __post_init__(self) -> None:
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise BackfillError(
                f"--from {self.start.isoformat()} is not before --to {self.end.isoformat()}"
            )

    @classmethod
    def parse(cls, start: str | None, end: str | None) -> TimeRange:
        return cls(
            parse_bound(start, "--from") if start else None,
            parse_bound(end, "--to", end=True) if end else None,
        )

    def contains(self, when: datetime) -> bool:
        return (self.start is None or when >= self.start) and (self.end is None or when < self.end)

    def describe(self) -> str:
        start = self.start.isoformat() if self.start else "the beginning"
        end = self.end.isoformat() if self.end else "the end"
        return f"{start} to {end} (end excluded)"


@dataclass(frozen=True)
class InputFile:
    path: Path
    mapping: ColumnMapping
    source: str
    fingerprint: str  # file version and mapping, as replay's checkpoints identify them


def plan_inputs(paths: Sequence[Path], options: MappingOptions) -> list[InputFile]:
    """Check every file's format and columns before anything runs; all problems at once."""
    planned: list[InputFile] = []
    problems: list[str] = []
    for path in paths:
        try:
            mapping = mapping_for(path, options)
        except (ReplayError, OSError, UnicodeDecodeError) as exc:
            problems.append(str(exc) if isinstance(exc, ReplayError) else f"{path}: {exc}")
            continue
        fingerprint = rows_fingerprint(path, mapping, sort=True)
        planned.append(InputFile(path, mapping, source_name(path, mapping), fingerprint))
    if problems:
        raise BackfillError("\n".join(problems))
    return planned


@dataclass
class FileReport:
    """What reading one file gave: rows, posts in range, posts outside it, rejected rows."""

    path: Path
    rows: int = 0
    posts: int = 0
    out_of_range: int = 0
    rejected: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        top = ", ".join(f"{n}x {reason}" for reason, n in self.reasons.most_common(3))
        return (
            f"{self.path}: {self.rows} rows, {self.posts} posts in range, "
            f"{self.out_of_range} outside it, rejected {self.rejected}"
            + (f" ({top})" if top else "")
        )


@dataclass(frozen=True)
class Ordered:
    file_index: int
    post: Post


_SortKey = tuple[int, int, int]  # event time in microseconds, file index, row number


class EventOrder:
    """Reads every file once and then yields its posts in event-time order.

    Use as a context manager (the spill files live in a temporary directory): ``read()``
    maps and sorts, then iterate. ``total`` is the number of posts in range.
    """

    def __init__(
        self,
        files: Sequence[InputFile],
        time_range: TimeRange,
        *,
        received_at: datetime,
        extractor: TickerExtractor,
        run_size: int,
        on_reject: Callable[[InputFile, Rejection], None] | None = None,
        on_row: Callable[[], None] | None = None,
    ) -> None:
        self.files = list(files)
        self.time_range = time_range
        self.received_at = received_at
        self.extractor = extractor
        self.run_size = run_size
        self.on_reject = on_reject
        self.on_row = on_row
        self.reports = [FileReport(f.path) for f in self.files]
        self.total = 0
        self.spilled_runs = 0
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._runs: list[Path] = []
        self._buffer: list[tuple[_SortKey, Post]] = []

    def __enter__(self) -> EventOrder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()

    def read(self) -> None:
        for index, item in enumerate(self.files):
            report = self.reports[index]
            for row in read_rows(item.path):
                report.rows += 1
                if self.on_row is not None:
                    self.on_row()
                try:
                    post = item.mapping.to_post(
                        row,
                        source=item.source,
                        received_at=self.received_at,
                        extractor=self.extractor,
                    )
                except ValueError as exc:
                    self._reject(item, report, Rejection(row.number, row.where, str(exc)))
                    continue
                if not self.time_range.contains(post.published_at):
                    report.out_of_range += 1
                    continue
                report.posts += 1
                self.total += 1
                at = (post.published_at - _EPOCH) // _MICROSECOND
                self._buffer.append(((at, index, row.number), post))
                if len(self._buffer) >= self.run_size:
                    self._spill()
        if self._runs and self._buffer:
            self._spill()
        self._buffer.sort(key=lambda item: item[0])

    def _reject(self, item: InputFile, report: FileReport, rejection: Rejection) -> None:
        report.rejected += 1
        report.reasons[rejection.reason.split(":")[0]] += 1
        log.warning(
            "%s row %d (%s) rejected: %s",
            item.path.name,
            rejection.number,
            rejection.where,
            rejection.reason,
        )
        if self.on_reject is not None:
            self.on_reject(item, rejection)

    def _spill(self) -> None:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="finsentry-backfill-")
        self._buffer.sort(key=lambda item: item[0])
        path = Path(self._tmp.name) / f"run-{len(self._runs):05d}.tsv"
        with path.open("w", encoding="utf-8") as handle:
            for (at, index, number), post in self._buffer:
                # JSON escapes tabs and newlines, so a line holds exactly one post.
                handle.write(f"{at}\t{index}\t{number}\t{post.to_json().decode()}\n")
        self._runs.append(path)
        self.spilled_runs += 1
        self._buffer = []

    def __iter__(self) -> Iterator[Ordered]:
        if not self._runs:
            for (_, index, _), post in self._buffer:
                yield Ordered(index, post)
            return
        for _, index, _, line in heapq.merge(*(_read_run(path) for path in self._runs)):
            yield Ordered(index, Post.from_json(line))


def _read_run(path: Path) -> Iterator[tuple[int, int, int, str]]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            at, index, number, payload = line.rstrip("\n").split("\t", 3)
            yield int(at), int(index), int(number), payload
