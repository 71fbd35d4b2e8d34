"""More faults with real processes: Redis crashing mid-task (AOF on), two workers competing for one
job, and the disk filling up while a product is written."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.utils.redis_server import RedisServer
from tests.utils.worker_process import WorkerProcess
from tests.workers.conftest import FEED_START, write_blob_feed
from tests.workers.test_faults import INPUT_SCANS, wait_for, worker_env
from workers import jobs
from workers.celery_app import create_app
from workers.settings import WorkerSettings

pytestmark = pytest.mark.integration

LEASE_S = 6
SLOT, JOB_ID = "2026-03-01T12:18Z", "nowcast-20260301T1218Z"
PRODUCT = ["animation.gif", "forecast.nc", "lead_006.png", "lead_012.png", "lead_018.png",
           "obs_000.png", "obs_006.png", "obs_012.png", "obs_018.png", "observed.nc"]


def _client(url: str) -> redis.Redis:
    # Patient: this test's own reads must survive the restarts it causes.
    return redis.Redis.from_url(url, retry_on_error=[redis.ConnectionError], socket_timeout=5)


def test_redis_crash_mid_task_with_aof_completes_exactly_once(
    private_redis: RedisServer, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    write_blob_feed(data_dir / "feed", FEED_START, INPUT_SCANS)
    env = {**worker_env(tiny_checkpoint), "NOWCAST_LEASE_S": str(LEASE_S)}
    worker = WorkerProcess(redis_url=private_redis.url, data_dir=data_dir, env=env, beat=True).start()
    app = create_app(WorkerSettings(redis_url=private_redis.url, data_dir=data_dir))
    r = _client(private_redis.url)
    try:
        app.send_task("workers.tasks.nowcast", args=[SLOT], queue="gpu")
        running = wait_for(r, JOB_ID, ("running", "successful"), poll=0.01)
        assert running.status == "running", "the forecast finished before Redis could crash under it"
        private_redis.kill()
        time.sleep(2)
        private_redis.start()  # same port and directory: the AOF brings back records, queue and lease
        crashed_at = time.monotonic()
        record = wait_for(r, JOB_ID, ("successful", "failed"), timeout=120)
        assert record.status == "successful", record.message
        assert time.monotonic() - crashed_at < 60
        assert sorted(p.name for p in (data_dir / "products" / JOB_ID).iterdir()) == PRODUCT
        assert worker.log_text().count(f"job {JOB_ID} successful") == 1
        time.sleep(LEASE_S)  # a late requeue or redelivery must still be a no-op
        assert jobs.get_job(r, job_id=JOB_ID).status == "successful"
        assert worker.log_text().count(f"job {JOB_ID} successful") == 1
    finally:
        worker.stop()
        app.close()
        r.close()


def test_two_workers_competing_for_one_job_run_it_once(
    private_redis: RedisServer, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    write_blob_feed(data_dir / "feed", FEED_START, INPUT_SCANS)
    env = worker_env(tiny_checkpoint)
    workers = [WorkerProcess(redis_url=private_redis.url, data_dir=data_dir, env=env).start() for _ in range(2)]
    app = create_app(WorkerSettings(redis_url=private_redis.url, data_dir=data_dir))
    r = redis.Redis.from_url(private_redis.url)
    try:
        # Two deliveries of one job at once, as a duplicated beat or a redelivery would make them.
        for task_id in ("dup-a", "dup-b"):
            app.send_task("workers.tasks.nowcast", args=[SLOT], task_id=task_id, queue="gpu")
        record = wait_for(r, JOB_ID, ("successful", "failed"))
        assert record.status == "successful", record.message
        deadline = time.monotonic() + 60
        while r.llen("gpu") and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2)
        logs = [w.log_text() for w in workers]
        assert sum(log.count(f"job {JOB_ID} successful") for log in logs) == 1
        joined = "".join(logs)
        assert "[dup-a] received" in joined and "[dup-b] received" in joined  # both deliveries arrived
        assert jobs.get_job(r, job_id=JOB_ID).attempts == 1
        assert sorted(p.name for p in (data_dir / "products" / JOB_ID).iterdir()) == PRODUCT
    finally:
        for w in workers:
            w.stop()
        app.close()
        r.close()


@pytest.fixture(params=["40k", "80k"], ids=["full-during-netcdf", "full-during-quicklooks"])
def tiny_disk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """A tmpfs as the products directory: 40 KiB holds not even the netCDF (42 KB), 80 KiB holds it
    and two quicklooks but not the rest."""
    products = tmp_path / "data" / "products"
    products.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={request.param}", "tmpfs", str(products)],
                             capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield products
    finally:
        subprocess.run(["umount", "-l", str(products)], check=False)


def test_disk_full_while_writing_a_product_fails_cleanly(
    private_redis: RedisServer, tiny_checkpoint: Path, tmp_path: Path, tiny_disk: Path
) -> None:
    data_dir = tmp_path / "data"
    write_blob_feed(data_dir / "feed", FEED_START, INPUT_SCANS)
    worker = WorkerProcess(redis_url=private_redis.url, data_dir=data_dir, env=worker_env(tiny_checkpoint)).start()
    app = create_app(WorkerSettings(redis_url=private_redis.url, data_dir=data_dir))
    r = redis.Redis.from_url(private_redis.url)
    try:
        app.send_task("workers.tasks.nowcast", args=[SLOT], queue="gpu")
        record = wait_for(r, JOB_ID, ("successful", "failed"), timeout=120)
        assert record.status == "failed"
        assert "No space left on device" in record.message and "after 3 attempts" in record.message
        assert record.attempts == 3
        # A failed job leaves no product: nothing of the partial writes survives on the full disk.
        assert list(tiny_disk.iterdir()) == []
        assert worker.log_text().count(f"job {JOB_ID} failed") == 1
    finally:
        worker.stop()
        app.close()
        r.close()
