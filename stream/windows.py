"""Event-time tumbling windows per key, closed by a watermark. Plain Python, no Faust.

A scored post fans out to its keys (each ticker, its topic, its source family, ``market``).
A window closes once the watermark reaches its end. In the stream the watermark is the
lowest high mark of the active input partitions minus the allowed lateness
(stream/watermarks.py); in a backfill, whose input is sorted, the latest event time minus
the lateness. A post whose window has already closed is late: counted, and, while its closed
window is still kept (``correction_horizon_s`` past its close), added to it, which gives a
corrected figure for the window's stored signal point. Within the allowed lateness the closed
windows therefore do not depend on arrival order, which is what lets backfill (sorted files)
and the stream (Kafka order) produce the same numbers.

Window state lives in a MutableMapping of plain dicts (a Faust table in the worker) and a
post is counted once per window even if it is delivered again after a crash.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, MutableMapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from finsentry.schema import Evidence, ScoredPost
from stream.watermarks import Progress

WATERMARK_KEY = "__watermark__"
# Characters of a title kept as evidence: enough to recognise the story in an alert, and
# it keeps a batch of long titles within what one Kafka message may carry.
EVIDENCE_TITLE_CHARS = 300


@dataclass(frozen=True)
class Observation:
    """What a window needs from one scored post."""

    post_id: str
    event_time: float  # epoch seconds
    score: float
    negative: bool
    title: str
    url: str | None
    model_version: str


@dataclass(frozen=True)
class ClosedWindow:
    key: str
    window_start: datetime
    window_end: datetime
    count: int
    mean_score: float
    neg_share: float
    evidence: tuple[Evidence, ...]
    model_version: str


@dataclass
class AddResult:
    late_keys: list[str] = field(default_factory=list)
    closed: list[ClosedWindow] = field(default_factory=list)
    corrected: list[ClosedWindow] = field(default_factory=list)  # closed before, late post added


def keys_for(post: ScoredPost) -> list[str]:
    """The aggregation keys of a post, in a fixed order."""
    keys = [f"ticker:{ticker}" for ticker in post.tickers]
    keys.append(f"topic:{post.topic}")
    keys.append(f"source:{post.source.split(':', 1)[0]}")
    keys.append("market")
    return keys


def observe(post: ScoredPost) -> Observation:
    return Observation(
        post_id=post.id,
        event_time=post.published_at.timestamp(),
        score=post.score,
        negative=post.sentiment == "negative",
        title=(post.title or post.body[:200])[:EVIDENCE_TITLE_CHARS],
        url=post.url,
        model_version=post.model_version,
    )


class SignalInput(NamedTuple):
    """One signal-input message: observations in order, and the input partitions' progress."""

    observations: list[tuple[list[str], Observation]]
    progress: Progress


def observations_to_json(posts: Sequence[ScoredPost], progress: Progress | None = None) -> bytes:
    """One message for a batch of scored posts (each post's keys and observation, in order)
    and the progress of the input partitions they came from (none: posts only).

    UTF-8, not ASCII escapes: an emoji costs 4 bytes, not 12.
    """
    progress = progress or Progress()
    return json.dumps(
        {
            "observations": [[keys_for(post), asdict(observe(post))] for post in posts],
            "inputs": list(progress.inputs),
            "highs": dict(progress.highs),
            "woken": list(progress.woken),
            "idle": list(progress.idle),
        },
        ensure_ascii=False,
    ).encode()


def observations_from_json(raw: bytes) -> SignalInput:
    """The inverse of ``observations_to_json`` (the message comes from the worker itself).
    A bare list is a batch written before the marks were sent: observations only."""
    data = json.loads(raw)
    if isinstance(data, list):
        data = {"observations": data}
    progress = Progress(
        inputs=tuple(data.get("inputs", ())),
        highs={name: float(high) for name, high in data.get("highs", {}).items()},
        woken=tuple(data.get("woken", ())),
        idle=tuple(data.get("idle", ())),
    )
    observations = [(keys, Observation(**obs)) for keys, obs in data["observations"]]
    return SignalInput(observations, progress)


def _state_key(key: str, start: float) -> str:
    return f"{key}|{start:.0f}"


class WindowAggregator:
    """Tumbling windows of ``size_s`` for every key, closed by the watermark.

    A closed window is kept (marked closed, no longer emitted) until the watermark is
    ``correction_horizon_s`` past its end, so a late post can still be added to it once.
    """

    def __init__(
        self,
        size_s: int,
        allowed_lateness_s: int,
        *,
        evidence_size: int = 5,
        correction_horizon_s: int = 0,
        state: MutableMapping[str, Any] | None = None,
    ) -> None:
        self.size_s = size_s
        self.allowed_lateness_s = allowed_lateness_s
        self.evidence_size = evidence_size
        self.correction_horizon_s = correction_horizon_s
        self.state: MutableMapping[str, Any] = {} if state is None else state

    @property
    def watermark(self) -> float:
        return float(self.state.get(WATERMARK_KEY, -math.inf))

    def window_start(self, event_time: float) -> float:
        return math.floor(event_time / self.size_s) * self.size_s

    def add(self, keys: list[str], obs: Observation) -> AddResult:
        """Aggregate one post under its keys, then close what its event time allows: the
        watermark of a single input in event-time order (a backfill)."""
        result = self.accumulate(keys, obs)
        result.closed = self.advance(obs.event_time - self.allowed_lateness_s)
        return result

    def accumulate(self, keys: list[str], obs: Observation) -> AddResult:
        """Aggregate one post under its keys; the watermark stays where it is. A late post
        is added to its closed windows still kept, each then returned as corrected."""
        result = AddResult()
        start = self.window_start(obs.event_time)
        if start + self.size_s > self.watermark:
            for key in keys:
                self._accumulate(_state_key(key, start), key, start, obs)
            return result
        result.late_keys = list(keys)
        for key in keys:
            name = _state_key(key, start)
            window = self.state.get(name)
            kept = window is not None and window.get("closed")
            if kept and self._accumulate(name, key, start, obs):
                result.corrected.append(self._to_closed(self.state[name]))
        return result

    def advance(self, mark: float) -> list[ClosedWindow]:
        """Move the watermark up to ``mark`` (never back) and close the windows it passes.

        Window ends are multiples of the size, so nothing new can close, nor a kept window
        expire, unless the watermark crosses one: only then is the state scanned.
        """
        old = self.watermark
        if mark <= old:
            return []
        self.state[WATERMARK_KEY] = mark
        if math.isfinite(old) and math.floor(mark / self.size_s) == math.floor(old / self.size_s):
            return []
        expired = [
            name
            for name, window in self._windows(closed=True)
            if window["start"] + self.size_s + self.correction_horizon_s <= mark
        ]
        for name in expired:
            del self.state[name]
        return self._close(lambda end: end <= mark)

    def flush(self) -> list[ClosedWindow]:
        """Close every open window (end of a backfill: no later post can come)."""
        return self._close(lambda end: True)

    def open_windows(self) -> int:
        return sum(1 for _ in self._windows())

    def _accumulate(self, name: str, key: str, start: float, obs: Observation) -> bool:
        """Adds the post to the window; False if it was there already."""
        window = self.state.get(name) or {
            "key": key,
            "start": start,
            "posts": {},
            "evidence": [],
            "versions": [],
        }
        if obs.post_id in window["posts"]:
            return False  # redelivered after a crash: already counted
        window["posts"][obs.post_id] = [obs.score, int(obs.negative)]
        if obs.model_version not in window["versions"]:
            window["versions"] = sorted([*window["versions"], obs.model_version])
        candidates = [*window["evidence"], [obs.score, obs.post_id, obs.title, obs.url]]
        candidates.sort(key=lambda item: (item[0], item[1]))
        window["evidence"] = candidates[: self.evidence_size]
        self.state[name] = window  # reassign so table-backed state records the change
        return True

    def _close(self, due: Any) -> list[ClosedWindow]:
        names = [name for name, window in self._windows() if due(window["start"] + self.size_s)]
        closed = [self._to_closed(self.state[name]) for name in names]
        for name in names:
            if self.correction_horizon_s > 0:
                self.state[name] = {**self.state[name], "closed": True}
            else:
                del self.state[name]
        closed.sort(key=lambda w: (w.window_start, w.key))
        return closed

    def _windows(self, *, closed: bool = False) -> Iterator[tuple[str, dict[str, Any]]]:
        """The open windows (or the closed ones still kept)."""
        for name, window in list(self.state.items()):
            if not name.startswith("__") and bool(window.get("closed")) == closed:
                yield name, window

    def _to_closed(self, window: dict[str, Any]) -> ClosedWindow:
        scores = window["posts"].values()
        count = len(window["posts"])
        # fsum is exactly rounded, so the mean does not depend on arrival order.
        mean = math.fsum(score for score, _ in scores) / count
        return ClosedWindow(
            key=window["key"],
            window_start=datetime.fromtimestamp(window["start"], UTC),
            window_end=datetime.fromtimestamp(window["start"] + self.size_s, UTC),
            count=count,
            mean_score=max(-1.0, min(1.0, mean)),
            neg_share=sum(negative for _, negative in scores) / count,
            evidence=tuple(
                Evidence(id=post_id, title=title, url=url, score=score)
                for score, post_id, title, url in window["evidence"]
            ),
            model_version=",".join(window["versions"]),
        )
