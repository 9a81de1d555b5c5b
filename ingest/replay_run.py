"""Drives a replay: pace, publish in batches, checkpoint after each acknowledged batch."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from finsentry.schema import Post
from finsentry.store import Store
from ingest.metrics import SourceMetrics
from ingest.replay import (
    PRESETS,
    ColumnMapping,
    Pacer,
    Rejection,
    Row,
    count_rows,
    ordered_rows,
    rows_fingerprint,
    stop_aware_sleep,
    utcnow,
)
from ingest.sink import PostSink
from ingest.tickers import TickerExtractor

log = logging.getLogger(__name__)


@dataclass
class ReplayResult:
    path: Path
    source: str
    resumed_from: int
    next_row: int
    published: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    completed: bool = False

    def summary(self) -> str:
        reasons = Counter(r.reason.split(":")[0] for r in self.rejections)
        top = ", ".join(f"{n}x {reason}" for reason, n in reasons.most_common(3))
        state = "complete" if self.completed else f"stopped; resumes at row {self.next_row + 1}"
        return (
            f"{self.path}: {state}; published {self.published}, rejected {len(self.rejections)}"
            + (f" ({top})" if top else "")
            + (f"; resumed after row {self.resumed_from}" if self.resumed_from else "")
        )


def source_name(path: Path, mapping: ColumnMapping) -> str:
    if mapping.source:
        return mapping.source
    stem = mapping.name if mapping.name in PRESETS and mapping.name != "generic" else path.stem
    return f"replay:{stem.lower()}"


def replay_file(
    path: Path,
    mapping: ColumnMapping,
    *,
    sink: PostSink,
    store: Store,
    extractor: TickerExtractor,
    pacer: Pacer,
    batch_size: int,
    sort: bool = False,
    restart: bool = False,
    stop: threading.Event | None = None,
    progress: bool = True,
    on_reject: Callable[[Rejection], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> ReplayResult:
    """Replay one file from its checkpoint; PublishError propagates with the checkpoint safe."""
    state_key = f"ingest:replay:{path.resolve()}"
    fingerprint = rows_fingerprint(path, mapping, sort)
    state = store.get_state(state_key) or {}
    start = 0
    if state and not restart:
        if state.get("fingerprint") == fingerprint:
            start = int(state["next_row"])
        else:
            log.warning("%s changed since its checkpoint (or the mapping did): starting over", path)
    source = source_name(path, mapping)
    result = ReplayResult(path, source, resumed_from=start, next_row=start)
    metrics = SourceMetrics(source)
    published_before = int(state.get("published_total", 0)) if start else 0
    batch: list[Post] = []
    rows: dict[str, Row] = {}  # where each post of the batch came from, for a refusal
    batch_end = start

    def reject(row: Row, reason: str) -> None:
        rejection = Rejection(row.number, row.where, reason)
        result.rejections.append(rejection)
        metrics.add(rejected=1)
        log.warning("%s row %d (%s) rejected: %s", path.name, row.number, row.where, reason)
        if on_reject is not None:
            on_reject(rejection)

    def flush() -> None:
        refused = sink.publish(batch, stop=stop)
        for refusal in refused:
            reject(rows[refusal.post.id], refusal.reason)
        result.published += len(batch) - len(refused)
        metrics.add(published=len(batch) - len(refused))
        result.next_row = batch_end
        store.put_state(
            state_key,
            {
                "fingerprint": fingerprint,
                "next_row": batch_end,
                "source": source,
                "published_total": published_before + result.published,
            },
        )
        bar.update(batch_end - bar.n)
        batch.clear()
        rows.clear()

    total = count_rows(path)
    with tqdm(total=total, initial=start, unit="row", desc=path.name, disable=not progress) as bar:
        for position, row in enumerate(ordered_rows(path, mapping, sort)):
            if position < start:
                continue
            if stop is not None and stop.is_set():
                break
            try:
                post = mapping.to_post(
                    row, source=source, received_at=utcnow(), extractor=extractor
                )
            except ValueError as exc:
                metrics.add(fetched=1)
                reject(row, str(exc))
                batch_end = position + 1
                continue
            metrics.add(fetched=1)
            due = pacer.due(post.published_at)
            if batch and due > clock():
                flush()
            if not stop_aware_sleep(due, stop, clock):
                break
            batch.append(post)
            rows[post.id] = row
            batch_end = position + 1
            if len(batch) >= batch_size:
                flush()
        else:
            result.completed = True
        flush()
    metrics.log_cycle("complete" if result.completed else "stopped", next_row=result.next_row)
    return result
