"""Housekeeping tasks that beat runs on the ``cpu`` queue: requeue lost jobs, prune old ones.

``workers.housekeeping.requeue_stalled`` (every half lease) finds running jobs whose lease ran out,
because their worker died or lost Redis, and queues each again exactly once (the job store's
compare-and-set decides). ``workers.housekeeping.prune`` (hourly) deletes jobs finished more than
``retention_days`` ago with their inputs and products, the inputs of dismissed jobs, and staging
directories that an API process interrupted mid-upload left behind.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

from workers import jobs
from workers.celery_app import app
from workers.settings import WorkerSettings, get_settings
from workers.tasks import redis_client

log = logging.getLogger(__name__)

FORECAST_TASK = "workers.tasks.forecast"
NOWCAST_TASK = "workers.tasks.nowcast"
STAGING_MAX_AGE_S = 3600  # an upload is validated in seconds; an hour-old staging dir is an orphan


def task_for(record: jobs.JobRecord) -> tuple[str, list[Any], str]:
    """(task name, args, queue) that run ``record`` again."""
    if record.kind == "nowcast":
        return NOWCAST_TASK, [record.slot], "gpu"
    return FORECAST_TASK, [record.job_id, record.input_path, record.steps], "gpu"


@app.task(name="workers.housekeeping.requeue_stalled")
def requeue_stalled() -> list[str]:
    """Queue again every running job whose worker stopped renewing its lease; returns their ids."""
    r = redis_client(get_settings())
    requeued = []
    for record, task_id in jobs.requeue_stalled(r):
        name, args, queue = task_for(record)
        try:
            app.send_task(name, args=args, task_id=task_id, queue=queue)
        except Exception:  # broker gone again: hand the job back to the next round
            jobs.update_job(r, job_id=record.job_id, status="running")
            jobs.extend_lease(r, job_id=record.job_id, seconds=0)
            raise
        log.warning("job %s: its worker stopped renewing the lease; queued again as %s", record.job_id, task_id)
        requeued.append(record.job_id)
    return requeued


def _remove_tree(path: Path | None, root: Path) -> bool:
    """Delete ``path`` when it lies inside ``root`` (a record's path is never trusted blindly)."""
    if path is None or not path.exists():
        return False
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        log.warning("prune: %s lies outside %s; left alone", path, root)
        return False
    shutil.rmtree(path, ignore_errors=True)
    return True


def prune_data(settings: WorkerSettings, *, now: float | None = None) -> dict[str, int]:
    """Apply the retention policy once; returns how many of each thing were removed."""
    now = time.time() if now is None else now
    r = redis_client(settings)
    counts = {"jobs": 0, "inputs": 0, "products": 0, "staging": 0}
    cutoff = now - settings.retention_days * 86400
    for record in jobs.expired_jobs(r, created_before=cutoff):
        if record.kind == "forecast":
            counts["inputs"] += _remove_tree(settings.input_dir(record.job_id), settings.inputs_dir)
        counts["products"] += _remove_tree(settings.product_dir(record.job_id), settings.products_dir)
        jobs.delete_job(r, record=record)
        counts["jobs"] += 1
    for record in jobs.jobs_with_status(r, status="dismissed"):
        counts["inputs"] += _remove_tree(settings.input_dir(record.job_id), settings.inputs_dir)
    if settings.inputs_dir.is_dir():
        for staging in settings.inputs_dir.glob(".staging-*"):
            if now - staging.stat().st_mtime > STAGING_MAX_AGE_S:
                counts["staging"] += _remove_tree(staging, settings.inputs_dir)
    return counts


@app.task(name="workers.housekeeping.prune")
def prune() -> dict[str, int]:
    """The hourly retention run (``retention_days``)."""
    counts = prune_data(get_settings())
    log.info("prune: removed %s", counts)
    return counts
