"""Liveness, readiness and Prometheus metrics.

``/healthz`` does no I/O: the process answers. ``/readyz`` checks what a forecast needs: Redis
answers, the data directory is writable, the checkpoint file exists, and a worker consumes the
inference queue (Celery ``inspect active_queues`` with a short timeout, cached for a few seconds so a
load balancer polling every second does not broadcast every second). ``/metrics`` is the Prometheus
text format.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from service.deps import CeleryDep, JobStoreDep, SettingsDep
from service.metrics import JobSnapshot
from service.problems import PROBLEM_MEDIA_TYPE, TYPE_PREFIX, problem_openapi
from service.routes.domains import unhealthy
from service.schemas import HealthStatus, Readiness, ReadinessCheck
from service.settings import ApiSettings
from workers import clock, jobs, skill_store, skill_summary

logger = logging.getLogger(__name__)

router = APIRouter(tags=["health"])

# Jobs counted per kind for the state gauges: the newest ones, so a scrape stays cheap forever.
METRICS_WINDOW = 1000


@dataclass
class WorkerProbe:
    """The last answer of the worker check, reused for ``max_age`` seconds."""

    checked_at: float = -math.inf
    result: ReadinessCheck | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, celery: Any, settings: ApiSettings) -> ReadinessCheck:
        with self.lock:
            if (
                self.result is not None
                and time.monotonic() - self.checked_at < settings.readiness_cache_seconds
            ):
                return self.result
            self.result = _probe_workers(celery, settings)
            self.checked_at = time.monotonic()
            return self.result


def _probe_workers(celery: Any, settings: ApiSettings) -> ReadinessCheck:
    queue = settings.inference_queue
    try:
        replies = celery.control.inspect(timeout=settings.readiness_timeout_seconds).active_queues() or {}
    except Exception as exc:  # broker errors surface as several kombu/redis types
        return ReadinessCheck(ok=False, detail=f"cannot ask workers: {exc.__class__.__name__}: {exc}")
    consumers = sorted(
        node for node, queues in replies.items() if any(q.get("name") == queue for q in queues or [])
    )
    if consumers:
        return ReadinessCheck(
            ok=True, detail=f"{len(consumers)} worker(s) on queue {queue!r}: {', '.join(consumers)}"
        )
    return ReadinessCheck(ok=False, detail=f"no live worker consumes queue {queue!r}")


def _check_redis(store: Any) -> ReadinessCheck:
    try:
        store.ping()
    except Exception as exc:  # redis.ConnectionError, TimeoutError, AuthenticationError...
        return ReadinessCheck(ok=False, detail=f"Redis does not answer: {exc.__class__.__name__}")
    return ReadinessCheck(ok=True, detail="Redis answers PING")


def _check_data_dir(data_dir: Path) -> ReadinessCheck:
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=data_dir, prefix=".readyz-"):
            pass
    except OSError as exc:
        return ReadinessCheck(ok=False, detail=f"data directory not writable: {exc.strerror or exc}")
    return ReadinessCheck(ok=True, detail="data directory writable")


def _check_domains(settings: ApiSettings) -> ReadinessCheck:
    """Every radar domain's feed (service/routes/domains.py); ``ok`` stays true, the detail names the unhealthy."""
    bad = unhealthy(settings)
    return ReadinessCheck(ok=True, detail="all domains healthy" if not bad else "unhealthy domains: " + "; ".join(bad))


def _check_checkpoint(checkpoint: Path) -> ReadinessCheck:
    if checkpoint.is_file() and os.access(checkpoint, os.R_OK):
        return ReadinessCheck(ok=True, detail=f"checkpoint present ({checkpoint.name})")
    return ReadinessCheck(ok=False, detail=f"checkpoint {checkpoint.name} missing or unreadable")


@router.get("/healthz", response_model=HealthStatus, summary="Liveness")
def healthz() -> HealthStatus:
    """The process is up (no I/O)."""
    return HealthStatus()


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness",
    responses={503: problem_openapi("Not ready; `checks` names what fails", "not-ready", 503)},
)
def readyz(request: Request, settings: SettingsDep, store: JobStoreDep, celery: CeleryDep) -> Response:
    """Ready when Redis, the data directory, the checkpoint and a worker on the inference queue all are."""
    checks = {
        "redis": _check_redis(store),
        "data_dir": _check_data_dir(Path(settings.data_dir)),
        "checkpoint": _check_checkpoint(Path(settings.checkpoint)),
    }
    if checks["redis"].ok:
        checks["worker"] = request.app.state.worker_probe.get(celery, settings)
    else:
        checks["worker"] = ReadinessCheck(ok=False, detail="not checked: Redis (the broker) does not answer")
    failing = [name for name, check in checks.items() if not check.ok]
    # Informational: a domain whose feed is missing or stale is named, but the API still serves the others.
    checks["domains"] = _check_domains(settings)
    body = {name: check.model_dump() for name, check in checks.items()}
    if not failing:
        return JSONResponse(Readiness(status="ready", checks=checks).model_dump())
    return JSONResponse(
        {
            "type": TYPE_PREFIX + "not-ready",
            "title": "Service Unavailable",
            "status": 503,
            "detail": "not ready: " + "; ".join(f"{name}: {checks[name].detail}" for name in failing),
            "code": "not-ready",
            "instance": request.url.path,
            "failing": failing,
            "checks": body,
        },
        status_code=503,
        media_type=PROBLEM_MEDIA_TYPE,
        headers={"Retry-After": str(settings.retry_after_seconds)},
    )


def job_snapshot(store: Any, settings: ApiSettings, now: dt.datetime) -> JobSnapshot:
    """Jobs by (kind, state) among the newest ``METRICS_WINDOW`` of each kind, queue depth, nowcast age."""
    snapshot = JobSnapshot()
    try:
        newest_success: dt.datetime | None = None
        for kind in ("forecast", "nowcast"):
            records, _ = jobs.list_jobs(store, kind=kind, limit=METRICS_WINDOW, offset=0)
            for state in ("accepted", "running", "successful", "failed", "dismissed", "skipped"):
                snapshot.by_state[(kind, state)] = 0
            for record in records:
                snapshot.by_state[(kind, record.status)] = snapshot.by_state.get((kind, record.status), 0) + 1
                if kind == "nowcast" and record.status == "successful" and record.finished:
                    finished = dt.datetime.fromisoformat(str(record.finished).replace("Z", "+00:00"))
                    newest_success = max(newest_success or finished, finished)
        if newest_success is not None:
            snapshot.latest_nowcast_age_seconds = max(0.0, (now - newest_success).total_seconds())
        # Celery's Redis transport keeps a queue as a list named after it (default priority).
        snapshot.queue_depth[settings.inference_queue] = float(store.llen(settings.inference_queue))
        snapshot.verification_csi = rolling_csi(store, settings)
    except Exception as exc:  # Redis down: report it in nowcast_redis_up, keep the HTTP metrics
        logger.warning("metrics: job store unavailable (%s)", exc.__class__.__name__)
        snapshot.redis_up = False
    return snapshot


def rolling_csi(store: Any, settings: ApiSettings) -> dict[tuple[str, str, str], float]:
    """(stream, lead minutes, threshold) -> CSI of the last 24 h of slots; NaN where undefined."""
    since, until = skill_summary.window(clock.now(settings))
    values: dict[tuple[str, str, str], float] = {}
    for stream in jobs.STREAMS:
        summary = skill_summary.summarize(skill_store.records_between(store, stream=stream, since=since, until=until))
        for lead in summary["leads"]:
            for threshold, scores in lead["scores"].items():
                csi = scores["csi"]
                values[(stream, str(lead["lead_minutes"]), threshold)] = math.nan if csi is None else float(csi)
    return values


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"description": "Prometheus text format", "content": {CONTENT_TYPE_LATEST: {}}}},
)
def metrics(request: Request, settings: SettingsDep, store: JobStoreDep) -> Response:
    """Requests, latency, jobs by state, queue depth and the age of the latest successful nowcast."""
    snapshot = job_snapshot(store, settings, dt.datetime.now(dt.UTC))
    return Response(request.app.state.metrics.render(snapshot), media_type=CONTENT_TYPE_LATEST)
