"""Runs a backfill job: checkpoints in the store, a writer thread, progress and a summary.

A job is its list of files and its time range. Its checkpoint (``job_state`` row
``backfill:<hash>``) holds one entry per input file (the file's version and mapping, as replay
checks them, and how many of its posts are done) and the run's state. Written after a batch's
posts, signal points and alerts are in the store, so a restarted job redoes at most the batches
after it, and those upserts write the same rows again. A finished job keeps its summary; running
it again changes nothing. A file changed since (or other settings, or another model) starts the
job over, as replay does.

The store writes run on a thread of their own so that inference does not wait for the
database; the bounded queue keeps memory flat when the database is the slower side.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from finsentry.config import Settings
from finsentry.schema import Alert, Post
from finsentry.store import Store
from ingest.replay import Rejection
from ingest.sink import PostSink
from ingest.tickers import TickerExtractor
from stream.backfill import BackfillRun, BatchOutput, Counters, Scorer
from stream.backfill_input import EventOrder, FileReport, InputFile, TimeRange

log = logging.getLogger(__name__)

_WRITE_QUEUE_DEPTH = 4  # batches waiting for the database before inference waits


def job_key(files: Sequence[InputFile], time_range: TimeRange, mode: str) -> str:
    identity = {
        "files": [str(f.path) for f in files],
        "from": time_range.start.isoformat() if time_range.start else None,
        "to": time_range.end.isoformat() if time_range.end else None,
        "mode": mode,
    }
    digest = hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:20]
    return f"backfill:{mode}:{digest}"


def job_fingerprint(files: Sequence[InputFile], config: dict[str, Any]) -> str:
    """What a checkpoint's results depend on: file versions, mappings, settings, model."""
    identity = {"files": [f.fingerprint for f in files], "config": config}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def result_config(settings: Settings, model_version: str, batch_size: int) -> dict[str, Any]:
    names = [
        name
        for name in type(settings).model_fields
        if name.startswith(("window_", "spike_", "dedup_")) or name == "allowed_lateness_s"
    ]
    return {
        **{name: getattr(settings, name) for name in names},
        "model_version": model_version,
        "batch_size": batch_size,  # batch composition moves scores in the last bits
    }


@dataclass
class BackfillSummary:
    files: list[FileReport]
    counters: Counters
    total: int  # posts in range
    resumed_from: int = 0
    completed: bool = False
    already_complete: bool = False
    seconds: float = 0.0
    notified: bool = False
    published: int | None = None  # --via-kafka: posts handed to the pipeline
    refused: int = 0  # --via-kafka: posts the producer refused for good (too large for Kafka)
    spilled_runs: int = 0  # sorted runs the external sort wrote to disk (0: sorted in memory)

    def lines(self) -> list[str]:
        c = self.counters
        if self.already_complete:
            state = "already complete (checkpoint); nothing to do"
        elif self.completed:
            state = f"complete in {self.seconds:.1f} s"
        else:
            state = f"stopped; resumes after post {c.read} of {self.total}"
        if self.resumed_from and not self.already_complete:
            state += f"; resumed after post {self.resumed_from}"
        lines = [f"backfill {state}"]
        lines += [f"  {report.summary()}" for report in self.files]
        if self.published is not None:
            refused = f"; {self.refused} refused, see the log" if self.refused else ""
            lines.append(
                f"  published {self.published} posts to the pipeline's posts topic{refused}"
            )
            return lines
        done = c.read - self.resumed_from
        rate = f" ({done / self.seconds:.1f} posts/s)" if self.seconds > 0 and done else ""
        lines.append(
            f"  posts {c.read}{rate}: scored {c.scored}, duplicates "
            f"{c.duplicates_id + c.duplicates_fingerprint} (id {c.duplicates_id}, fingerprint "
            f"{c.duplicates_fingerprint}), unscorable {c.unscorable}, late {c.late}"
        )
        fate = "published to the alerts topic" if self.notified else "stored as backfill, not sent"
        lines.append(f"  windows {c.windows}, spikes {c.spikes}, alerts {c.alerts} ({fate})")
        return lines


def _report_dict(report: FileReport) -> dict[str, Any]:
    data = asdict(report)
    data["path"] = str(report.path)
    data["reasons"] = dict(report.reasons)
    return data


def _report_from(data: dict[str, Any]) -> FileReport:
    return FileReport(
        Path(data["path"]),
        data["rows"],
        data["posts"],
        data["out_of_range"],
        data["rejected"],
        Counter(data["reasons"]),
    )


class BackfillWriteError(RuntimeError):
    """A batch could not be written (store or, with --notify, Kafka); the checkpoint is safe."""


class StoreWriter:
    """Writes batch outputs in order on its own thread; errors surface on the next put."""

    def __init__(
        self,
        store: Store,
        key: str,
        *,
        notify: Callable[[Sequence[Alert]], None] | None = None,
    ) -> None:
        self.store = store
        self.key = key
        self.notify = notify
        self.error: BaseException | None = None
        self._queue: queue.Queue[tuple[BatchOutput, dict[str, Any] | None] | None] = queue.Queue(
            maxsize=_WRITE_QUEUE_DEPTH
        )
        self._thread = threading.Thread(target=self._work, name="finsentry-backfill-writer")
        self._thread.start()

    def put(self, output: BatchOutput, checkpoint: dict[str, Any] | None) -> None:
        self._raise()
        self._queue.put((output, checkpoint))

    def close(self) -> None:
        """Finish the queued writes, stop the thread, and raise what went wrong, if anything."""
        self._queue.put(None)
        self._thread.join()
        self._raise()

    def _raise(self) -> None:
        if self.error is not None:
            raise BackfillWriteError(f"writing to the store failed: {self.error!r}") from self.error

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            if self.error is not None:
                continue  # drain; the main thread raises on its next put or close
            output, checkpoint = item
            try:
                self._write(output, checkpoint)
            except BaseException as exc:  # reported to the main thread, never lost
                log.exception("backfill store write failed")
                self.error = exc

    def _write(self, output: BatchOutput, checkpoint: dict[str, Any] | None) -> None:
        if output.posts:
            self.store.upsert_posts(output.posts, is_backfill=True)
        if output.points:
            self.store.upsert_signal_points(output.points)
        if output.alerts:
            # Alerts someone was told of are live ones; the others stay marked as backfill.
            self.store.upsert_alerts(output.alerts, is_backfill=self.notify is None)
            if self.notify is not None:
                self.notify(output.alerts)
        if checkpoint is not None:
            self.store.put_state(self.key, checkpoint)


class _Checkpoints:
    """Reads and builds one job's checkpoint values."""

    def __init__(
        self, store: Store, key: str, fingerprint: str, files: Sequence[InputFile]
    ) -> None:
        self.store = store
        self.key = key
        self.fingerprint = fingerprint
        self.files = list(files)
        self.started_at = datetime.now(UTC)

    def load(self, restart: bool) -> dict[str, Any] | None:
        """The checkpoint to continue from, if it is this job's (same files and settings)."""
        value = self.store.get_state(self.key)
        if value is None or restart:
            return None
        if value.get("fingerprint") != self.fingerprint:
            log.warning(
                "%s: files, mapping, settings or model changed since its checkpoint: starting over",
                self.key,
            )
            return None
        self.started_at = datetime.fromisoformat(value["started_at"])
        return dict(value)

    def value(
        self,
        state: dict[str, Any],
        *,
        completed: bool,
        reports: Sequence[FileReport],
        heavy: bool,
    ) -> dict[str, Any]:
        done = state.get("file_done", [0] * len(self.files))
        return {
            "fingerprint": self.fingerprint,
            "started_at": self.started_at.isoformat(),
            "completed": completed,
            "files": [
                {"path": str(f.path), "fingerprint": f.fingerprint, "posts_done": n}
                for f, n in zip(self.files, done, strict=True)
            ],
            "position": state.get("position", 0),
            "counters": state.get("counters", {}),
            "reports": [_report_dict(r) for r in reports],
            "state": state if heavy else None,
        }


def _already_complete(checkpoint: dict[str, Any]) -> BackfillSummary:
    counters = Counters(**checkpoint["counters"])
    return BackfillSummary(
        files=[_report_from(r) for r in checkpoint["reports"]],
        counters=counters,
        total=counters.read,
        completed=True,
        already_complete=True,
    )


def _read(
    files: Sequence[InputFile],
    time_range: TimeRange,
    settings: Settings,
    checkpoints: _Checkpoints,
    extractor: TickerExtractor,
    on_reject: Callable[[InputFile, Rejection], None] | None,
    progress: bool,
) -> EventOrder:
    """Every file read, mapped and sorted, with a progress bar; use the result in ``with``."""
    order = EventOrder(
        files,
        time_range,
        received_at=checkpoints.started_at,
        extractor=extractor,
        run_size=settings.backfill_sort_run_posts,
        on_reject=on_reject,
    )
    try:
        with tqdm(unit="row", desc="reading", disable=not progress) as bar:
            order.on_row = lambda: bar.update()
            order.read()
    except BaseException:
        order.__exit__(None, None, None)
        raise
    order.on_row = None
    return order


def run_backfill(
    files: Sequence[InputFile],
    time_range: TimeRange,
    *,
    settings: Settings,
    store: Store,
    scorer: Scorer,
    extractor: TickerExtractor,
    notify: Callable[[Sequence[Alert]], None] | None = None,
    restart: bool = False,
    stop: threading.Event | None = None,
    progress: bool = True,
    on_reject: Callable[[InputFile, Rejection], None] | None = None,
) -> BackfillSummary:
    """Score, window and store the files' posts in event-time order, from the checkpoint."""
    batch_size = settings.backfill_batch_size
    config = result_config(settings, scorer.version, batch_size)
    checkpoints = _Checkpoints(
        store, job_key(files, time_range, "store"), job_fingerprint(files, config), files
    )
    checkpoint = checkpoints.load(restart)
    if checkpoint is not None and checkpoint["completed"]:
        return _already_complete(checkpoint)
    snapshot = checkpoint["state"] if checkpoint is not None else None
    started = time.perf_counter()
    with _read(files, time_range, settings, checkpoints, extractor, on_reject, progress) as order:
        run = BackfillRun(settings, scorer, files=len(files), snapshot=snapshot)
        summary = BackfillSummary(order.reports, run.counters, order.total, run.position)
        summary.spilled_runs = order.spilled_runs
        summary.notified = notify is not None
        writer = StoreWriter(store, checkpoints.key, notify=notify)
        try:
            with tqdm(
                total=order.total, initial=run.position, unit="post", desc="backfill",
                disable=not progress,
            ) as bar:  # fmt: skip
                for output in run.run(iter(order), stop):
                    value = None
                    if output.final:
                        value = checkpoints.value(
                            run.snapshot(), completed=True, reports=order.reports, heavy=False
                        )
                    elif output.state is not None:
                        value = checkpoints.value(
                            output.state, completed=False, reports=order.reports, heavy=True
                        )
                    writer.put(output, value)
                    bar.update(output.consumed)
                    bar.set_postfix(
                        dups=run.counters.duplicates_id + run.counters.duplicates_fingerprint,
                        windows=run.counters.windows,
                        alerts=run.counters.alerts,
                        refresh=False,
                    )
                    summary.completed = output.final
        finally:
            writer.close()
    summary.seconds = time.perf_counter() - started
    return summary


def publish_backfill(
    files: Sequence[InputFile],
    time_range: TimeRange,
    *,
    settings: Settings,
    store: Store,
    sink: PostSink,
    extractor: TickerExtractor,
    restart: bool = False,
    stop: threading.Event | None = None,
    progress: bool = True,
    on_reject: Callable[[InputFile, Rejection], None] | None = None,
) -> BackfillSummary:
    """``--via-kafka``: the posts in event-time order into the posts topic, checkpointed
    after each acknowledged batch; the stream workers do the rest."""
    checkpoints = _Checkpoints(
        store, job_key(files, time_range, "kafka"), job_fingerprint(files, {}), files
    )
    checkpoint = checkpoints.load(restart)
    if checkpoint is not None and checkpoint["completed"]:
        summary = _already_complete(checkpoint)
        summary.published = 0
        return summary
    position = int(checkpoint["position"]) if checkpoint else 0
    file_done = [f["posts_done"] for f in checkpoint["files"]] if checkpoint else [0] * len(files)
    started = time.perf_counter()
    with _read(files, time_range, settings, checkpoints, extractor, on_reject, progress) as order:
        counters = Counters(read=position)
        summary = BackfillSummary(order.reports, counters, order.total, position, published=0)

        def save(completed: bool) -> None:
            state = {
                "position": counters.read,
                "file_done": file_done,
                "counters": asdict(counters),
            }
            store.put_state(
                checkpoints.key,
                checkpoints.value(state, completed=completed, reports=order.reports, heavy=False),
            )

        with tqdm(
            total=order.total, initial=position, unit="post", desc="publish", disable=not progress
        ) as bar:
            for batch in _batches(order, position, settings.ingest_batch_size):
                if stop is not None and stop.is_set():
                    break
                now = datetime.now(UTC)
                refused = sink.publish(
                    [item.model_copy(update={"received_at": now}) for _, item in batch], stop=stop
                )
                for refusal in refused:
                    log.warning("post %s refused: %s", refusal.post.id, refusal.reason)
                for index, _ in batch:
                    file_done[index] += 1
                counters.read += len(batch)
                summary.refused += len(refused)
                summary.published = (summary.published or 0) + len(batch) - len(refused)
                save(completed=False)
                bar.update(len(batch))
            else:
                save(completed=True)
                summary.completed = True
    summary.seconds = time.perf_counter() - started
    return summary


def _batches(order: EventOrder, skip: int, size: int) -> Iterator[list[tuple[int, Post]]]:
    batch: list[tuple[int, Post]] = []
    for position, item in enumerate(order):
        if position < skip:
            continue
        batch.append((item.file_index, item.post))
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
