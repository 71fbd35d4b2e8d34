"""workers/jobs.py and workers/settings.py against a real redis-server."""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.utils.redis_server import RedisServer
from workers import jobs
from workers.settings import WorkerSettings, get_settings


@pytest.fixture()
def r(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url.replace("/0", "/3"))
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def test_create_get_update_and_unknown_ids(r: redis.Redis) -> None:
    record, created = jobs.create_job(r, job_id="forecast-a", kind="forecast", steps=20,
                                      input_path=Path("/data/inputs/forecast-a"), model_version="abc")
    assert created is True
    assert record.status == "accepted" and record.progress == 0 and record.attempts == 0
    assert record.created is not None and record.created.endswith("Z")
    assert jobs.get_job(r, job_id="forecast-a") == record
    again, created_again = jobs.create_job(r, job_id="forecast-a", kind="forecast", steps=5,
                                           input_path="other", model_version="zzz")
    assert created_again is False and again == record  # the existing record, unchanged
    assert jobs.get_job(r, job_id="nope") is None
    with pytest.raises(jobs.JobNotFoundError):
        jobs.update_job(r, job_id="nope", status="running")
    updated = jobs.update_job(r, job_id="forecast-a", status="successful", progress=100,
                              products={"netcdf": "/p/forecast.nc", "png": {"6": "/p/lead_006.png"}},
                              timings={"total": 1.5})
    assert updated.status == "successful" and updated.progress == 100
    assert updated.products == {"netcdf": "/p/forecast.nc", "png": {"6": "/p/lead_006.png"}}
    assert updated.steps == 20 and updated.model_version == "abc"  # untouched fields kept
    assert updated.updated >= record.updated
    assert jobs.get_job(r, job_id="forecast-a") == updated
    assert updated.to_dict()["timings"] == {"total": 1.5}


def test_bad_fields_are_rejected(r: redis.Redis) -> None:
    jobs.create_job(r, job_id="j", kind="forecast", steps=1, input_path=None, model_version=None)
    with pytest.raises(ValueError, match="unknown job fields"):
        jobs.update_job(r, job_id="j", colour="red")
    with pytest.raises(ValueError, match="status must be one of"):
        jobs.update_job(r, job_id="j", status="pending")
    with pytest.raises(ValueError, match="progress"):
        jobs.update_job(r, job_id="j", progress=101)
    with pytest.raises(ValueError, match="kind must be one of"):
        jobs.create_job(r, job_id="k", kind="batch", steps=1, input_path=None, model_version=None)
    assert jobs.get_job(r, job_id="k") is None


def test_list_jobs_newest_first_by_kind_with_paging(r: redis.Redis) -> None:
    for index in range(5):
        kind = "nowcast" if index % 2 else "forecast"
        jobs.create_job(r, job_id=f"job-{index}", kind=kind, steps=1, input_path=None, model_version=None)
    records, total = jobs.list_jobs(r)
    assert total == 5 and [rec.job_id for rec in records] == ["job-4", "job-3", "job-2", "job-1", "job-0"]
    records, total = jobs.list_jobs(r, kind="nowcast")
    assert total == 2 and [rec.job_id for rec in records] == ["job-3", "job-1"]
    records, total = jobs.list_jobs(r, limit=2, offset=1)
    assert total == 5 and [rec.job_id for rec in records] == ["job-3", "job-2"]
    assert jobs.list_jobs(r, limit=0) == ([], 5)


def test_latest_nowcast_is_by_slot(r: redis.Redis) -> None:
    for slot in ("2026-03-01T12:06:00Z", "2026-03-01T12:00:00Z", "2026-03-01T12:12:00Z"):
        job_id = f"nowcast-{slot}"
        jobs.create_job(r, job_id=job_id, kind="nowcast", steps=20, input_path=None, model_version=None,
                        slot=slot)
        status = "failed" if slot.startswith("2026-03-01T12:12") else "successful"
        jobs.update_job(r, job_id=job_id, status=status)
    assert jobs.latest_job(r, kind="nowcast").slot == "2026-03-01T12:06:00Z"
    assert jobs.latest_job(r, kind="forecast") is None


def test_concurrent_creates_make_exactly_one_job(r: redis.Redis, redis_server: RedisServer) -> None:
    results: list[bool] = []

    def submit() -> None:
        client = redis.Redis.from_url(redis_server.url.replace("/0", "/3"))
        results.append(jobs.create_job(client, job_id="race", kind="forecast", steps=1, input_path=None,
                                       model_version=None)[1])
        client.close()

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True]
    assert jobs.list_jobs(r)[1] == 1


def test_attempts_and_lock(r: redis.Redis) -> None:
    jobs.create_job(r, job_id="j", kind="nowcast", steps=1, input_path=None, model_version=None)
    assert [jobs.increment_attempts(r, job_id="j") for _ in range(3)] == [1, 2, 3]
    assert jobs.get_job(r, job_id="j").attempts == 3
    assert jobs.acquire_lock(r, job_id="j", owner="a", ttl_s=30) is True
    assert jobs.acquire_lock(r, job_id="j", owner="b", ttl_s=30) is False
    assert jobs.release_lock(r, job_id="j", owner="b") is False  # never another owner's lock
    assert jobs.lock_owner(r, job_id="j") == "a"
    assert jobs.steal_lock(r, job_id="j", expected_owner="x", owner="b", ttl_s=30) is False
    assert jobs.steal_lock(r, job_id="j", expected_owner="a", owner="b", ttl_s=30) is True
    assert jobs.lock_owner(r, job_id="j") == "b"
    assert 0 < r.ttl("nowcast:lock:j") <= 30
    assert jobs.release_lock(r, job_id="j", owner="b") is True
    assert jobs.lock_owner(r, job_id="j") is None


def test_ids_are_deterministic(tmp_path: Path) -> None:
    slot = dt.datetime(2026, 3, 1, 12, 6, tzinfo=dt.UTC)
    assert jobs.nowcast_job_id(slot) == "nowcast-20260301T1206Z"
    assert jobs.nowcast_job_id(slot.replace(tzinfo=None)) == "nowcast-20260301T1206Z"
    plus_one = dt.timezone(dt.timedelta(hours=1))
    assert jobs.nowcast_job_id(dt.datetime(2026, 3, 1, 13, 6, tzinfo=plus_one)) == "nowcast-20260301T1206Z"
    a = jobs.forecast_job_id("f" * 64, "m1", 20)
    assert a == jobs.forecast_job_id("f" * 64, "m1", 20) and a.startswith("forecast-") and len(a) == 41
    assert len({a, jobs.forecast_job_id("f" * 64, "m2", 20), jobs.forecast_job_id("f" * 64, "m1", 10),
                jobs.forecast_job_id("e" * 64, "m1", 20)}) == 4
    checkpoint = tmp_path / "c.pt"
    checkpoint.write_bytes(b"weights")
    assert jobs.model_version(checkpoint) == hashlib.sha256(b"weights").hexdigest()
    assert jobs.model_version(tmp_path / "absent.pt") == jobs.NO_CHECKPOINT


def test_settings_defaults_environment_and_limits(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NOWCAST_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("NOWCAST_LEAD_STEPS", "12")
    get_settings.cache_clear()
    try:
        settings = get_settings()
        assert settings.feed_dir == tmp_path / "feed"
        assert settings.product_dir("nowcast-x") == tmp_path / "products" / "nowcast-x"
        assert settings.lead_steps == 12 and settings.input_scans == 10 and settings.timestep_minutes == 6
        assert settings.checkpoint.name == "radar_lagrangian.pt"
        assert get_settings() is settings
    finally:
        get_settings.cache_clear()
    with pytest.raises(ValueError, match="task_soft_time_limit_s < task_time_limit_s < visibility_timeout_s"):
        WorkerSettings(task_soft_time_limit_s=200, task_time_limit_s=180)
    with pytest.raises(ValueError, match="task_soft_time_limit_s < task_time_limit_s < visibility_timeout_s"):
        WorkerSettings(task_time_limit_s=1800, visibility_timeout_s=1800)
    with pytest.raises(ValueError, match="must divide 60"):
        WorkerSettings(timestep_minutes=7)
    with pytest.raises(ValueError, match="latency_offset_minutes"):
        WorkerSettings(latency_offset_minutes=6)


def test_public_message_hides_server_paths() -> None:
    # The message a failed job showed in the viewer: the server's data directory, verbatim.
    assert jobs.public_message("/srv/nowcast/var/inputs/forecast-1a2b: file not found") == (
        "forecast-1a2b: file not found")
    assert jobs.public_message("internal error: OSError: /srv/var/products/x/forecast.nc is gone") == (
        "internal error: OSError: forecast.nc is gone")
    # Not paths: rain-rate units, URLs and the API's own resources stay as they are.
    for kept in ("12 mm/h", "see https://example.org/a/b", "poll /jobs/forecast-1/results"):
        assert jobs.public_message(kept) == kept
