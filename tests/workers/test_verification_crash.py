"""A real Celery worker SIGKILLed in the middle of a verification sweep, then a new one: nothing lost or doubled.

The worker (prefork, cpu queue) runs ``workers.tasks.verify`` on many products against a private
redis-server; the test kills the whole worker, parent and pool child, once some products are
verified and others are not, starts a new worker, sends the sweep again (as beat does every
minute), and compares every stored lead with SkillScores computed here from the same files.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from pathlib import Path

import numpy as np
import pytest
import redis

from tests.utils.redis_server import RedisServer
from tests.utils.worker_process import WorkerProcess
from tests.workers.conftest import FEED_START, blob_field, write_blob_feed
from tests.workers.verification_builders import direct_skill, make_product, shifted
from workers import jobs, skill_store, tasks, verification
from workers.celery_app import create_app
from workers.settings import WorkerSettings

pytestmark = pytest.mark.integration

GRID = (160, 192)  # large enough that one sweep over every product takes seconds on 2 cores
SLOTS, LEADS = 24, 8
SUMS = ("hits", "misses", "false_alarms", "correct_negatives", "fss_fct_sq", "fss_fct_obs", "fss_obs_sq",
        "abs_error_sum", "sq_error_sum", "valid_pixels")
# The slots are in March 2026, the worker's clock is the wall clock: keep them inside the retention.
WORKER_ENV = {"NOWCAST_VERIFICATION_RETENTION_DAYS": "36500", "NOWCAST_VERIFICATION_LOOKBACK": "600"}


def build_products(settings: WorkerSettings, r: redis.Redis) -> list[jobs.JobRecord]:
    """SLOTS slots, each with a model and an extrapolation product (truth moved by 1 and 3 pixels)."""
    truth = blob_field(SLOTS + LEADS + 1, GRID)
    records = []
    for index in range(SLOTS):
        slot = FEED_START + dt.timedelta(minutes=6 * index)
        valid = truth[index + 1: index + 1 + LEADS]
        records.append(make_product(settings, r, slot=slot, stream="model", dbz=shifted(valid, 1), source="predrnn"))
        records.append(make_product(settings, r, slot=slot, stream="extrapolation", dbz=shifted(valid, 3),
                                    source="extrapolation"))
    return records


def stored_leads(r: redis.Redis, records: list[jobs.JobRecord]) -> int:
    return sum(len(rec.leads) for job in records if (rec := skill_store.read_record(r, job_id=job.job_id)))


def test_a_worker_killed_mid_sweep_loses_and_duplicates_nothing(private_redis: RedisServer, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    settings = WorkerSettings(redis_url=private_redis.url, data_dir=data_dir)
    write_blob_feed(settings.feed_dir, FEED_START, SLOTS + LEADS + 1, shape=GRID)
    r = redis.Redis.from_url(private_redis.url)
    records = build_products(settings, r)
    ids = [record.job_id for record in records]
    app = create_app(settings)
    first = WorkerProcess(redis_url=private_redis.url, data_dir=data_dir, queues="cpu", env=WORKER_ENV).start()
    second = None
    try:
        app.send_task("workers.tasks.verify", queue="cpu")
        deadline = time.monotonic() + 120
        while r.scard(skill_store.COMPLETE_KEY) < 2:  # the sweep is under way: some products are done
            assert time.monotonic() < deadline, first.log_text()[-3000:]
            time.sleep(0.005)
        killed_holder = jobs.lock_owner(r, job_id=tasks.VERIFY_LOCK)
        first.kill_all()  # parent and pool child at once, mid-sweep
        at_kill = r.scard(skill_store.COMPLETE_KEY)
        written_at_kill = stored_leads(r, records)
        assert at_kill < len(records), "the sweep finished before it could be interrupted"
        assert killed_holder is not None and jobs.lock_owner(r, job_id=tasks.VERIFY_LOCK) == killed_holder

        second = WorkerProcess(redis_url=private_redis.url, data_dir=data_dir, queues="cpu", env=WORKER_ENV).start()
        results = []
        deadline = time.monotonic() + 180
        while r.scard(skill_store.COMPLETE_KEY) < len(records):  # beat's next sweeps
            assert time.monotonic() < deadline, second.log_text()[-3000:]
            results.append(app.send_task("workers.tasks.verify", queue="cpu").get(timeout=120))
        # The new worker took over the dead sweep's lock and scored exactly what the dead one had not.
        assert all("skipped" not in result for result in results), results
        assert sum(result["leads"]["scored"] for result in results) == len(records) * LEADS - written_at_kill
        assert jobs.lock_owner(r, job_id=tasks.VERIFY_LOCK) is None
        logging.getLogger(__name__).warning(
            "killed with %d of %d products complete and %d of %d leads stored; %d sweep(s) after the restart "
            "scored %d", at_kill, len(records), written_at_kill, len(records) * LEADS, len(results),
            sum(result["leads"]["scored"] for result in results))
    finally:
        for worker in (first, second):
            if worker is not None:
                worker.stop()
        app.close()

    # Every product once in its stream's index and in the complete set; every lead once, scored.
    for stream in jobs.STREAMS:
        indexed = sorted(v.decode() for v in r.zrange(f"{skill_store.KEY_PREFIX}index:{stream}", 0, -1))
        assert indexed == sorted(i for i in ids if jobs.nowcast_stream(i) == stream)
    assert sorted(v.decode() for v in r.smembers(skill_store.COMPLETE_KEY)) == sorted(ids)
    for record in records:
        stored = skill_store.read_record(r, job_id=record.job_id)
        assert stored is not None and stored.meta["job_id"] == record.job_id
        assert r.hlen(f"{skill_store.KEY_PREFIX}{record.job_id}") == 1 + LEADS  # meta and one field per lead
        assert sorted(stored.leads) == [6 * (k + 1) for k in range(LEADS)]
        for lead, entry in stored.leads.items():
            assert entry["status"] == "scored", (record.job_id, lead, entry)
            got = skill_store.skill_of(entry, verification.THRESHOLDS, verification.SCALES)
            expected = direct_skill(Path(record.products["netcdf"]), settings.feed_dir, [lead])
            for name in SUMS:  # the same code on the same files: equal, not close
                assert np.array_equal(getattr(got, name), getattr(expected, name)), (record.job_id, lead, name)
    r.close()
