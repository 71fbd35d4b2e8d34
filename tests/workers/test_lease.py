"""The lease of a running job: renewed while its worker lives, and once the worker is gone the job
is queued again within a minute, exactly once, and completes once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import redis

from tests.utils.redis_server import RedisServer
from tests.utils.worker_process import WorkerProcess
from tests.workers.conftest import FEED_START, write_blob_feed
from tests.workers.test_faults import INPUT_SCANS, wait_for, worker_env
from workers import jobs
from workers.celery_app import create_app
from workers.heartbeat import Heartbeat
from workers.settings import WorkerSettings

pytestmark = pytest.mark.integration

LEASE_S = 6


def test_a_lapsed_lease_is_requeued_once_however_many_reapers(private_redis: RedisServer) -> None:
    r = redis.Redis.from_url(private_redis.url)
    try:
        jobs.create_job(r, job_id="forecast-l", kind="forecast", steps=2, input_path="/in", model_version="v")
        jobs.update_job(r, job_id="forecast-l", status="running", attempts=1)
        jobs.heartbeat(r, job_id="forecast-l", owner="host:1:x", lease_s=0.5)
        assert jobs.requeue_stalled(r) == []  # still within its lease
        time.sleep(0.6)
        results: list[list] = []
        reapers = [threading.Thread(target=lambda: results.append(jobs.requeue_stalled(r))) for _ in range(8)]
        for reaper in reapers:
            reaper.start()
        for reaper in reapers:
            reaper.join()
        won = [entry for result in results for entry in result]
        assert len(won) == 1
        record, task_id = won[0]
        assert record.status == "accepted" and record.requeues == 1 and record.attempts == 1
        assert task_id == "forecast-l-r1" and jobs.get_job(r, job_id="forecast-l").task_id == task_id
        assert jobs.requeue_stalled(r) == []
    finally:
        r.close()


def test_a_heartbeat_keeps_the_lease_and_the_lock(private_redis: RedisServer) -> None:
    r = redis.Redis.from_url(private_redis.url)
    try:
        jobs.create_job(r, job_id="forecast-h", kind="forecast", steps=2, input_path="/in", model_version="v")
        jobs.update_job(r, job_id="forecast-h", status="running")
        assert jobs.acquire_lock(r, job_id="forecast-h", owner="me", ttl_s=1)
        with Heartbeat(r, job_id="forecast-h", owner="me", lease_s=0.9):
            time.sleep(2.5)  # almost three leases: only renewals keep it alive
            assert jobs.requeue_stalled(r) == [] and jobs.lock_owner(r, job_id="forecast-h") == "me"
        time.sleep(1.2)
        assert jobs.lock_owner(r, job_id="forecast-h") is None  # the lock lapsed with the lease
        assert [rec.job_id for rec, _ in jobs.requeue_stalled(r)] == ["forecast-h"]
    finally:
        r.close()


def test_a_job_whose_worker_died_is_requeued_within_a_minute_and_runs_once(
    private_redis: RedisServer, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    write_blob_feed(data_dir / "feed", FEED_START, INPUT_SCANS)
    env = {**worker_env(tiny_checkpoint), "NOWCAST_LEASE_S": str(LEASE_S)}
    first = WorkerProcess(redis_url=private_redis.url, data_dir=data_dir, env=env).start()
    r = redis.Redis.from_url(private_redis.url)
    app = create_app(WorkerSettings(redis_url=private_redis.url, data_dir=data_dir))
    job_id = "nowcast-20260301T1218Z"
    second = WorkerProcess(redis_url=private_redis.url, data_dir=data_dir, env=env, beat=True)
    try:
        app.send_task("workers.tasks.nowcast", args=["2026-03-01T12:18Z"], queue="gpu")
        running = wait_for(r, job_id, ("running", "successful"), poll=0.01)
        assert running.status == "running", "the forecast finished before it could be interrupted"
        first.kill_all()  # parent and child: nobody will ever ack, or redeliver before the visibility timeout
        killed_at = time.monotonic()
        second.start()  # its beat runs the requeue sweep
        while jobs.get_job(r, job_id=job_id).requeues == 0 and time.monotonic() - killed_at < 90:
            time.sleep(0.2)
        # The promise is about the lease: the job is queued again within a minute of its worker's
        # death, on a loaded machine too; running it again then takes what a forecast takes.
        assert time.monotonic() - killed_at < 60, "the lost job waited more than a minute to be queued again"
        record = wait_for(r, job_id, ("successful", "failed"), timeout=90)
        assert record.status == "successful", record.message
        assert record.requeues == 1 and record.attempts == 2 and record.task_id == f"{job_id}-r1"
        logs = first.log_text() + second.log_text()
        assert logs.count(f"job {job_id} successful") == 1
        assert "stopped renewing the lease; queued again" in second.log_text()
        assert jobs.lock_owner(r, job_id=job_id) is None
        assert r.zscore(jobs.LEASES_KEY, job_id) is None
    finally:
        first.stop()
        second.stop()
        app.close()
        r.close()


def test_a_killed_unreaped_lock_holder_counts_as_dead() -> None:
    # A worker killed together with its parent lingers as a zombie until PID 1 reaps it; its lock
    # must be taken over at once, not when the zombie goes.
    import os
    import signal
    import socket
    import subprocess

    from workers import tasks

    child = subprocess.Popen(["sleep", "60"])
    try:
        holder = f"{socket.gethostname()}:{child.pid}:abcd1234"
        assert tasks._pid_alive(child.pid) and not tasks._holder_is_dead(holder)
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert not tasks._pid_alive(child.pid) and tasks._holder_is_dead(holder)  # zombie, not reaped
    finally:
        child.kill()
        child.wait()
    assert not tasks._pid_alive(child.pid)
