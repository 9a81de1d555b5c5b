"""How fast the dashboard answers on a big store: every callback's query path, timed.

Builds (once, cached under var/bench/) a SQLite store with 1,000,000 synthetic but realistic
scored posts over 30 days (Zipf-distributed tickers, several sources, 20 topics, injected
negative bursts) and the signal points and alerts the stream would have written for them.
Then runs each callback's plain function many times and prints median and p95 beside a
naive baseline measured in the same run (pandas reading the posts table and aggregating in
memory, which is what a dashboard without pre-aggregated signal points would do) and, for
the overview, beside its queries over the windows alone (what it read before the hourly
and daily rollups). The rollups are derived from the windows when the store is opened.

    PYTHONPATH=$PWD python -m bench.dashboard [--posts 1000000] [--reps 15] [--rebuild]

(Run it as a module from the repository root: as a file, bench/ would shadow the
``dashboard`` package.)
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Select, func, select
from tqdm import tqdm

from dashboard import callbacks
from dashboard.queries import HEATMAP_COLUMNS, SERIES_POINTS, DashboardQueries, PostFilter
from finsentry.config import load_settings
from finsentry.schema import TOPICS, alert_id
from finsentry.store import (
    Store,
    alerts,
    model_versions,
    post_tickers,
    posts,
    signal_points,
    sql_epoch_seconds,
)

END = datetime(2026, 1, 31, tzinfo=UTC)
DAYS = 30
WINDOW_S = 300
CHUNK = 20_000
SOURCES = {
    "rss:reuters": 0.22,
    "rss:bloomberg": 0.18,
    "rss:wsj": 0.10,
    "webhook": 0.05,
    "reddit:wallstreetbets": 0.25,
    "reddit:stocks": 0.12,
    "reddit:investing": 0.08,
}
VERBS = ("beats", "misses", "holds", "cuts", "raises", "slides on", "jumps on", "weighs")
NOUNS = (
    "guidance",
    "earnings",
    "outlook",
    "dividend",
    "buyback",
    "margins",
    "deliveries",
    "probe",
    "downgrade",
    "upgrade",
)
MODEL = "minilm-ft-2026-01-01"


def _now() -> datetime:
    return datetime.now(UTC)


def generate(n: int, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Posts and their (post, ticker) pairs, as columns."""
    rng = np.random.default_rng(seed)
    start = END - timedelta(days=DAYS)
    seconds = np.sort(rng.integers(0, DAYS * 86_400, n))
    published = pd.to_datetime(start) + pd.to_timedelta(seconds, unit="s")
    names = [f"T{i:02d}" for i in range(80)]
    weights = 1 / np.arange(1, 81) ** 1.1
    per_post = rng.choice([0, 1, 2, 3], size=n, p=[0.3, 0.5, 0.15, 0.05])
    owner = np.repeat(np.arange(n), per_post)
    tick = rng.choice(80, size=len(owner), p=weights / weights.sum())
    pairs = pd.DataFrame({"row": owner, "ticker": np.array(names)[tick]}).drop_duplicates()
    source = rng.choice(list(SOURCES), size=n, p=list(SOURCES.values()))
    topic = rng.choice(len(TOPICS), size=n)
    logits = rng.normal(0, 1, (n, 3)) + np.array([-0.2, 0.4, 0.1])
    # Negative bursts: 40 (ticker, window) events where that ticker's posts turn sour.
    windows = seconds // WINDOW_S
    burst_t = rng.choice(names[:20], 40)
    burst_w = rng.choice(np.unique(windows), 40)
    sour = pairs.merge(pd.DataFrame({"ticker": burst_t, "w": burst_w}), on="ticker")
    sour = sour[windows[sour["row"].to_numpy()] == sour["w"].to_numpy()]["row"].unique()
    logits[sour, 0] += 4.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    probs = np.round(probs, 4)
    probs[:, 1] = np.round(1 - probs[:, 0] - probs[:, 2], 4)
    frame = pd.DataFrame(
        {
            "id": [f"bench:{i}" for i in range(n)],
            "published_at": published,
            "source": source,
            "topic": np.array(TOPICS)[topic],
            "neg": probs[:, 0],
            "neu": probs[:, 1],
            "pos": probs[:, 2],
            "verb": rng.integers(0, len(VERBS), n),
            "noun": rng.integers(0, len(NOUNS), n),
        }
    )
    frame["score"] = (frame["pos"] - frame["neg"]).round(4)
    frame["sentiment"] = np.array(["negative", "neutral", "positive"])[probs.argmax(axis=1)]
    frame["window"] = frame["published_at"].dt.floor(f"{WINDOW_S}s")
    pairs["id"] = frame["id"].to_numpy()[pairs["row"].to_numpy()]
    pairs["published_at"] = published[pairs["row"].to_numpy()]
    return frame, pairs


def _post_rows(frame: pd.DataFrame, pairs: pd.DataFrame, now: datetime) -> list[dict[str, Any]]:
    tickers = pairs.groupby("row")["ticker"].agg(list)
    rows = []
    for i, r in enumerate(frame.itertuples(index=False)):
        first = tickers.get(i, ["MKT"])[0]
        when = r.published_at.to_pydatetime()
        rows.append(
            {
                "id": r.id,
                "source": r.source,
                "kind": "social" if r.source.startswith("reddit") else "news",
                "published_at": when,
                "received_at": when,
                "published_at_estimated": False,
                "title": f"{first} {VERBS[r.verb]} {NOUNS[r.noun]} (#{i})",
                "body": "",
                "url": f"https://news.example.com/{i}",
                "author": None,
                "lang": "en",
                "tickers": tickers.get(i, []),
                "sentiment": r.sentiment,
                "sentiment_probs": {"negative": r.neg, "neutral": r.neu, "positive": r.pos},
                "score": r.score,
                "topic": r.topic,
                "topic_probs": {r.topic: 0.9},
                "model_version": MODEL,
                "is_backfill": True,
                "stored_at": now,
            }
        )
    return rows


def signal_frame(frame: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """What the aggregator would emit: per key and window, count, mean, neg share, z."""
    frame = frame.assign(is_neg=frame["sentiment"] == "negative")
    keyed = [
        frame.assign(key="market"),
        frame.assign(key="topic:" + frame["topic"]),
        frame.assign(key="source:" + frame["source"].str.split(":").str[0]),
        frame.iloc[pairs["row"].to_numpy()].assign(key=("ticker:" + pairs["ticker"]).to_numpy()),
    ]
    long = pd.concat([k[["key", "window", "score", "is_neg"]] for k in keyed])
    points = long.groupby(["key", "window"], as_index=False).agg(
        count=("score", "size"), mean_score=("score", "mean"), neg_share=("is_neg", "mean")
    )
    by_key = points.groupby("key")["neg_share"]
    points["baseline"] = by_key.transform(lambda s: s.ewm(alpha=0.3).mean().shift(1))
    spread = by_key.transform(lambda s: s.ewm(alpha=0.3).std().shift(1)).clip(lower=0.05)
    points["z"] = ((points["neg_share"] - points["baseline"]) / spread).fillna(0.0)
    points["is_spike"] = (points["z"] > 3.0) & (points["count"] >= 5)
    points["baseline"] = points["baseline"].fillna(points["neg_share"])
    return points


def build(path: Path, n: int) -> None:
    store = Store(f"sqlite:///{path}")
    frame, pairs = generate(n)
    now = _now()
    with store.begin() as conn:
        for lo in tqdm(range(0, n, CHUNK), desc="posts", unit_scale=CHUNK):
            part = frame.iloc[lo : lo + CHUNK]
            sub = pairs[(pairs["row"] >= lo) & (pairs["row"] < lo + CHUNK)]
            sub = sub.assign(row=sub["row"] - lo)
            conn.execute(posts.insert(), _post_rows(part.reset_index(drop=True), sub, now))
        ticker_rows = [
            {"post_id": i, "ticker": t, "published_at": p.to_pydatetime()}
            for i, t, p in zip(pairs["id"], pairs["ticker"], pairs["published_at"], strict=True)
        ]
        for lo in tqdm(range(0, len(ticker_rows), CHUNK), desc="post_tickers"):
            conn.execute(post_tickers.insert(), ticker_rows[lo : lo + CHUNK])
    points = signal_frame(frame, pairs)
    rows = [
        {
            "key": r.key,
            "window_start": r.window.to_pydatetime(),
            "window_end": (r.window + pd.Timedelta(seconds=WINDOW_S)).to_pydatetime(),
            "count": int(r.count),
            "mean_score": float(r.mean_score),
            "neg_share": float(r.neg_share),
            "baseline": float(r.baseline),
            "z": float(r.z),
            "is_spike": bool(r.is_spike),
            "updated_at": now,
        }
        for r in points.itertuples(index=False)
    ]
    with store.begin() as conn:
        for lo in tqdm(range(0, len(rows), CHUNK), desc="signal_points"):
            conn.execute(signal_points.insert(), rows[lo : lo + CHUNK])
        spikes = [r for r in rows if r["is_spike"]]
        conn.execute(
            alerts.insert(),
            [
                {
                    "id": alert_id(r["key"], r["window_start"]),
                    "key": r["key"],
                    "window_start": r["window_start"],
                    "window_end": r["window_end"],
                    "severity": "critical" if r["z"] > 5 else "warning",
                    "z": r["z"],
                    "neg_share": r["neg_share"],
                    "mean_score": r["mean_score"],
                    "count": r["count"],
                    "baseline": r["baseline"],
                    "model_version": MODEL,
                    "is_backfill": True,
                    "created_at": now,
                    "evidence": [
                        {"id": "bench:0", "title": "evidence", "url": None, "score": -0.9}
                    ],
                }
                for r in spikes
            ],
        )
        conn.execute(
            model_versions.insert(),
            [
                {
                    "version": f"minilm-ft-2026-01-0{i}",
                    "path": f"models/{i}",
                    "created_at": END,
                    "metrics": {
                        "sentiment": {"macro_f1": 0.8 + i / 100},
                        "topic": {"accuracy": 0.9},
                    },
                    "data_fingerprint": f"{i}" * 40,
                    "training_config": {},
                    "is_current": i == 3,
                }
                for i in range(1, 4)
            ],
        )
    print(
        f"built {path}: {n:,} posts, {len(pairs):,} post-ticker rows, {len(rows):,} signal "
        f"points, {len(spikes):,} alerts"
    )
    store.close()


def timed(fn: Callable[[], Any], reps: int) -> tuple[float, float]:
    """Median and p95 of ``reps`` runs, in milliseconds (one warm-up run first)."""
    fn()
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(0.95 * len(samples)))]


def naive_overview(store: Store, start: datetime, end: datetime) -> pd.DataFrame:
    """Without signal points: read the range's posts and aggregate in pandas."""
    query = select(posts.c.published_at, posts.c.score, posts.c.sentiment, posts.c.tickers).where(
        posts.c.published_at >= start, posts.c.published_at < end
    )
    with store.engine.connect() as conn:
        frame = pd.read_sql(query, conn)
    frame["window"] = pd.to_datetime(frame["published_at"], utc=True).dt.floor(f"{WINDOW_S}s")
    frame["neg"] = frame["sentiment"] == "negative"
    market = frame.groupby("window").agg(count=("score", "size"), mean=("score", "mean"))
    heat = frame.explode("tickers").groupby(["tickers", "window"])["neg"].mean()
    return market.join(heat.groupby(level=1).mean().rename("neg"))


def windows_overview(
    q: DashboardQueries, start: datetime, end: datetime, top: int
) -> tuple[list[Any], list[Any], list[Any]]:
    """The overview's queries without rollups (the previous read path): the ticker ranking
    sums every window in the range, then the market line and the chosen tickers' heatmap
    cells are merged from their windows into the same bucket widths."""
    sp = signal_points
    epoch = sql_epoch_seconds(sp.c.window_start, q.store.dialect)
    total = func.sum(sp.c.count).label("total")
    ranking = (
        select(sp.c.key, total)
        .where(
            func.substr(sp.c.key, 1, len("ticker:")) == "ticker:",
            sp.c.window_start >= start,
            sp.c.window_start < end,
        )
        .group_by(sp.c.key)
        .order_by(total.desc(), sp.c.key)
        .limit(top)
    )

    def merged(keys: list[str], max_points: int) -> Select[Any]:
        width = q.bucket_seconds(start, end, max_points) or WINDOW_S
        bucket = epoch // width * width
        weight = func.nullif(func.sum(sp.c.count), 0)
        return (
            select(
                sp.c.key,
                bucket,
                func.sum(sp.c.count),
                func.sum(sp.c.mean_score * sp.c.count) / weight,
                func.sum(sp.c.neg_share * sp.c.count) / weight,
            )
            .where(sp.c.key.in_(keys), sp.c.window_start >= start, sp.c.window_start < end)
            .group_by(sp.c.key, bucket)
        )

    with q.store.engine.connect() as conn:
        keys = [row.key for row in conn.execute(ranking)]
        market = conn.execute(merged(["market"], SERIES_POINTS)).all()
        cells = conn.execute(merged(keys, HEATMAP_COLUMNS)).all()
    return keys, list(market), list(cells)


def naive_posts(store: Store, ticker: str) -> pd.DataFrame:
    """Without indexed, paged SQL: read the whole posts table, filter and page in pandas."""
    with store.engine.connect() as conn:
        frame = pd.read_sql_table("posts", conn)
    mine = frame[frame["tickers"].map(lambda t: ticker in t)]
    return mine.sort_values("published_at", ascending=False).head(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()
    path = Path("var/bench") / f"dashboard-{args.posts}.db"
    if args.rebuild or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        build(path, args.posts)
    settings = load_settings(store_url=f"sqlite:///{path}", dashboard_page_size=25)
    opened = time.perf_counter()
    store = Store(settings.database_url)  # derives the rollups here if the store has none
    print(f"store opened in {time.perf_counter() - opened:.1f} s")
    q = DashboardQueries(store)
    latest = q.latest_event_time()
    assert latest is not None, f"{path} has no signal points; rerun with --rebuild"
    day = callbacks.time_range(q, "day", None, None)
    alert = q.alerts(latest - timedelta(days=DAYS), latest, limit=1)["id"].iloc[0]
    top = q.ticker_heatmap(day.start, day.end, 1)[0][0]
    neg = PostFilter(sentiment="negative")

    def posts_of(
        key: str,
        span: str,
        filters: PostFilter | None = None,
        sort: str = "published_at",
        direction: str = "desc",
        page: int = 0,
    ) -> Callable[[], Any]:
        return lambda: callbacks.posts_view(
            q,
            key,
            span,
            None,
            None,
            filters or PostFilter(),
            sort,
            direction,
            page,
            settings.dashboard_page_size,
        )

    cases: list[tuple[str, str, Callable[[], Any]]] = [
        ("day", "overview: last day", lambda: callbacks.overview(q, "day", None, None, 10)),
        ("week", "overview: last week", lambda: callbacks.overview(q, "week", None, None, 10)),
        (
            "month",
            "overview: custom 30 days",
            lambda: callbacks.overview(q, "custom", "2026-01-01", "2026-01-30", 10),
        ),
        (
            "month",
            "overview: custom 30 days, top 30",
            lambda: callbacks.overview(q, "custom", "2026-01-01", "2026-01-30", 30),
        ),
        ("-", "range label", lambda: callbacks.range_label(q, "day", None, None)),
        (
            "-",
            f"key series + alerts: {top}, week",
            lambda: callbacks.key_view(q, settings, top, "week", None, None),
        ),
        (
            "-",
            "key series + alerts: market, custom 30 days",
            lambda: callbacks.key_view(q, settings, "market", "custom", "2026-01-01", "2026-01-30"),
        ),
        ("posts", f"posts: {top}, day, page 1", posts_of(top, "day")),
        (
            "posts",
            f"posts: {top}, week, negative, by score asc",
            posts_of(top, "week", neg, "score", "asc"),
        ),
        ("posts", "posts: market, day, page 1", posts_of("market", "day")),
        ("posts", "posts: market, day, page 400", posts_of("market", "day", page=400)),
        (
            "posts",
            "posts: market, week, title~'guidance', by score",
            posts_of("market", "week", PostFilter(title="guidance"), "score"),
        ),
        (
            "posts",
            "posts: source:reddit, day, source~'stocks'",
            posts_of("source:reddit", "day", PostFilter(source="stocks")),
        ),
        (
            "posts",
            "posts: topic:Earnings, week, by title",
            posts_of("topic:Earnings", "week", sort="title", direction="asc"),
        ),
        ("-", "alert page (deep link)", lambda: callbacks.render_page(q, f"/alert/{alert}")),
        ("-", "model page", lambda: callbacks.render_page(q, "/model")),
        (
            "-",
            "feedback save",
            lambda: callbacks.save_feedback(q, "bench:1", "sentiment", "negative", "bench"),
        ),
    ]
    print(f"store {path}: {store.count_posts():,} posts; latest window ends {latest}")
    print("naive baselines (same run) ...")
    week = callbacks.time_range(q, "week", None, None)
    month = callbacks.time_range(q, "custom", "2026-01-01", "2026-01-30")
    baselines = {
        "day": timed(lambda: naive_overview(store, day.start, day.end), 3)[0],
        "week": timed(lambda: naive_overview(store, week.start, week.end), 1)[0],
        "month": timed(lambda: naive_overview(store, month.start, month.end), 1)[0],
        "posts": timed(lambda: naive_posts(store, top.removeprefix("ticker:")), 1)[0],
    }
    spans = {"overview: last day": (day, 10), "overview: last week": (week, 10)}
    spans["overview: custom 30 days"] = (month, 10)
    spans["overview: custom 30 days, top 30"] = (month, 30)
    results = []
    for group, name, fn in tqdm(cases, desc="callbacks"):
        median, p95 = timed(fn, args.reps)
        before = None
        if name in spans:
            span, top_n = spans[name]
            before = timed(partial(windows_overview, q, span.start, span.end, top_n), args.reps)
        results.append((group, name, median, p95, before))
    width = max(len(row[1]) for row in results)
    print(
        f"\n{'callback path':<{width}}  {'median ms':>9}  {'p95 ms':>8}  {'windows ms':>15}  "
        f"{'x':>4}  {'naive ms':>9}  {'speed-up':>8}"
    )
    for group, name, median, p95, before in results:
        naive = baselines.get(group)
        old = (
            f"{before[0]:>6.1f} / {before[1]:>6.1f}  {before[0] / median:>3.1f}x"
            if before
            else f"{'':>15}  {'':>4}"
        )
        extra = f"{naive:>9.0f}  {naive / median:>7.0f}x" if naive else f"{'':>9}  {'':>8}"
        print(f"{name:<{width}}  {median:>9.1f}  {p95:>8.1f}  {old}  {extra}")
    print(
        "\nwindows = median / p95 of the overview's queries alone (no figures, no alert feed) "
        "without rollups: ranking and merging read every window in the range (the previous "
        "read path); x = its median over the callback's. naive overview = read the range's "
        "posts and aggregate them in pandas; naive posts = pandas read of the whole posts "
        f"table, filtered and paged in memory. {args.reps} runs each after one warm-up "
        "(naive: 1-3)."
    )
    store.close()


if __name__ == "__main__":
    main()
