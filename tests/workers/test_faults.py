"""Faults with real processes: a worker child SIGKILLed mid-forecast, Redis restarted with jobs queued.

Each test owns a private redis-server (AOF, appendfsync always) so restarting it disturbs nobody.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis
import xarray as xr

from tests.utils.redis_server import RedisServer
from tests.utils.worker_process import WorkerProcess
from tests.workers.conftest import FEED_START, GRID, write_blob_feed
from workers import jobs
from workers.celery_app import create_app
from workers.settings import WorkerSettings

pytestmark = pytest.mark.integration

INPUT_SCANS, LEAD_STEPS = 4, 3


def wait_for(r: redis.Redis, job_id: str, statuses: tuple[str, ...], timeout: float = 90.0,
             poll: float = 0.1) -> jobs.JobRecord:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = jobs.get_job(r, job_id=job_id)
        if record is not None and record.status in statuses:
            return record
        time.sleep(poll)
    raise AssertionError(f"job {job_id} not in {statuses} after {timeout} s: {jobs.get_job(r, job_id=job_id)}")


def worker_env(checkpoint: Path | str) -> dict[str, str]:
    return {"NOWCAST_CHECKPOINT": str(checkpoint), "NOWCAST_INPUT_SCANS": str(INPUT_SCANS),
            "NOWCAST_LEAD_STEPS": str(LEAD_STEPS), "NOWCAST_PRECISION": "fp32", "NOWCAST_RETRY_BACKOFF_S": "0.5"}


def test_child_killed_mid_forecast_completes_exactly_once(private_redis: RedisServer, tiny_checkpoint: Path,
                                                          tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    write_blob_feed(data_dir / "feed", FEED_START, INPUT_SCANS)
    worker = WorkerProcess(redis_url=private_redis.url, data_dir=data_dir, env=worker_env(tiny_checkpoint))
    worker.start()
    r = redis.Redis.from_url(private_redis.url)
    app = create_app(WorkerSettings(redis_url=private_redis.url, data_dir=data_dir))
    job_id = "nowcast-20260301T1218Z"
    try:
        first_child = worker.child_pids()
        # The prefork parent never loads torch (so it can never hold a CUDA context to fork).
        assert "libtorch" not in Path(f"/proc/{worker.process.pid}/maps").read_text()
        app.send_task("workers.tasks.nowcast", args=["2026-03-01T12:18Z"], queue="gpu")
        # The fresh child imports torch and loads the model after marking the job running: kill it there.
        running = wait_for(r, job_id, ("running", "successful"), poll=0.01)
        assert running.status == "running", "the forecast finished before it could be interrupted"
        killed = worker.kill_children()
        assert killed == first_child
        record = wait_for(r, job_id, ("successful", "failed"))
        assert record.status == "successful", record.message
        assert record.attempts == 2  # the killed attempt and the one that completed
        product_dir = data_dir / "products" / job_id
        assert sorted(p.name for p in product_dir.iterdir()) == [
            "animation.gif", "forecast.nc", "lead_006.png", "lead_012.png", "lead_018.png",
            "obs_000.png", "obs_006.png", "obs_012.png", "obs_018.png", "observed.nc"]  # no partial file
        with xr.open_dataset(product_dir / "forecast.nc", engine="netcdf4") as ds:
            assert ds["reflectivity"].shape == (LEAD_STEPS, *GRID)
        log = worker.log_text()
        assert "WorkerLostError" in log or "signal 9" in log, log[-3000:]
        assert log.count(f"job {job_id} successful") == 1
        assert jobs.lock_owner(r, job_id=job_id) is None  # released by the attempt that finished
        assert worker.child_pids() and worker.child_pids() != first_child
    finally:
        worker.stop()
        app.close()
        r.close()


def test_jobs_queued_across_a_redis_restart_are_not_lost(private_redis: RedisServer, tmp_path: Path) -> None:
    """No worker while the jobs wait; Redis restarts (AOF); a worker then runs every one of them.

    The checkpoint is absent here, so this also exercises the extrapolation fallback end to end.
    """
    data_dir = tmp_path / "data"
    settings = WorkerSettings(redis_url=private_redis.url, data_dir=data_dir, checkpoint=tmp_path / "absent.pt")
    r = redis.Redis.from_url(private_redis.url)
    app = create_app(settings)
    job_ids = []
    for seed in range(3):
        input_dir = data_dir / "inputs" / f"in-{seed}"
        write_blob_feed(input_dir, FEED_START, INPUT_SCANS, seed=seed)
        job_id = f"forecast-restart-{seed}"
        jobs.create_job(r, job_id=job_id, kind="forecast", steps=2, input_path=str(input_dir),
                        model_version=jobs.model_version(settings.checkpoint))
        app.send_task("workers.tasks.forecast", args=[job_id, str(input_dir), 2], task_id=job_id, queue="gpu")
        job_ids.append(job_id)
    assert r.llen("gpu") == 3
    app.close()
    r.close()
    private_redis.restart()
    r = redis.Redis.from_url(private_redis.url)
    assert r.llen("gpu") == 3 and all(jobs.get_job(r, job_id=j).status == "accepted" for j in job_ids)
    worker = WorkerProcess(redis_url=private_redis.url, data_dir=data_dir, env=worker_env(tmp_path / "absent.pt"))
    worker.start()
    try:
        for job_id in job_ids:
            record = wait_for(r, job_id, ("successful", "failed"))
            assert record.status == "successful", record.message
            assert record.source == "extrapolation"
            assert record.model == "pysteps Lucas-Kanade + semi-Lagrangian extrapolation"
            assert record.model_version == jobs.NO_CHECKPOINT
            assert "extrapolation fallback" in record.message and "absent.pt" in record.message
            with xr.open_dataset(record.products["netcdf"], engine="netcdf4") as ds:
                assert ds.attrs["source"] == "extrapolation"
                assert ds.attrs["checkpoint_sha256"] == ""
                assert "checkpoint file not found" in ds.attrs["fallback_reason"]
                assert ds["reflectivity"].shape == (2, *GRID)
        assert r.llen("gpu") == 0
    finally:
        worker.stop()
        r.close()
