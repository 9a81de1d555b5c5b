"""The worker's Prometheus metrics, on their own registry so tests can read them."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class StreamMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.posts_in = Counter("finsentry_posts_in_total", "Messages read from posts", registry=r)
        self.dead_lettered = Counter(
            "finsentry_dead_lettered_total",
            "Inputs sent to the dead-letter topic",
            ["reason"],
            registry=r,
        )
        self.duplicates = Counter(
            "finsentry_duplicates_total", "Posts suppressed as duplicates", ["kind"], registry=r
        )
        self.scored = Counter("finsentry_scored_total", "Posts scored by the model", registry=r)
        self.late = Counter(
            "finsentry_late_total",
            "Post-key pairs that arrived after their window closed",
            registry=r,
        )
        self.windows_closed = Counter(
            "finsentry_windows_closed_total", "Closed windows (signal points)", registry=r
        )
        self.windows_corrected = Counter(
            "finsentry_windows_corrected_total",
            "Closed windows whose stored signal point a late post corrected",
            registry=r,
        )
        self.alerts = Counter("finsentry_alerts_total", "Alerts raised", registry=r)
        self.batch_size = Histogram(
            "finsentry_batch_size",
            "Posts per inference batch",
            registry=r,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
        )
        self.inference_seconds = Histogram(
            "finsentry_inference_seconds", "Model time per batch", registry=r
        )
        self.end_to_end_seconds = Histogram(
            "finsentry_end_to_end_seconds",
            "received_at to stored",
            registry=r,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
        )
        self.consumer_lag = Gauge(
            "finsentry_consumer_lag",
            "Messages behind the end of each input partition",
            ["topic", "partition"],
            registry=r,
        )
        self.model_version = Gauge(
            "finsentry_model_info", "The model version in use (value 1)", ["version"], registry=r
        )
