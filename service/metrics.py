"""Prometheus metrics of the API, in a registry owned by one app (so tests can build many apps).

Request counters and latency are observed by the request middleware with the *route template*
as label (``/jobs/{job_id}``, never the raw path). The job-side gauges (jobs by state, queue depth,
age of the newest successful nowcast) are read from the job store and the broker when
``/metrics`` is scraped, so they are right even with several API processes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Latency buckets (seconds) for an API whose reads take milliseconds and uploads up to seconds.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class JobSnapshot:
    """What the scrape found; ``None``/NaN where the source could not be read."""

    by_state: dict[tuple[str, str], int] = field(default_factory=dict)  # (kind, status) -> count
    queue_depth: dict[str, float] = field(default_factory=dict)  # queue name -> waiting messages
    latest_nowcast_age_seconds: float = math.nan
    redis_up: bool = True
    # (stream, lead minutes, threshold) -> CSI of the last 24 h of slots (NaN: undefined, no event)
    verification_csi: dict[tuple[str, str, str], float] = field(default_factory=dict)


class ApiMetrics:
    """The API's metrics and their registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "nowcast_api_requests",
            "HTTP requests answered, by method, route template and status code",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "nowcast_api_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template",
            ["method", "route"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.jobs = Gauge(
            "nowcast_jobs",
            "Jobs in the job store by kind and state",
            ["kind", "state"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "nowcast_queue_depth", "Messages waiting in a Celery queue", ["queue"], registry=self.registry
        )
        self.nowcast_age = Gauge(
            "nowcast_latest_successful_nowcast_age_seconds",
            "Seconds since the newest successful scheduled nowcast finished (NaN: none yet)",
            registry=self.registry,
        )
        self.redis_up = Gauge(
            "nowcast_redis_up", "1 when the job store answered the scrape", registry=self.registry
        )

        self.verification_csi = Gauge(
            "nowcast_verification_csi",
            "Rolling CSI over the last 24 h of verified slots, by stream, lead time (minutes) and threshold",
            ["source", "lead_minutes", "threshold"],
            registry=self.registry,
        )

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def render(self, snapshot: JobSnapshot) -> bytes:
        """Set the job gauges from ``snapshot`` and return the text exposition format."""
        self.redis_up.set(1.0 if snapshot.redis_up else 0.0)
        for (kind, state), count in snapshot.by_state.items():
            self.jobs.labels(kind, state).set(count)
        for queue, depth in snapshot.queue_depth.items():
            self.queue_depth.labels(queue).set(depth)
        self.nowcast_age.set(snapshot.latest_nowcast_age_seconds)
        for (source, lead, threshold), value in snapshot.verification_csi.items():
            self.verification_csi.labels(source, lead, threshold).set(value)
        return generate_latest(self.registry)
