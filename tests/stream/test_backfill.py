"""The backfill's pure parts: paths, dates, event-time order, and the run with its snapshots."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from finsentry.config import Settings, load_settings
from finsentry.schema import Post, ScoredPost
from ingest.replay import MappingOptions
from ingest.tickers import default_extractor
from stream.backfill import BackfillRun, BatchOutput, EventOrderedSeen
from stream.backfill_input import (
    BackfillError,
    EventOrder,
    Ordered,
    TimeRange,
    expand_paths,
    parse_bound,
    plan_inputs,
)
from stream.dedup import Deduplicator
from stream.spikes import SignalEngine

pytestmark = pytest.mark.unit

T0 = datetime(2024, 5, 1, tzinfo=UTC)
BAD_WORDS = ("plunge", "fraud", "loss", "crash")


class KeywordScorer:
    """Deterministic stand-in for the model: negative when a bad word appears."""

    version = "keywords-v1"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def classify(self, texts: Sequence[str]) -> list[Mapping[str, Any]]:
        self.calls.append(len(texts))
        return [self._verdict(text) for text in texts]

    def _verdict(self, text: str) -> dict[str, Any]:
        bad = any(word in text.lower() for word in BAD_WORDS)
        probs = (
            {"negative": 0.8, "neutral": 0.15, "positive": 0.05}
            if bad
            else {"negative": 0.1, "neutral": 0.6, "positive": 0.3}
        )
        return {
            "sentiment": "negative" if bad else "neutral",
            "sentiment_probs": probs,
            "score": probs["positive"] - probs["negative"],
            "topic": "Company | Product News",
            "topic_probs": {"Company | Product News": 0.9},
            "model_version": self.version,
        }


def backfill_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "window_size_s": 3600,
        "allowed_lateness_s": 600,
        "spike_min_history": 2,
    }
    return load_settings(**(values | overrides))


def story(n_hours: int = 12) -> list[Post]:
    """Calm hours, a burst of bad news at hour 8, a few repeats and syndicated copies."""
    posts: list[Post] = []
    for hour in range(n_hours):
        for k in range(5):
            bad = hour == 8
            title = (
                f"ACME {'shares plunge on fraud probe' if bad else 'opens a new office'} {hour}.{k}"
            )
            posts.append(
                Post(
                    id=f"p{hour}-{k}",
                    source="replay:test",
                    kind="news",
                    published_at=T0 + timedelta(hours=hour, minutes=7 * k),
                    received_at=T0,
                    title=title,
                    tickers=("ACME",),
                )
            )
    resent = [posts[3], posts[20]]
    syndicated = [
        posts[41].model_copy(update={"id": "copy-41", "title": posts[41].title.upper() + "!"})
    ]
    ordered = sorted([*posts, *resent, *syndicated], key=lambda p: p.published_at)
    return ordered


def run_all(settings: Settings, posts: list[Post], **kwargs: Any) -> list[BatchOutput]:
    run = BackfillRun(settings, KeywordScorer(), files=1, **kwargs)
    return list(run.run(iter(Ordered(0, p) for p in posts)))


def outputs_of(batches: list[BatchOutput]) -> tuple[list[Any], list[Any], list[Any]]:
    posts = [p.model_dump() for b in batches for p in b.posts]
    points = [p.model_dump() for b in batches for p in b.points]
    alerts = [a.model_dump() for b in batches for a in b.alerts]
    return posts, points, alerts


def test_bounds_accept_dates_and_iso_times() -> None:
    assert parse_bound("2020-01-31", "--from") == datetime(2020, 1, 31, tzinfo=UTC)
    assert parse_bound("2020-01-31", "--to", end=True) == datetime(2020, 2, 1, tzinfo=UTC)
    assert parse_bound("2020-01-31T12:00:00Z", "--to", end=True) == datetime(
        2020, 1, 31, 12, tzinfo=UTC
    )
    assert parse_bound("2020-01-31T12:00:00+02:00", "--from") == datetime(
        2020, 1, 31, 10, tzinfo=UTC
    )
    assert parse_bound("2020-01-31 12:00", "--from") == datetime(2020, 1, 31, 12, tzinfo=UTC)


@pytest.mark.parametrize("text", ["2020-13-01", "yesterday", "31/01/2020", ""])
def test_bad_bounds_name_the_option_and_the_value(text: str) -> None:
    with pytest.raises(BackfillError, match=f"--from '{text}': not a date"):
        parse_bound(text, "--from")


def test_range_must_be_ordered_and_excludes_its_end() -> None:
    with pytest.raises(BackfillError, match="is not before"):
        TimeRange.parse("2020-02-01", "2020-01-31")
    january = TimeRange.parse("2020-01-01", "2020-01-31")
    assert january.contains(datetime(2020, 1, 31, 23, 59, tzinfo=UTC))
    assert not january.contains(datetime(2020, 2, 1, tzinfo=UTC))
    assert not january.contains(datetime(2019, 12, 31, 23, 59, tzinfo=UTC))
    assert TimeRange().contains(datetime(1990, 1, 1, tzinfo=UTC))


def test_paths_expand_directories_and_refuse_what_cannot_be_read(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    for name in ("b.csv", "a.jsonl", "sub/c.parquet", "SOURCE.md"):
        (data / name).write_text("x")
    files, skipped = expand_paths([data, data / "a.jsonl"])
    assert [f.name for f in files] == ["a.jsonl", "b.csv", "c.parquet"]
    assert [s.name for s in skipped] == ["SOURCE.md"]
    with pytest.raises(BackfillError, match=r"missing\.csv: no such file or directory"):
        expand_paths([tmp_path / "missing.csv"])
    with pytest.raises(BackfillError, match="unknown format 'md'"):
        expand_paths([data / "SOURCE.md"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(BackfillError, match=r"no \.csv, \.jsonl or \.parquet files"):
        expand_paths([tmp_path / "empty"])
    with pytest.raises(BackfillError, match="no input"):
        expand_paths([])


def test_plan_reports_every_unreadable_file_at_once(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("foo,bar\n1,2\n")
    (tmp_path / "b.csv").write_text("Headlines,Time\nx,19 July 2020\n")
    (tmp_path / "c.csv").write_text("baz\n1\n")
    with pytest.raises(BackfillError) as caught:
        plan_inputs(sorted(tmp_path.glob("*.csv")), MappingOptions())
    assert "a.csv" in str(caught.value) and "c.csv" in str(caught.value)
    assert "b.csv" not in str(caught.value)
    with pytest.raises(BackfillError, match="unknown preset 'nope'"):
        plan_inputs([tmp_path / "b.csv"], MappingOptions(preset="nope"))


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def two_files(tmp_path: Path) -> list[Path]:
    first = write_jsonl(
        tmp_path / "first.jsonl",
        [
            {"title": "late story", "published_at": "2020-01-01T03:00:00Z"},
            {"title": "tie in first", "published_at": "2020-01-01T01:00:00Z"},
            {"title": "no time here"},
            {"title": "early story", "published_at": "2020-01-01T00:00:00Z"},
            {"title": "outside the range", "published_at": "2019-06-01T00:00:00Z"},
        ],
    )
    second = write_jsonl(
        tmp_path / "second.jsonl",
        [
            {"title": "tie in second", "published_at": "2020-01-01T01:00:00Z"},
            {"title": "middle story", "published_at": "2020-01-01T02:00:00Z"},
            {"title": "earliest", "published_at": "2019-12-31T23:00:00Z"},
        ],
    )
    return [first, second]


@pytest.mark.parametrize("run_size", [1, 2, 1000], ids=["spill-1", "spill-2", "in-memory"])
def test_event_order_merges_files_by_time_then_file_then_row(tmp_path: Path, run_size: int) -> None:
    inputs = plan_inputs(two_files(tmp_path), MappingOptions())
    rejected: list[tuple[str, int, str]] = []
    with EventOrder(
        inputs,
        TimeRange.parse("2019-12-01", None),
        received_at=T0,
        extractor=default_extractor(),
        run_size=run_size,
        on_reject=lambda item, r: rejected.append((item.path.name, r.number, r.reason)),
    ) as order:
        order.read()
        titles = [(item.file_index, item.post.title) for item in order]
    assert titles == [
        (1, "earliest"),
        (0, "early story"),
        (0, "tie in first"),
        (1, "tie in second"),
        (1, "middle story"),
        (0, "late story"),
    ]
    assert order.total == 6
    assert [(r.rows, r.posts, r.out_of_range, r.rejected) for r in order.reports] == [
        (5, 3, 1, 1),
        (3, 3, 0, 0),
    ]
    [(name, number, reason)] = rejected
    assert (name, number) == ("first.jsonl", 3) and "no time" in reason
    assert order.spilled_runs == (0 if run_size == 1000 else -(-6 // run_size))


def test_seen_state_keeps_event_order_and_forgets_a_prefix() -> None:
    seen = EventOrderedSeen()
    seen["a"], seen["b"], seen["c"] = [1.0, None], [2.0, None], [3.0, None]
    seen["a"] = [4.0, None]  # seen again later: moves to the end
    assert list(seen) == ["b", "c", "a"]
    seen.forget_before(3.0)
    assert dict(seen) == {"c": [3.0, None], "a": [4.0, None]}


def reference(settings: Settings, posts: list[Post]) -> tuple[list[Any], list[Any], list[Any]]:
    """The stream's pieces fed one post at a time, in order, then flushed."""
    dedup = Deduplicator({}, settings.dedup_horizon_s)
    engine = SignalEngine.from_settings(settings)
    scorer = KeywordScorer()
    scored, points, alerts = [], [], []
    for post in posts:
        if dedup.check(post).is_duplicate:
            continue
        (verdict,) = scorer.classify([post.text])
        item = ScoredPost.from_post(post, **verdict)
        scored.append(item.model_dump())
        output = engine.add_post(item)
        points += [p.model_dump() for p in output.points]
        alerts += [a.model_dump() for a in output.alerts]
    output = engine.flush()
    points += [p.model_dump() for p in output.points]
    alerts += [a.model_dump() for a in output.alerts]
    return scored, points, alerts


@pytest.mark.parametrize("batch_size", [1, 7, 500])
def test_run_equals_the_stream_pieces_one_post_at_a_time(batch_size: int) -> None:
    settings = backfill_settings()
    posts = story()
    batches = run_all(settings, posts, batch_size=batch_size)
    assert outputs_of(batches) == reference(settings, posts)
    _, points, alerts = outputs_of(batches)
    assert sorted(a["key"] for a in alerts) == [
        "market",
        "source:replay",
        "ticker:ACME",
        "topic:Company | Product News",
    ]
    assert {a["window_start"] for a in alerts} == {T0 + timedelta(hours=8)}
    assert batches[-1].final and sum(b.consumed for b in batches) == len(posts)
    assert len(points) == 12 * 4


def test_run_counts_duplicates_and_windows() -> None:
    run = BackfillRun(backfill_settings(), KeywordScorer(), files=1, batch_size=10)
    list(run.run(iter(Ordered(0, p) for p in story())))
    c = run.counters
    assert (c.read, c.duplicates_id, c.duplicates_fingerprint, c.scored) == (63, 2, 1, 60)
    assert (c.windows, c.alerts, c.late) == (48, 4, 0)


def test_resuming_from_any_snapshot_ends_like_the_uninterrupted_run() -> None:
    settings = backfill_settings()
    posts = story()
    whole = run_all(settings, posts, batch_size=6, checkpoint_every_s=0)
    snapshots = [(n, b.state) for n, b in enumerate(whole) if b.state is not None]
    assert len(snapshots) == len(whole) - 1  # every batch but the flush
    for n, state in snapshots:
        assert state is not None
        resumed = run_all(settings, posts, batch_size=6, snapshot=json.loads(json.dumps(state)))
        assert outputs_of(resumed) == outputs_of(whole[n + 1 :])


def test_snapshot_is_taken_for_its_own_batch_though_the_next_is_already_read() -> None:
    settings = backfill_settings()
    posts = story()
    whole = run_all(settings, posts, batch_size=6, checkpoint_every_s=0)
    consumed = 0
    for batch in whole[:-1]:
        consumed += batch.consumed
        assert batch.state is not None
        assert batch.state["position"] == consumed == batch.state["counters"]["read"]
        assert batch.state["counters"]["scored"] == sum(len(b.posts) for b in whole) - sum(
            len(b.posts) for b in whole[whole.index(batch) + 1 :]
        )


def test_stop_ends_after_the_batch_in_progress_with_a_snapshot() -> None:
    import threading

    stop = threading.Event()
    run = BackfillRun(backfill_settings(), KeywordScorer(), files=1, batch_size=5)
    outputs = []
    for output in run.run(iter(Ordered(0, p) for p in story()), stop):
        outputs.append(output)
        stop.set()
    assert not outputs[-1].final and outputs[-1].state is not None
    assert outputs[-1].state["position"] == sum(o.consumed for o in outputs)


def test_a_failing_batch_is_scored_one_by_one_and_culprits_reported() -> None:
    class Picky(KeywordScorer):
        def classify(self, texts: Sequence[str]) -> list[Mapping[str, Any]]:
            if any("office 3.1" in t for t in texts):
                raise ValueError("cannot score that")
            return super().classify(texts)

    failed: list[str] = []
    run = BackfillRun(
        backfill_settings(),
        Picky(),
        files=1,
        batch_size=8,
        on_unscorable=lambda post, exc: failed.append(post.id),
    )
    outputs = list(run.run(iter(Ordered(0, p) for p in story())))
    assert failed == ["p3-1"]
    assert run.counters.unscorable == 1 and run.counters.scored == 59
    assert "p3-1" not in {p.id for o in outputs for p in o.posts}
