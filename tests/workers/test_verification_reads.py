"""The sweep reads a product's leads as their scans arrive (the lean reader) and checks each scan's grid."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import redis

from model.io import netcdf as radar_io
from tests.utils.redis_server import RedisServer
from tests.workers.conftest import FEED_START, blob_field, write_blob_feed
from tests.workers.verification_builders import direct_skill, make_product, shifted
from workers import skill_store, verification
from workers.settings import WorkerSettings

SLOT = FEED_START + dt.timedelta(minutes=30)  # 12:30; leads 6, 12, 18 min valid 12:36 .. 12:48
LEADS = 3


@pytest.fixture()
def setup(private_redis: RedisServer, tmp_path: Path) -> Iterator[tuple[WorkerSettings, redis.Redis]]:
    r = redis.Redis.from_url(private_redis.url)
    settings = WorkerSettings(redis_url=private_redis.url, data_dir=tmp_path, verification_grace_minutes=30)
    write_blob_feed(settings.feed_dir, FEED_START, 9)  # 12:00 .. 12:48
    yield settings, r
    r.close()


def truth() -> np.ndarray:
    return blob_field(6 + LEADS)[6:]  # the scans at 12:36, 12:42, 12:48


def after(minutes: float) -> dt.datetime:
    return SLOT + dt.timedelta(minutes=minutes)


def test_a_scan_on_other_coordinates_is_missing_not_scored(setup: tuple[WorkerSettings, redis.Redis]) -> None:
    settings, r = setup
    with netCDF4.Dataset(settings.feed_dir / "scan_20260301T1242Z.nc", "a") as ds:
        ds.variables["x"][:] = ds.variables["x"][:] + 5000.0  # same shape, 5 km east
    record = make_product(settings, r, slot=SLOT, stream="model", dbz=shifted(truth(), 1), source="predrnn")
    summary = verification.sweep(settings, r, now=after(20))
    assert summary["leads"] == {"scored": 2, "missing": 1, "fallback": 0, "waiting": 0}
    stored = skill_store.read_record(r, job_id=record.job_id)
    assert stored is not None and stored.complete
    assert stored.leads[12]["status"] == "missing" and "sums" not in stored.leads[12]
    assert stored.leads[12]["reason"] == "scan grid differs from the product's: coordinate x values differ"
    assert stored.leads[6]["status"] == stored.leads[18]["status"] == "scored"


def test_leads_are_read_as_their_scans_arrive(setup: tuple[WorkerSettings, redis.Redis]) -> None:
    """A bad frame at lead 18 does not stop leads 6 and 12, read alone; once its scan is in, it is read and refused."""
    settings, r = setup
    (settings.feed_dir / "scan_20260301T1248Z.nc").unlink()
    forecast = shifted(truth(), 1)
    forecast[2, 4, 4] = 150.0  # not weather: read_scans refuses the whole product for it
    record = make_product(settings, r, slot=SLOT, stream="model", dbz=forecast, source="predrnn")
    product = Path(record.products["netcdf"])
    with pytest.raises(radar_io.ImplausibleValueError):
        radar_io.read_scans(product)
    first = verification.sweep(settings, r, now=after(20))
    assert first["leads"] == {"scored": 2, "missing": 0, "fallback": 0, "waiting": 1}
    stored = skill_store.read_record(r, job_id=record.job_id)
    assert stored is not None and sorted(stored.leads) == [6, 12] and not stored.complete
    # The sums of leads 6 and 12 are those of SkillScores on the same frames, written by the project's writer.
    grid = radar_io.read_scans(settings.feed_dir / "scan_20260301T1200Z.nc").grid
    clean = radar_io.write_forecast(settings.data_dir / "clean.nc", shifted(truth(), 1), reference_time=SLOT,
                                    lead_minutes=[6.0, 12.0, 18.0], grid=grid, model="test", model_version="test",
                                    checkpoint_sha256="", source="predrnn", input_times=[SLOT])
    expected = direct_skill(clean, settings.feed_dir, [6, 12]).compute()
    merged = skill_store.skill_of(stored.leads[6], verification.THRESHOLDS, verification.SCALES).merge(
        skill_store.skill_of(stored.leads[12], verification.THRESHOLDS, verification.SCALES))
    assert merged.compute()["contingency"] == expected["contingency"]
    assert merged.compute()["fss"] == expected["fss"]
    write_blob_feed(settings.feed_dir, FEED_START, 9)  # the 12:48 scan arrives
    second = verification.sweep(settings, r, now=after(21))
    assert second["leads"] == {"scored": 0, "missing": 0, "fallback": 0, "waiting": 1}  # unreadable: tried again
    stored = skill_store.read_record(r, job_id=record.job_id)
    assert stored is not None and sorted(stored.leads) == [6, 12] and not stored.complete


def test_the_lean_and_the_xarray_scan_cache_agree(setup: tuple[WorkerSettings, redis.Redis]) -> None:
    settings, _ = setup
    scans = {radar_io.scan_time_from_name(path): path for path in sorted(settings.feed_dir.glob("scan_*.nc"))}
    lean = verification.ScanCache(scans, settings.timestep_minutes)  # type: ignore[arg-type]
    reference = verification.ScanCache(scans, settings.timestep_minutes, lean=False)  # type: ignore[arg-type]
    for moment in scans:
        assert moment is not None
        frame, expected = lean.get(moment), reference.get(moment)
        assert isinstance(frame, np.ndarray) and isinstance(expected, np.ndarray)
        assert frame.tobytes() == expected.tobytes() and frame.dtype == expected.dtype
        assert lean.grid(moment).same_as(reference.grid(moment)) is None
