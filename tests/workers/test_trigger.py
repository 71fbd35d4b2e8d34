"""A slot's nowcast starts when its scan lands: real redis-server, real prefork worker, real beat.

The feed holds the three scans before the current slot; the test then writes the slot's scan and
expects beat's frequent check (every second here) to have the product on disk a few seconds later,
run once, while further checks send nothing more.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from tests.utils.redis_server import RedisServer
from tests.utils.worker_process import REPO_ROOT, WorkerProcess
from tests.workers.conftest import write_blob_feed
from workers import jobs
from workers.schedule import floor_to_step
from workers.settings import WorkerSettings
from workers.trigger import TRIGGER_KEY, trigger_if_landed

pytestmark = pytest.mark.integration

DB = 7  # this module's Redis database
INPUT_SCANS, LEAD_STEPS = 4, 3
STEP = dt.timedelta(minutes=6)


def current_slot_with_room(seconds: float) -> dt.datetime:
    """The current slot, after waiting out its last ``seconds`` so the test never straddles two slots."""
    now = dt.datetime.now(dt.UTC)
    slot = floor_to_step(now, 6)
    left = (slot + STEP - now).total_seconds()
    if left < seconds:
        time.sleep(left + 0.5)
        slot += STEP
    return slot


def test_the_check_sends_the_slot_once_its_scan_is_there(redis_server: RedisServer, tmp_path: Path) -> None:
    url = redis_server.url.replace("/0", f"/{DB}")
    r = redis.Redis.from_url(url)
    r.flushdb()
    settings = WorkerSettings(redis_url=url, data_dir=tmp_path, timestep_minutes=6)
    slot = current_slot_with_room(10)
    write_blob_feed(settings.feed_dir, slot - 3 * STEP, 3)
    sent: list[tuple[str, int]] = []

    def send(slot_iso: str, expires: int) -> None:
        sent.append((slot_iso, expires))

    now = slot + dt.timedelta(seconds=20)
    assert trigger_if_landed(settings, r, send, now)["reason"].endswith("not in the feed yet") and not sent
    write_blob_feed(settings.feed_dir, slot - 3 * STEP, 4)
    first = trigger_if_landed(settings, r, send, now)
    again = trigger_if_landed(settings, r, send, now + dt.timedelta(seconds=2))
    assert first["sent"] and not again["sent"] and again["reason"] == "already sent"
    assert sent == [(f"{slot:%Y-%m-%dT%H:%M:%SZ}", 5 * 60)]  # queued for less than one period
    assert 0 < r.ttl(TRIGGER_KEY.format(job_id=jobs.nowcast_job_id(slot))) <= 6 * 60
    r.flushdb()
    r.close()


def test_beat_starts_the_nowcast_seconds_after_the_scan_lands(
        redis_server: RedisServer, tiny_checkpoint: Path, tmp_path: Path) -> None:
    url = redis_server.url.replace("/0", f"/{DB}")
    r = redis.Redis.from_url(url)
    r.flushdb()
    env = {"NOWCAST_CHECKPOINT": str(tiny_checkpoint), "NOWCAST_INPUT_SCANS": str(INPUT_SCANS),
           "NOWCAST_LEAD_STEPS": str(LEAD_STEPS), "NOWCAST_PRECISION": "fp32", "NOWCAST_FEED_POLL_SECONDS": "1"}
    settings = WorkerSettings(redis_url=url, data_dir=tmp_path, input_scans=INPUT_SCANS, lead_steps=LEAD_STEPS)
    worker = WorkerProcess(redis_url=url, data_dir=tmp_path, env=env).start()
    (tmp_path / "beat").mkdir()
    beat_log = tmp_path / "beat.log"
    with open(beat_log, "wb") as log:
        beat = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers.celery_app:app", "beat", "--loglevel", "INFO",
             "-s", str(tmp_path / "beat" / "celerybeat-schedule")],
            cwd=REPO_ROOT, env={**worker.environment(), **env}, stdout=log, stderr=subprocess.STDOUT)
    try:
        slot = current_slot_with_room(45)
        job_id = jobs.nowcast_job_id(slot)
        write_blob_feed(settings.feed_dir, slot - 3 * STEP, 3)
        time.sleep(3)  # beat is checking; the slot's scan is not there
        assert jobs.get_job(r, job_id=job_id) is None
        write_blob_feed(settings.feed_dir, slot - 3 * STEP, 4)
        landed = time.monotonic()
        record = None
        while time.monotonic() - landed < 30:
            record = jobs.get_job(r, job_id=job_id)
            if record is not None and record.status in ("successful", "failed", "skipped"):
                break
            time.sleep(0.1)
        waited = time.monotonic() - landed
        assert record is not None and record.status == "successful", (record, beat_log.read_text()[-3000:])
        # One check period plus the run of a tiny model: far inside the 2-minute offset beat used alone.
        assert waited < 20, waited
        assert record.attempts == 1 and Path(record.products["netcdf"]).is_file()
        time.sleep(3)  # more checks: nothing is sent again
        assert worker.log_text().count(f"sent {job_id}") == 1
    finally:
        beat.terminate()
        beat.wait(timeout=30)
        worker.stop()
        r.flushdb()
        r.close()
