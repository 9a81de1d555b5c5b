"""Detection benchmark: how often spike alerts are right, on real news in event time.

Calm data: the dated headlines in ``data/`` (Benzinga, CNBC, Guardian), scored by the shipped
model (bench/detection_data.py), replayed as they are. Bursts: into a ticker key on a chosen
day, extra posts drawn from real texts the model calls negative (PhraseBank, Twitter), spread
over three hours from a random time of day (so some cross midnight into the next window), at
+3, +5, +10, +20 posts and at +200% / +500% of the ticker's usual daily volume. One scenario
per size, bursts at least ``SPACING_DAYS`` apart so that none shares a baseline with another.
Everything goes through the product's pure core: ``keys_for`` and ``observe`` fan each post
out to its keys, ``WindowAggregator`` closes the windows (the demo's: daily, an hour's
lateness), and each detector configuration judges the same closed windows.

Reported per configuration:
- recall: bursts whose ticker alerted on the window the burst starts in, or on that or the
  next window;
- false alarms per key-week on the calm data (every alert there: the calm replay holds no
  injected post; real news has real events in it, so this is an upper bound);
- precision: in the burst replays, the share of alerts on a burst's keys (its ticker, topic,
  source, the market) in its window or the next;
- time to alert: from a caught burst's first post to the moment its window closes (window end
  plus the lateness), median hours;
- single: calm alerts resting on at most one negative post.

    .venv/bin/python -m bench.detection [--bursts 60] [--seed 20]

(Run as a module: as a script, bench/ would shadow the stream package with bench/stream.py.)
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.detection_data import ScoreCache, calm_posts, negative_pool, scored_posts
from bench.detection_legacy import LegacyDetector, LegacyRules
from finsentry.config import REPO_ROOT, load_settings
from finsentry.schema import Post, ScoredPost
from stream.spikes import SpikeDetector, SpikeRules
from stream.windows import ClosedWindow, Observation, WindowAggregator, keys_for, observe

SIZE_S = 86_400
LATENESS_S = 3_600
WEEK_S = 7 * 86_400
SPACING_DAYS = 20
BURST_SPREAD_S = 3 * 3_600
RESULTS = REPO_ROOT / "bench" / "results"

Item = tuple[list[str], Observation]
Judge = Callable[[ClosedWindow], bool]


@dataclass(frozen=True)
class Burst:
    ticker: str
    first_time: float
    size: int

    @property
    def window(self) -> float:
        return self.first_time // SIZE_S * SIZE_S


@dataclass(frozen=True)
class Scenario:
    name: str
    bursts: tuple[Burst, ...]
    windows: tuple[ClosedWindow, ...]


@dataclass
class Row:
    name: str
    calm_alerts: int = 0
    single: int = 0
    fa_per_key_week: float = 0.0
    recall_same: dict[str, float] = field(default_factory=dict)
    recall_next: dict[str, float] = field(default_factory=dict)
    precision: float = 0.0
    hours_to_alert: float | None = None


def close_windows(items: Sequence[Item]) -> tuple[ClosedWindow, ...]:
    aggregator = WindowAggregator(SIZE_S, LATENESS_S)
    closed: list[ClosedWindow] = []
    for keys, obs in items:
        closed += aggregator.add(keys, obs).closed
    return tuple(closed + aggregator.flush())


def plan_bursts(
    calm: Sequence[ScoredPost], size_of: Callable[[float], int], count: int, rng: random.Random
) -> list[Burst]:
    """``count`` bursts into tickers with at least 100 posts, inside each ticker's span."""
    days: dict[str, list[float]] = defaultdict(list)
    for post in calm:
        for ticker in post.tickers:
            days[ticker].append(post.published_at.timestamp())
    tickers = sorted(t for t, times in days.items() if len(times) >= 100)
    taken: list[float] = []
    bursts: list[Burst] = []
    for _ in range(100 * count):
        if len(bursts) == count:
            break
        ticker = rng.choice(tickers)
        times = days[ticker]
        at = rng.uniform(min(times) + 30 * 86_400, max(times))
        if any(abs(at - other) < SPACING_DAYS * 86_400 for other in taken):
            continue
        recent = [t for t in times if at - 30 * 86_400 <= t < at]
        active_days = len({t // SIZE_S for t in recent}) or 1
        bursts.append(Burst(ticker, at, size_of(len(recent) / active_days)))
        taken.append(at)
    return sorted(bursts, key=lambda b: b.first_time)


def burst_items(
    bursts: Sequence[Burst], pool: Sequence[tuple[str, dict[str, Any]]], source: str, seed: int
) -> list[tuple[float, int, Item]]:
    rng = random.Random(seed)
    items = []
    for b, burst in enumerate(bursts):
        for j, (text, verdict) in enumerate(rng.sample(list(pool), burst.size)):
            at = datetime.fromtimestamp(burst.first_time, UTC) + timedelta(
                seconds=BURST_SPREAD_S * j / max(burst.size - 1, 1)
            )
            post = Post(
                id=f"burst:{seed}:{b}:{j}",
                source=source,
                kind="news",
                published_at=at,
                received_at=at,
                title=text[:2_000],
                tickers=(burst.ticker,),
            )
            scored = ScoredPost.from_post(post, **verdict)
            items.append((at.timestamp(), 1, (keys_for(scored), observe(scored))))
    return items


def scenario(
    name: str,
    calm_items: Sequence[Item],
    bursts: Sequence[Burst],
    pool: Sequence[tuple[str, dict[str, Any]]],
    source: str,
    seed: int,
) -> Scenario:
    merged = [(obs.event_time, 0, (keys, obs)) for keys, obs in calm_items]
    merged += burst_items(bursts, pool, source, seed)
    merged.sort(key=lambda item: (item[0], item[1]))
    return Scenario(name, tuple(bursts), close_windows([item for _, _, item in merged]))


def judge_all(windows: Sequence[ClosedWindow], judge: Judge) -> set[tuple[str, float]]:
    return {(w.key, w.window_start.timestamp()) for w in windows if judge(w)}


def key_weeks(windows: Sequence[ClosedWindow]) -> float:
    spans: dict[str, list[float]] = {}
    for w in windows:
        start = w.window_start.timestamp()
        first, last = spans.get(w.key, [start, start])
        spans[w.key] = [min(first, start), max(last, start)]
    return sum((last - first + SIZE_S) / WEEK_S for first, last in spans.values())


def evaluate(
    name: str, make: Callable[[], Judge], calm: Scenario, scenarios: Sequence[Scenario]
) -> Row:
    row = Row(name)
    calm_alerts = judge_all(calm.windows, make())
    by_id = {(w.key, w.window_start.timestamp()): w for w in calm.windows}
    row.calm_alerts = len(calm_alerts)
    row.single = sum(round(by_id[a].neg_share * by_id[a].count) <= 1 for a in calm_alerts)
    row.fa_per_key_week = len(calm_alerts) / key_weeks(calm.windows)
    true_alerts = all_alerts = 0
    hours: list[float] = []
    for sc in scenarios:
        alerts = judge_all(sc.windows, make())
        source_keys = {w.key for w in sc.windows if w.key.startswith("source:")}
        same = nxt = 0
        hit: set[tuple[str, float]] = set()
        for burst in sc.bursts:
            key = f"ticker:{burst.ticker}"
            windows = (burst.window, burst.window + SIZE_S)
            if (key, windows[0]) in alerts:
                same += 1
            caught = [w for w in windows if (key, w) in alerts]
            if caught:
                nxt += 1
                hours.append((caught[0] + SIZE_S + LATENESS_S - burst.first_time) / 3_600)
            for alert_key, start in alerts:
                near = start in windows
                burst_key = alert_key in (key, "market") or alert_key.startswith("topic:")
                if near and (burst_key or alert_key in source_keys):
                    hit.add((alert_key, start))
        row.recall_same[sc.name] = same / len(sc.bursts)
        row.recall_next[sc.name] = nxt / len(sc.bursts)
        true_alerts += len(hit)
        all_alerts += len(alerts)
    row.precision = true_alerts / all_alerts if all_alerts else 0.0
    row.hours_to_alert = statistics.median(hours) if hours else None
    return row


def buzz_and_state(
    calm: Scenario, scenarios: Sequence[Scenario], rules: SpikeRules
) -> tuple[str, list[str]]:
    """Buzz of the default detector (calm buzz windows per key-week, bursts whose window is
    buzz) and the spike state it holds at the end of the calm replay."""
    detector = SpikeDetector(rules)
    calm_buzz = sum(detector.observe(w).point.is_buzz for w in calm.windows)
    held = sum(1 for key in detector.state if key != "__pruned_at__")
    seen = len({w.key for w in calm.windows})
    lines = [
        f"- calm data: {calm_buzz} buzz windows, {calm_buzz / key_weeks(calm.windows):.4f} "
        "per key-week"
    ]
    for sc in scenarios:
        judge = SpikeDetector(rules)
        buzz = {
            (w.key, w.window_start.timestamp())
            for w in sc.windows
            if judge.observe(w).point.is_buzz
        }
        caught = sum((f"ticker:{b.ticker}", b.window) in buzz for b in sc.bursts)
        lines.append(f"- {sc.name} bursts: {caught} of {len(sc.bursts)} windows are buzz")
    return f"spike state after the calm replay: {held} keys held of {seen} seen", lines


def legacy() -> Judge:
    return LegacyDetector(LegacyRules()).fires


def count_aware(rules: SpikeRules) -> Callable[[], Judge]:
    def make() -> Judge:
        detector = SpikeDetector(rules)
        return lambda window: detector.observe(window).alert is not None

    return make


def configurations(base: SpikeRules) -> list[tuple[str, SpikeRules]]:
    grid = []
    for concentration in (20.0, 50.0, 200.0):
        for rate in (1e-2, 1e-3, 1e-4, 1e-5):
            rules = replace(base, false_alarm_rate=rate, max_concentration=concentration)
            grid.append((f"count c={concentration:g} fa={rate:g}", rules))
    grid.append(("count c=50 fa=0.001 alpha=0.2", replace(base, alpha=0.2)))
    grid.append(("count c=50 fa=0.001 min_neg=2", replace(base, min_negatives=2)))
    return grid


def table(rows: Sequence[Row], sizes: Sequence[str]) -> str:
    head = ["detector", "calm alerts", "single-post", "FA/key-week"]
    head += [f"{s} same/next" for s in sizes] + ["precision", "hours to alert"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        cells = [r.name, str(r.calm_alerts), str(r.single), f"{r.fa_per_key_week:.4f}"]
        cells += [f"{r.recall_same[s]:.0%} / {r.recall_next[s]:.0%}" for s in sizes]
        cells += [f"{r.precision:.2f}", f"{r.hours_to_alert:.1f}" if r.hours_to_alert else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def svg_tradeoff(rows: Sequence[Row], size: str, path: Path) -> None:
    """Recall of ``size`` bursts (within the next window) against false alarms per key-week."""
    width, height, pad = 640, 420, 60
    points = [(r.fa_per_key_week, r.recall_next[size], r.name) for r in rows]
    xs = [max(x, 1e-5) for x, _, _ in points]
    lo, hi = min(xs) / 2, max(xs) * 2

    def px(x: float) -> float:
        import math

        scale = (math.log10(max(x, 1e-5)) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
        return pad + scale * (width - 2 * pad)

    def py(y: float) -> float:
        return height - pad - y * (height - 2 * pad)

    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for x, y, name in points:
        swept = name.startswith("count c=") and name.count("=") == 2
        group = name.split(" fa=")[0] if swept else name
        series[group].append((x, y))
    colours = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" '
        'stroke="black"/>',
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="black"/>',
        f'<text x="{width / 2}" y="{height - 20}" text-anchor="middle">'
        "false alarms per key-week on calm data (log scale)</text>",
        f'<text x="15" y="{height / 2}" transform="rotate(-90 15 {height / 2})" '
        f'text-anchor="middle">recall of {size} bursts within the next window</text>',
        f'<text x="{width / 2}" y="25" text-anchor="middle" font-size="13">'
        "Spike detectors on real headlines, daily windows (bench/detection.py)</text>",
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 0.95, 1.0):
        parts.append(
            f'<text x="{pad - 5}" y="{py(tick) + 4}" text-anchor="end">{tick:.0%}</text>'
            f'<line x1="{pad}" y1="{py(tick)}" x2="{width - pad}" y2="{py(tick)}" '
            'stroke="#ddd"/>'
        )
    decade = 1e-5
    while decade <= hi:
        if decade >= lo:
            parts.append(
                f'<text x="{px(decade)}" y="{height - pad + 15}" text-anchor="middle">'
                f"{decade:g}</text>"
            )
        decade *= 10
    for n, (group, pts) in enumerate(sorted(series.items())):
        colour = colours[n % len(colours)]
        pts.sort()
        if len(pts) > 1:
            path_d = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
            parts.append(f'<polyline points="{path_d}" fill="none" stroke="{colour}"/>')
        for x, y in pts:
            parts.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="4" fill="{colour}"/>')
        parts.append(
            f'<text x="{width - pad - 200}" y="{pad + 15 * n}" fill="{colour}">{group}</text>'
        )
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")


def demo_alerts(
    benzinga: Sequence[ScoredPost], rules: SpikeRules
) -> tuple[list[ClosedWindow], list[ClosedWindow]]:
    """The Benzinga sample with the demo's windows: the windows today's rule and ``rules``
    alert on (what ``make demo`` and a backfill with the demo's settings raise)."""
    windows = close_windows([(keys_for(post), observe(post)) for post in benzinga])
    old, new = legacy(), count_aware(rules)()
    return [w for w in windows if old(w)], [w for w in windows if new(w)]


def describe_alerts(name: str, fired: Sequence[ClosedWindow], examples: int) -> str:
    single = sum(round(w.neg_share * w.count) <= 1 for w in fired)
    lines = [f"{name}: {len(fired)} alerts, {single} resting on one negative post or none"]
    for w in sorted(fired, key=lambda w: -w.neg_share * w.count)[:examples]:
        title = w.evidence[0].title if w.evidence else ""
        lines.append(
            f"- {w.key} {w.window_start:%Y-%m-%d}: {round(w.neg_share * w.count)} negative "
            f'of {w.count}, e.g. "{title[:90]}"'
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bursts", type=int, default=60, help="bursts per size (default 60)")
    parser.add_argument("--seed", type=int, default=20)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    began = time.perf_counter()
    settings = load_settings(
        model_backend="onnx-int8", window_size_s=SIZE_S, allowed_lateness_s=LATENESS_S
    )
    cache = ScoreCache(settings)
    calm = scored_posts(calm_posts(settings), cache)
    pool = negative_pool(cache)
    calm_items = [(keys_for(post), observe(post)) for post in calm]
    source = next(post.source for post in calm if post.tickers)
    sizes: dict[str, Callable[[float], int]] = {
        "+3": lambda _: 3,
        "+5": lambda _: 5,
        "+10": lambda _: 10,
        "+20": lambda _: 20,
        "+200% vol": lambda volume: max(1, round(2 * volume)),
        "+500% vol": lambda volume: max(1, round(5 * volume)),
    }
    rng = random.Random(args.seed)
    scenarios = []
    for n, (name, size_of) in enumerate(sizes.items()):
        bursts = plan_bursts(calm, size_of, args.bursts, rng)
        scenarios.append(scenario(name, calm_items, bursts, pool, source, args.seed * 100 + n))
    calm_scenario = Scenario("calm", (), close_windows(calm_items))
    rows = [evaluate("today (floored z)", legacy, calm_scenario, scenarios)]
    base = SpikeRules.from_settings(settings)
    for name, rules in configurations(base):
        rows.append(evaluate(name, count_aware(rules), calm_scenario, scenarios))
    keys = {w.key for w in calm_scenario.windows}
    vol_sizes = [s.bursts[0].size for s in scenarios[4:]]
    summary = (
        f"{len(calm)} calm posts ({len(keys)} keys, {key_weeks(calm_scenario.windows):,.0f} "
        f"key-weeks, {len(calm_scenario.windows):,} daily windows), {len(pool)} negative texts "
        f"in the burst pool, {sum(len(s.bursts) for s in scenarios)} bursts "
        f"({args.bursts} per size; volume-share sizes e.g. {vol_sizes}), seed {args.seed}, "
        f"model {cache.version} (onnx-int8), {time.perf_counter() - began:.0f} s"
    )
    text = table(rows, list(sizes))
    old, new = demo_alerts([p for p in calm if p.source == source], base)
    demo = (
        "Benzinga sample alone, the demo's settings (daily windows, 1 h lateness), "
        "the shipped defaults:\n\n"
        + describe_alerts("today (floored z)", old, 0)
        + "\n\n"
        + describe_alerts("count-aware", new, 8)
    )
    state, buzz = buzz_and_state(calm_scenario, scenarios, base)
    demo += "\n\nBuzz at the shipped defaults:\n\n" + "\n".join(buzz) + f"\n\n{state}"
    print(summary)
    print(text)
    print(demo)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "detection.md").write_text(
        f"# Detection benchmark\n\n`python -m bench.detection --bursts {args.bursts} "
        f"--seed {args.seed}`\n\n{summary}\n\n{text}\n\n{demo}\n",
        encoding="utf-8",
    )
    svg_tradeoff(rows, "+10", RESULTS / "detection-tradeoff.svg")


if __name__ == "__main__":
    main()
