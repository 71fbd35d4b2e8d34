"""Ensemble forecast jobs in process: the record's members and seed, real Redis, a real model and files."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
import xarray as xr

from tests.utils.redis_server import RedisServer
from tests.workers.conftest import FEED_START, GRID, write_blob_feed
from workers import jobs, tasks
from workers.runtime import run_forecast
from workers.settings import WorkerSettings


@pytest.fixture()
def r(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url.replace("/0", "/10"))
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def run(settings: WorkerSettings, r: redis.Redis, job_id: str, files: list[Path], **ensemble: int) -> dict:
    jobs.create_job(r, job_id=job_id, kind="forecast", steps=3, input_path=str(files[0].parent),
                    model_version="test", **ensemble)
    record = jobs.get_job(r, job_id=job_id)
    assert record is not None
    return tasks._forecast_and_write(settings, r, job_id=job_id, steps=3, files=files, forecaster=run_forecast,
                                     members=record.members, seed=record.seed)


def test_a_job_records_members_runs_an_ensemble_and_members_one_is_unchanged(
        r: redis.Redis, tmp_path: Path, tiny_checkpoint: Path) -> None:
    settings = WorkerSettings(data_dir=tmp_path, checkpoint=tiny_checkpoint, device="cpu", precision="fp32",
                              input_scans=4, quicklooks=True)
    files = write_blob_feed(tmp_path / "scans", FEED_START, 4)
    plain = run(settings, r, "plain", files)
    again = run(settings, r, "again", files, members=1, seed=99)  # one member: the seed changes nothing
    first = run(settings, r, "ens-a", files, members=5, seed=7)
    second = run(settings, r, "ens-b", files, members=5, seed=7)
    other = run(settings, r, "ens-c", files, members=5, seed=8)
    assert all(result["status"] == "successful" for result in (plain, again, first, second, other))
    with xr.open_dataset(plain["output"]) as a, xr.open_dataset(again["output"]) as b:
        assert a["reflectivity"].dims == ("time", "y", "x") and "ensemble_members" not in a.attrs
        assert a["reflectivity"].values.tobytes() == b["reflectivity"].values.tobytes()
        deterministic = a["reflectivity"].values
    with xr.open_dataset(first["output"]) as a, xr.open_dataset(second["output"]) as b, \
            xr.open_dataset(other["output"]) as c:
        assert a["reflectivity"].shape == (5, 3, *GRID)
        assert (a.attrs["ensemble_members"], a.attrs["ensemble_seed"]) == (5, 7)
        np.testing.assert_array_equal(a["reflectivity"].values, b["reflectivity"].values)
        assert not np.array_equal(a["reflectivity"].values, c["reflectivity"].values)
        assert not np.array_equal(a["reflectivity_ensemble_mean"].values, deterministic)
        probability = a["probability_of_reflectivity_above_threshold"].values
        assert probability.min() >= 0 and probability.max() <= 1 and np.all(np.diff(probability, axis=0) <= 0)
    record = jobs.get_job(r, job_id="ens-a")
    assert record is not None and (record.members, record.seed) == (5, 7)
    assert sorted(record.products["png"]) == ["12", "18", "6"]  # quicklooks of the ensemble mean
    assert "ensemble_perturb" in record.timings


def test_old_records_bad_members_and_the_slot_seed(r: redis.Redis, tmp_path: Path) -> None:
    # A record written before ensembles (no members or seed field) reads as the deterministic forecast.
    r.hset("nowcast:job:old", mapping={"job_id": '"old"', "kind": '"forecast"', "steps": "3"})
    old = jobs.get_job(r, job_id="old")
    assert old is not None and (old.members, old.seed) == (1, 0)
    settings = WorkerSettings(data_dir=tmp_path, input_scans=4)
    files = write_blob_feed(tmp_path / "scans", FEED_START, 4)
    for members, words in ((0, "members must be from 1 to 50, got 0"), (51, "got 51")):
        with pytest.raises(tasks.PermanentJobError, match=words):
            tasks._forecast_and_write(settings, r, job_id="old", steps=3, files=files, members=members)
    with pytest.raises(tasks.PermanentJobError, match="seed must be"):
        tasks._forecast_and_write(settings, r, job_id="old", steps=3, files=files, members=2, seed=-1)
    slot = dt.datetime(2026, 3, 1, 12, 30, tzinfo=dt.UTC)
    assert tasks.slot_seed(slot) == int(slot.timestamp()) // 60 == tasks.slot_seed(slot.astimezone())
    assert tasks.slot_seed(slot + dt.timedelta(minutes=6)) == tasks.slot_seed(slot) + 6
    # A deterministic job keeps the id it always had; an ensemble's members and seed are part of its id.
    assert jobs.forecast_job_id("sha", "v", 3) == jobs.forecast_job_id("sha", "v", 3, members=1, seed=5)
    assert len({jobs.forecast_job_id("sha", "v", 3, members=m, seed=s) for m, s in ((1, 0), (5, 0), (5, 1))}) == 3
    assert WorkerSettings().members == 1
