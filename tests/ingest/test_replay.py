"""Replay's pure parts (readers, presets, mapping, pacing) and checkpointing over a memory sink."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from finsentry.store import Store
from ingest.replay import (
    PRESETS,
    ColumnMapping,
    Pacer,
    ReplayError,
    detect_mapping,
    read_header,
    read_rows,
    with_overrides,
)
from ingest.replay_run import replay_file
from ingest.sink import MemorySink, PublishError
from ingest.tickers import default_extractor

pytestmark = pytest.mark.unit
DATA = Path(__file__).resolve().parents[2] / "data"
CNBC = DATA / "fin_news_headlines" / "cnbc_headlines.csv"
GUARDIAN = DATA / "fin_news_headlines" / "guardian_headlines.csv"
BENZINGA = DATA / "benzinga_headlines_sample" / "analyst_ratings_processed_head.csv"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'store.db'}")


def _replay(path: Path, store: Store, sink: MemorySink, **kwargs: object):  # type: ignore[no-untyped-def]
    mapping = kwargs.pop("mapping", None) or detect_mapping(read_header(path))
    return replay_file(
        path,
        mapping,
        sink=sink,
        store=store,
        extractor=default_extractor(),  # type: ignore[arg-type]
        pacer=kwargs.pop("pacer", Pacer()),
        batch_size=kwargs.pop("batch_size", 200),  # type: ignore[arg-type]
        progress=False,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("path", "preset"), [(CNBC, "cnbc"), (GUARDIAN, "guardian"), (BENZINGA, "benzinga")]
)
def test_bundled_files_are_detected(path: Path, preset: str) -> None:
    assert detect_mapping(read_header(path)).name == preset


def test_unknown_header_without_a_time_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("headline,when\nhi,2020\n", encoding="utf-8")
    with pytest.raises(ReplayError, match="--map"):
        detect_mapping(read_header(path))
    mapping = with_overrides(PRESETS["generic"], {"title": "headline", "published_at": "when"})
    fitted = mapping.fit_header(read_header(path), path)
    assert fitted.columns == {"title": "headline", "published_at": "when"}
    with pytest.raises(ReplayError, match="needs a time column"):
        PRESETS["generic"].fit_header(["title", "body"], path)
    with pytest.raises(ReplayError, match="unknown field"):
        with_overrides(PRESETS["generic"], {"headline": "x"})


@pytest.mark.parametrize(
    ("path", "published", "rejected", "first"),
    [
        (CNBC, 2800, 280, datetime(2020, 7, 17, 23, 51, tzinfo=UTC)),
        (GUARDIAN, 17760, 40, datetime(2020, 7, 19, tzinfo=UTC)),
        (BENZINGA, 9989, 4, datetime(2020, 6, 5, 14, 30, tzinfo=UTC)),
    ],
)
def test_bundled_files_replay_every_row_or_report_it(
    path: Path, published: int, rejected: int, first: datetime, store: Store
) -> None:
    sink = MemorySink()
    result = _replay(path, store, sink, batch_size=1000)
    assert result.completed
    assert len(sink.posts) == result.published == published
    assert len(result.rejections) == rejected
    rows = sum(1 for _ in read_rows(path))
    assert result.published + len(result.rejections) == rows  # nothing silently dropped
    assert sink.posts[0].published_at == first
    assert not any(p.published_at_estimated for p in sink.posts)
    assert all(p.source.startswith("replay:") for p in sink.posts)


def test_benzinga_rows_carry_their_stock_and_report_broken_records(store: Store) -> None:
    sink = MemorySink()
    result = _replay(BENZINGA, store, sink)
    assert sink.posts[0].tickers[0] == "A"
    assert {r.reason for r in result.rejections} == {
        "2 fields, header has 4",
        "3 fields, header has 4",
    }
    assert all(r.where.startswith("line ") and r.number > 0 for r in result.rejections)


def test_guardian_month_only_rows_are_rejected_with_row_numbers(store: Store) -> None:
    result = _replay(GUARDIAN, store, MemorySink())
    assert {r.number for r in result.rejections} >= {9901, 9902}
    assert all("not a date" in r.reason for r in result.rejections)


def test_jsonl_and_parquet_read_the_same_rows(tmp_path: Path, store: Store) -> None:
    records = [
        {
            "id": "a",
            "title": "Apple beats",
            "body": None,
            "published_at": "2020-01-02T03:04:05Z",
            "tickers": "AAPL",
        },
        {
            "id": "b",
            "title": None,
            "body": "$TSLA slides",
            "published_at": "2020-01-02T04:00:00+01:00",
            "tickers": None,
        },
    ]
    jsonl = tmp_path / "posts.jsonl"
    jsonl.write_text(
        "\n".join(json.dumps(r) for r in records) + "\nnot json\n[1,2]\n", encoding="utf-8"
    )
    parquet = tmp_path / "posts.parquet"
    pq.write_table(pa.Table.from_pylist(records), parquet)
    by_format = {}
    for path in (jsonl, parquet):
        sink = MemorySink()
        result = _replay(path, store, sink)
        by_format[path.suffix] = (sink.posts, result.rejections)
    jsonl_posts, jsonl_rejects = by_format[".jsonl"]
    parquet_posts, parquet_rejects = by_format[".parquet"]
    assert [(p.title, p.body, p.published_at, p.tickers) for p in jsonl_posts] == [
        (p.title, p.body, p.published_at, p.tickers) for p in parquet_posts
    ]
    assert jsonl_posts[1].published_at == datetime(2020, 1, 2, 3, 0, tzinfo=UTC)
    assert [p.id for p in jsonl_posts] == ["replay:posts:a", "replay:posts:b"]
    assert [(r.number, r.where) for r in jsonl_rejects] == [(3, "line 3"), (4, "line 4")]
    assert parquet_rejects == []


def test_checkpoint_resumes_after_an_outage_without_resending(tmp_path: Path, store: Store) -> None:
    path = tmp_path / "posts.csv"
    lines = ["title,published_at"] + [
        f"story {i},2020-01-01T00:{i // 60:02d}:{i % 60:02d}Z" for i in range(250)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    sink = MemorySink()

    class FailingAfter(MemorySink):
        def publish(self, posts, *, timeout_s=None, stop=None):  # type: ignore[no-untyped-def]
            if len(sink.posts) >= 100:
                raise PublishError("down", posts)
            sink.posts.extend(posts)
            return []

    with pytest.raises(PublishError):
        _replay(path, store, FailingAfter(), batch_size=50)
    assert len(sink.posts) == 100
    result = _replay(path, store, sink, batch_size=50)
    assert result.resumed_from == 100 and result.completed
    titles = [p.title for p in sink.posts]
    assert titles == [f"story {i}" for i in range(250)]  # nothing lost, nothing twice
    again = _replay(path, store, sink)
    assert again.published == 0 and len(sink.posts) == 250
    restarted = _replay(path, store, sink, restart=True)
    assert restarted.published == 250


def test_changed_file_invalidates_the_checkpoint(tmp_path: Path, store: Store) -> None:
    path = tmp_path / "posts.csv"
    path.write_text("title,published_at\na,2020-01-01T00:00:00Z\n", encoding="utf-8")
    _replay(path, store, MemorySink())
    path.write_text(
        "title,published_at\na,2020-01-01T00:00:00Z\nb,2020-01-01T00:00:01Z\n", encoding="utf-8"
    )
    sink = MemorySink()
    assert _replay(path, store, sink).published == 2


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_pacer_speed_rate_and_asap() -> None:
    clock = FakeClock()
    t0 = datetime(2020, 1, 1, tzinfo=UTC)
    speed = Pacer(speed=60, clock=clock)
    assert speed.due(t0) == 100.0
    assert speed.due(t0.replace(minute=2)) == pytest.approx(102.0)  # 2 min at 60x
    assert speed.due(t0.replace(minute=1)) == pytest.approx(102.0)  # out of order: not earlier
    rate = Pacer(rate=4, clock=clock)
    assert [rate.due(t0) for _ in range(3)] == [100.0, 100.25, 100.5]
    clock.now = 500.0
    assert Pacer(clock=clock).due(t0) == 500.0
    with pytest.raises(ReplayError):
        Pacer(speed=2, rate=3)


def test_sorted_replay_is_in_event_time_order(store: Store) -> None:
    sink = MemorySink()
    _replay(BENZINGA, store, sink, sort=True)
    times = [p.published_at for p in sink.posts]
    assert times == sorted(times) and len(times) == 9989


def test_mapping_custom_source_and_kind(tmp_path: Path, store: Store) -> None:
    path = tmp_path / "t.csv"
    path.write_text("text,ts\n$GME to the moon,2021-01-27 10:00\n", encoding="utf-8")
    mapping = ColumnMapping(
        "custom", {"body": "text", "published_at": "ts"}, source="replay:wsb", kind="social"
    )
    sink = MemorySink()
    _replay(path, store, sink, mapping=mapping)
    assert sink.posts[0].source == "replay:wsb" and sink.posts[0].kind == "social"
    assert sink.posts[0].tickers == ("GME",)
