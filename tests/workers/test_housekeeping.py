"""Retention: jobs finished longer than ``retention_days`` ago go with their inputs and products,
dismissed inputs and orphaned staging directories go at once, everything else stays; the
schedule runs the prune and the lost-job check."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.utils.redis_server import RedisServer
from workers import jobs
from workers.celery_app import celery_config
from workers.housekeeping import prune_data
from workers.schedule import PRUNE_TASK, REQUEUE_TASK
from workers.settings import WorkerSettings

DB = 11
DAY = 86400.0


@pytest.fixture()
def settings(redis_server: RedisServer, tmp_path: Path) -> Iterator[WorkerSettings]:
    url = redis_server.url.rsplit("/", 1)[0] + f"/{DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield WorkerSettings(redis_url=url, data_dir=tmp_path / "data", retention_days=7)
    client.flushdb()
    client.close()


def _job(r: redis.Redis, settings: WorkerSettings, job_id: str, status: str) -> None:
    inputs, products = settings.input_dir(job_id), settings.product_dir(job_id)
    for folder in (inputs, products):
        folder.mkdir(parents=True)
        (folder / "file.nc").write_bytes(b"x")
    jobs.create_job(r, job_id=job_id, kind="forecast", steps=3, input_path=str(inputs), model_version="v",
                    owner="key-1")
    jobs.update_job(r, job_id=job_id, status=status)


def test_prune_applies_the_retention(settings: WorkerSettings) -> None:
    r = redis.Redis.from_url(settings.redis_url)
    try:
        for job_id, status in (("forecast-done", "successful"), ("forecast-failed", "failed"),
                               ("forecast-running", "running"), ("forecast-dismissed", "dismissed")):
            _job(r, settings, job_id, status)
        staging = settings.inputs_dir / ".staging-old"
        staging.mkdir()
        fresh_staging = settings.inputs_dir / ".staging-new"
        fresh_staging.mkdir()
        os.utime(staging, (time.time() - 7200, time.time() - 7200))

        today = prune_data(settings)  # nothing is old yet: only the dismissed input and the orphan go
        assert today == {"jobs": 0, "inputs": 1, "products": 0, "staging": 1}
        assert not settings.input_dir("forecast-dismissed").exists() and not staging.exists()
        assert fresh_staging.exists() and settings.product_dir("forecast-done").exists()
        assert jobs.get_job(r, job_id="forecast-dismissed").status == "dismissed"

        later = prune_data(settings, now=time.time() + 8 * DAY)
        assert later == {"jobs": 3, "inputs": 2, "products": 3, "staging": 1}
        remaining, total = jobs.list_jobs(r)
        assert [rec.job_id for rec in remaining] == ["forecast-running"] and total == 1
        assert jobs.list_jobs(r, owner="key-1")[1] == 1
        assert settings.input_dir("forecast-running").exists() and settings.product_dir("forecast-running").exists()
        assert not settings.product_dir("forecast-done").exists() and not settings.input_dir("forecast-failed").exists()
    finally:
        r.close()


def test_prune_never_leaves_the_data_directory(settings: WorkerSettings, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    settings.inputs_dir.mkdir(parents=True)
    (settings.inputs_dir / "forecast-evil").symlink_to(outside)
    r = redis.Redis.from_url(settings.redis_url)
    try:
        jobs.create_job(r, job_id="forecast-evil", kind="forecast", steps=3, input_path=str(outside),
                        model_version="v")
        jobs.update_job(r, job_id="forecast-evil", status="dismissed")
        prune_data(settings)
        assert outside.is_dir()
    finally:
        r.close()


def test_the_schedule_runs_the_housekeeping(tmp_path: Path) -> None:
    config = celery_config(WorkerSettings(data_dir=tmp_path, lease_s=20))
    by_task = {entry["task"]: entry for entry in config["beat_schedule"].values()}
    assert by_task[REQUEUE_TASK]["schedule"] == 10 and by_task[REQUEUE_TASK]["options"]["queue"] == "cpu"
    assert by_task[PRUNE_TASK]["schedule"] == 3600 and by_task[PRUNE_TASK]["options"]["queue"] == "cpu"
