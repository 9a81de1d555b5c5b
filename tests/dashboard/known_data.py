"""Small, known data for the dashboard tests: every number a test checks is written here."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from finsentry.schema import Alert, Evidence, ScoredPost, SignalPoint, alert_id
from finsentry.store import Store

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=5)
WINDOWS = 12  # one hour of five-minute windows
SPIKE_WINDOW = 8
XSS_TITLE = "<script>window.__xss = 1</script><b>bold?</b> **not bold**"
MD_TITLE = "[click me](javascript:alert(1))"
TICKER_COUNTS = {"TSLA": 30, "AAPL": 20, "MSFT": 10}
TSLA_ALERT = alert_id("ticker:TSLA", T0 + SPIKE_WINDOW * WINDOW)


def market_mean(i: int) -> float:
    return round(0.5 - 0.05 * i, 3)


def _probs(sentiment: str) -> dict[str, float]:
    high = {
        "negative": (0.8, 0.15, 0.05),
        "neutral": (0.1, 0.8, 0.1),
        "positive": (0.05, 0.15, 0.8),
    }[sentiment]
    return dict(zip(("negative", "neutral", "positive"), high, strict=True))


def scored(
    n: int,
    *,
    title: str,
    tickers: tuple[str, ...],
    sentiment: str,
    minutes: int,
    source: str = "rss:reuters",
    topic: str = "Earnings",
    url: str | None = "https://example.com/a",
) -> ScoredPost:
    probs = _probs(sentiment)
    when = T0 + timedelta(minutes=minutes)
    return ScoredPost(
        id=f"post-{n}",
        source=source,
        kind="news",
        published_at=when,
        received_at=when,
        title=title,
        url=url,
        tickers=tickers,
        sentiment=sentiment,
        sentiment_probs=probs,
        score=round(probs["positive"] - probs["negative"], 6),
        topic=topic,
        topic_probs={topic: 0.9},
        model_version="v2",
    )


def known_posts() -> list[ScoredPost]:
    """25 TSLA posts (one XSS title, one markdown-link title), 5 AAPL, 1 reddit post."""
    items = [
        scored(
            i,
            title=f"Tesla story {i:02d}",
            tickers=("TSLA",),
            sentiment="negative" if i % 2 else "positive",
            minutes=2 + i * 2,
        )
        for i in range(23)
    ]
    items.append(
        scored(
            23,
            title=XSS_TITLE,
            tickers=("TSLA",),
            sentiment="negative",
            minutes=41,
            url="https://example.com/xss",
        )
    )
    items.append(
        scored(
            24,
            title=MD_TITLE,
            tickers=("TSLA",),
            sentiment="neutral",
            minutes=42,
            url="javascript:alert(1)",
            topic="Legal | Regulation",
        )
    )
    items += [
        scored(
            30 + i,
            title=f"Apple story {i}",
            tickers=("AAPL",),
            sentiment="neutral",
            minutes=5 + i * 10,
            source="rss:bloomberg",
        )
        for i in range(5)
    ]
    items.append(
        scored(
            40,
            title="WSB thread",
            tickers=(),
            sentiment="negative",
            minutes=50,
            source="reddit:wallstreetbets",
            topic="Stock Commentary",
        )
    )
    return items


OLD_WINDOWS = 3  # market windows three days before T0: in "last week", not in "last day"
OLD_START = T0 - timedelta(days=3)


def known_points() -> list[SignalPoint]:
    points = [
        SignalPoint(
            key="market",
            window_start=OLD_START + i * WINDOW,
            window_end=OLD_START + (i + 1) * WINDOW,
            count=5,
            mean_score=-0.5,
            neg_share=0.5,
            baseline=0.5,
            z=0.0,
            is_spike=False,
        )
        for i in range(OLD_WINDOWS)
    ]
    for i in range(WINDOWS):
        start = T0 + i * WINDOW
        spike = i == SPIKE_WINDOW
        points.append(
            SignalPoint(
                key="market",
                window_start=start,
                window_end=start + WINDOW,
                count=10 + i,
                mean_score=market_mean(i),
                neg_share=0.6 if spike else 0.2,
                baseline=0.2,
                z=4.0 if spike else 0.5,
                is_spike=spike,
            )
        )
        for ticker, count in TICKER_COUNTS.items():
            points.append(
                SignalPoint(
                    key=f"ticker:{ticker}",
                    window_start=start,
                    window_end=start + WINDOW,
                    count=count,
                    mean_score=0.0,
                    neg_share=0.9 if spike and ticker == "TSLA" else 0.1,
                    baseline=0.1,
                    z=5.0 if spike and ticker == "TSLA" else 0.2,
                    is_spike=spike and ticker == "TSLA",
                )
            )
    return points


def known_alert() -> Alert:
    start = T0 + SPIKE_WINDOW * WINDOW
    return Alert(
        id=TSLA_ALERT,
        key="ticker:TSLA",
        window_start=start,
        window_end=start + WINDOW,
        severity="critical",
        z=5.0,
        neg_share=0.9,
        mean_score=-0.7,
        count=30,
        baseline=0.1,
        evidence=(
            Evidence(id="post-23", title=XSS_TITLE, url="https://example.com/xss", score=-0.75),
            Evidence(id="post-19", title="Tesla story 19", url=None, score=-0.75),
        ),
        model_version="v2",
    )


def fill(store: Store) -> None:
    store.upsert_posts(known_posts())
    store.upsert_signal_points(known_points())
    store.upsert_alerts([known_alert()])
    store.record_delivery(TSLA_ALERT, "slack", "delivered", attempts=1)
    store.register_model_version(
        "v1",
        "models/v1",
        metrics={"sentiment": {"macro_f1": 0.7}},
        data_fingerprint="a" * 40,
        training_config={},
        created_at=T0 - timedelta(days=10),
    )
    store.register_model_version(
        "v2",
        "models/v2",
        metrics={"sentiment": {"macro_f1": 0.8312}, "topic": {"accuracy": 0.9}},
        data_fingerprint="b" * 40,
        training_config={},
        created_at=T0 - timedelta(days=1),
    )
    store.set_current_model("v2")
