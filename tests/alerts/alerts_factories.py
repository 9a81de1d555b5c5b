"""Small builders for alerts and routes used across the alerts tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from alerts.routing import Route, build_routing
from finsentry.schema import Alert, Evidence, alert_id

T0 = datetime(2026, 11, 28, 14, 0, tzinfo=UTC)


def make_alert(
    key: str = "ticker:AAPL",
    *,
    window: int = 0,
    severity: str = "warning",
    z: float = 4.2,
    evidence: tuple[Evidence, ...] | None = None,
) -> Alert:
    start = T0 + timedelta(minutes=5 * window)
    if evidence is None:
        evidence = (
            Evidence(
                id=f"rss:wire:{key}:{window}:1",
                title=f"{key} shares plunge after guidance cut",
                url=f"https://news.example.com/{window}/1",
                score=-0.91,
            ),
            Evidence(id=f"rss:wire:{key}:{window}:2", title="Analysts slash targets", score=-0.7),
        )
    return Alert(
        id=alert_id(key, start),
        key=key,
        window_start=start,
        window_end=start + timedelta(minutes=5),
        severity=severity,  # type: ignore[arg-type]
        z=z,
        neg_share=0.72,
        mean_score=-0.41,
        count=37,
        baseline=0.18,
        evidence=evidence,
        model_version="minilm-ft-2026-11-01",
    )


def make_route(**fields: Any) -> Route:
    entry = {"name": "desk", "channels": ["slack"], **fields}
    return build_routing({"routes": [entry]}).routes[0]
