"""The Celery app: configuration only. Never imports torch (the API and health checks import this).

Start a worker with ``celery -A workers.celery_app:app worker -P prefork -c 1 -Q gpu,cpu`` and beat
with ``celery -A workers.celery_app:app beat``. Settings are read through
:func:`workers.settings.get_settings` the first time the configuration is needed (not at import),
so the environment of the process that uses the app decides.

Why these values (docs/workers.md): late acks plus reject-on-worker-lost redeliver a
job whose worker child died; prefetch 1 keeps a long task from holding a second one hostage;
soft < hard time limit < visibility timeout, so Redis never redelivers a message whose task still
runs; cancel-on-connection-loss stops a task whose message Redis will hand to someone else.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery
from celery.signals import setup_logging

from workers.domains import domain_settings, domains_for
from workers.logformat import EscapingFormatter
from workers.schedule import beat_schedule, domain_entries
from workers.settings import WorkerSettings, get_settings

# A CUDA query in the prefork parent would poison every forked child; with this, is_available()
# asks NVML instead of creating a context (PyTorch docs, torch.cuda.is_available).
os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")

GPU_QUEUE = "gpu"  # inference: forecast, nowcast
CPU_QUEUE = "cpu"  # rendering and housekeeping

TASK_ROUTES = {
    "workers.tasks.forecast": {"queue": GPU_QUEUE},
    "workers.tasks.nowcast": {"queue": GPU_QUEUE},
    "workers.tasks.*": {"queue": CPU_QUEUE},
    "workers.housekeeping.*": {"queue": CPU_QUEUE},
}


def celery_config(settings: WorkerSettings) -> dict[str, Any]:
    """The Celery settings (lower-case names) derived from our settings; a pure function."""
    visibility = {"visibility_timeout": settings.visibility_timeout_s}
    return {
        "broker_url": settings.redis_url,
        "result_backend": settings.redis_url,
        "broker_transport_options": dict(visibility),
        "result_backend_transport_options": dict(visibility),
        "broker_connection_retry_on_startup": True,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "task_soft_time_limit": settings.task_soft_time_limit_s,
        "task_time_limit": settings.task_time_limit_s,
        "result_expires": settings.result_expires_s,
        "task_track_started": True,
        "task_routes": TASK_ROUTES,
        "task_default_queue": CPU_QUEUE,
        "task_create_missing_queues": True,
        "worker_hijack_root_logger": False,
        # On a warm shutdown, give the running task this long, then requeue it instead of leaving
        # it unacked until the visibility timeout.
        "worker_soft_shutdown_timeout": 30.0,
        "timezone": "UTC",
        "enable_utc": True,
        "beat_schedule": {**beat_schedule(
            timestep_minutes=settings.timestep_minutes,
            latency_offset_minutes=settings.latency_offset_minutes,
            queue=GPU_QUEUE,
            lease_s=settings.lease_s,
            cpu_queue=CPU_QUEUE,
            verify_every_s=settings.verification_interval_s,
            clock=_clock(settings),
            feed_poll_seconds=settings.feed_poll_seconds,
        ), **_domain_entries(settings)},
        "beat_schedule_filename": str(settings.beat_dir / "celerybeat-schedule"),
        # Never backfill: after a beat restart a past-due slot is dropped, not run late.
        "beat_cron_starting_deadline": settings.timestep_minutes * 60 - 60,
        "beat_max_loop_interval": 30,
    }


def _domain_entries(settings: WorkerSettings) -> dict[str, Any]:
    """Every domain's slot entries (workers/domains.py); a bad domains file stops beat and workers at start."""
    return domain_entries(domains_for(settings), settings_of=lambda d: domain_settings(settings, d),
                          clock=_clock(settings))


def _clock(settings: WorkerSettings) -> tuple[float, float, Any] | None:
    """(speed, wall_start, sim_start) when the stack runs a simulated clock (workers/clock.py), else None."""
    origin = settings.clock_origin
    if origin is None:
        return None
    return settings.clock_speed, origin[0], origin[1]


def create_app(settings: WorkerSettings | None = None) -> Celery:
    """A configured app; ``settings=None`` reads :func:`get_settings` when the config is first used."""
    app = Celery("nowcast", include=["workers.tasks", "workers.housekeeping"], set_as_current=False)
    if settings is not None:
        app.config_from_object(celery_config(settings))
        return app

    def _configure(sender: Celery, **_: Any) -> None:
        sender.config_from_object(celery_config(get_settings()))

    # weak=False: the handler is a closure that nothing else references.
    app.on_configure.connect(_configure, sender=app, weak=False)
    return app


@setup_logging.connect(weak=False)
def _setup_logging(loglevel: int | str | None = None, **_: Any) -> None:
    """Our root handler instead of Celery's: task and library logs share one format and stream, with
    control characters escaped (file names and messages can come from clients)."""
    handler = logging.StreamHandler()
    handler.setFormatter(EscapingFormatter("%(asctime)s %(levelname)s [%(processName)s] %(name)s: %(message)s"))
    logging.basicConfig(level=loglevel or logging.INFO, handlers=[handler])


app = create_app()
