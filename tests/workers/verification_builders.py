"""Builders for verification tests: real job records in Redis and real product and scan netCDF files."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import redis

from model.io import netcdf as radar_io
from model.verification.metrics import SkillScores
from tests.utils.redis_server import RedisServer
from tests.workers.conftest import FEED_START, write_blob_feed
from workers import jobs
from workers.settings import WorkerSettings
from workers.verification import SCALES, THRESHOLDS


def shifted(dbz: np.ndarray, pixels: int) -> np.ndarray:
    """(L, H, W) moved ``pixels`` columns east, -10 dBZ coming in: a forecast with a position error."""
    out = np.full_like(dbz, -10.0)
    out[..., pixels:] = dbz[..., : dbz.shape[-1] - pixels]
    return out


def make_product(settings: WorkerSettings, r: redis.Redis, *, slot: dt.datetime, stream: str, dbz: np.ndarray,
                 source: str) -> jobs.JobRecord:
    """A successful nowcast job of ``stream`` at ``slot`` whose product holds ``dbz`` (L, H, W) or (M, L, H, W) dBZ."""
    job_id = jobs.nowcast_job_id(slot, stream)
    scans = radar_io.read_scans(sorted(settings.feed_dir.glob("scan_*.nc"))[:1])
    steps = dbz.shape[-3]  # (L, H, W), or (M, L, H, W) for an ensemble product
    jobs.create_job(r, job_id=job_id, kind="nowcast", steps=steps, input_path=str(settings.feed_dir),
                    model_version="test", slot=slot)
    directory = settings.product_dir(job_id)
    directory.mkdir(parents=True, exist_ok=True)
    path = radar_io.write_forecast(directory / "forecast.nc", dbz, reference_time=slot,
                                   lead_minutes=[6.0 * (k + 1) for k in range(steps)], grid=scans.grid,
                                   model="test", model_version="test", checkpoint_sha256="", source=source,
                                   input_times=[slot])
    return jobs.update_job(r, job_id=job_id, status="successful", products={"netcdf": str(path)}, source=source,
                           reference_time=slot.strftime("%Y-%m-%dT%H:%M:%SZ"), timestep_minutes=6)


def direct_skill(product: Path, feed_dir: Path, leads: list[int]) -> SkillScores:
    """SkillScores over the given leads (minutes) of one product, straight from the files."""
    forecast = radar_io.read_scans(product)
    reference = forecast.times[0] - np.timedelta64(6, "m")
    skill = SkillScores.init(1, THRESHOLDS, SCALES)
    for lead in leads:
        valid = (reference + np.timedelta64(lead, "m")).astype("datetime64[s]").astype(dt.datetime)
        scan = radar_io.read_scans(feed_dir / f"scan_{valid:%Y%m%dT%H%M}Z.nc")
        one = SkillScores.init(1, THRESHOLDS, SCALES)
        one.accum(scan.dbz[None, :1], forecast.dbz[None, lead // 6 - 1 : lead // 6])
        skill = skill.merge(one)
    return skill


def verification_setup(redis_server: RedisServer, tmp_path: Path, db: int
                       ) -> Iterator[tuple[WorkerSettings, redis.Redis]]:
    """A verification test's settings and its own Redis database, over a feed of 9 scans (12:00 .. 12:48)."""
    r = redis.Redis.from_url(redis_server.url.replace("/0", f"/{db}"))
    r.flushdb()
    settings = WorkerSettings(redis_url=redis_server.url, data_dir=tmp_path, verification_grace_minutes=30)
    write_blob_feed(settings.feed_dir, FEED_START, 9)
    yield settings, r
    r.flushdb()
    r.close()
