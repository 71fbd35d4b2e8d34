"""The API's memory stays bounded for the largest ensemble it can be asked to serve.

50 members (``model.members.MAX_MEMBERS``) x 2 lead times x 1024 x 1024 (the largest ``max_grid``):
the members alone are 400 MB of float32, so an API that loaded them whole would blow the bound. Two
lead times instead of twenty keep the file small and the test to seconds: the API reads one
(member, lead) or (threshold, lead) chunk per request, so the lead count does not change what one
request holds. The product is written with netCDF4 directly, member by member, in the layout of
``model.io.netcdf.write_forecast`` (mostly no-echo values, zlib: a few MB on disk).

A real uvicorn process serves it; the test reads the process's peak resident set (``VmHWM``) after
start-up and after every request, and requires the growth to stay under ``RSS_BOUND_MB``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import netCDF4
import numpy as np
import pytest
import redis

from model.io import netcdf as radar_io
from model.members import MAX_MEMBERS
from tests.service.conftest import API_KEY
from tests.utils.api_process import start_api, stop_api
from tests.utils.redis_server import free_port
from workers import jobs

pytestmark = pytest.mark.integration

JOB_ID = "forecast-largest-ensemble"
SIDE = 1024
LEADS = (6, 12)
RSS_BOUND_MB = 300  # growth of the API's peak RSS over its start-up peak; the members are 400 MB
UTM_32N = {"grid_mapping_name": "transverse_mercator", "longitude_of_central_meridian": 9.0,
           "latitude_of_projection_origin": 0.0, "scale_factor_at_central_meridian": 0.9996,
           "false_easting": 500000.0, "false_northing": 0.0}


def write_largest_ensemble(path: Path, members: int = MAX_MEMBERS, side: int = SIDE) -> Path:
    """An ensemble product of ``members`` x len(LEADS) x side x side, one (member, lead) at a time."""
    thresholds = radar_io.ENSEMBLE_THRESHOLDS_DBZ
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.setncatts({"Conventions": "CF-1.8", "title": "precipitation nowcast", "source": "predrnn",
                      "ensemble_members": np.int32(members), "ensemble_seed": np.int64(3),
                      "ensemble_perturbation": "test"})
        for name, size in (("realization", members), ("threshold", len(thresholds)), ("time", len(LEADS)),
                           ("y", side), ("x", side)):
            nc.createDimension(name, size)
        crs = nc.createVariable("crs", "i4")
        crs.setncatts(UTM_32N)
        for name, origin in (("x", 500_000.0), ("y", 5_000_000.0)):
            values = origin + 1000.0 * np.arange(side)
            axis = nc.createVariable(name, "f8", (name,))
            axis[:] = values
            axis.setncatts({"units": "m", "standard_name": f"projection_{name}_coordinate"})
        nc.createVariable("realization", "i4", ("realization",))[:] = np.arange(members)
        nc.createVariable("threshold", "f4", ("threshold",))[:] = np.asarray(thresholds, dtype=np.float32)
        time_var = nc.createVariable("time", "i8", ("time",))
        time_var.units = "seconds since 1970-01-01 00:00:00"
        time_var[:] = 1_772_367_480 + 60 * np.asarray(LEADS)
        lead = nc.createVariable("lead_time", "i4", ("time",))
        lead.units = "minutes"
        lead[:] = LEADS
        frame = (1, side, side)
        options = {"zlib": True, "complevel": 1, "shuffle": True, "fill_value": radar_io.FILL_VALUE}
        fields = {}
        for name, dims, chunks in (("reflectivity", ("realization", "time", "y", "x"), (1, *frame)),
                                   ("rainfall_rate", ("realization", "time", "y", "x"), (1, *frame)),
                                   (radar_io.ENSEMBLE_MEAN, ("time", "y", "x"), frame),
                                   (radar_io.PROBABILITY, ("threshold", "time", "y", "x"), (1, *frame))):
            fields[name] = nc.createVariable(name, "f4", dims, chunksizes=chunks, **options)
            fields[name].coordinates = "lead_time"
            fields[name].grid_mapping = "crs"
            fields[name].units = "1" if name == radar_io.PROBABILITY else "dBZ"
        no_echo = np.full((side, side), -10.0, dtype=np.float32)
        yy, xx = np.mgrid[0:side, 0:side]
        for m in range(members):
            for k in range(len(LEADS)):
                storm = no_echo.copy()
                near = (yy - 500 - 3 * m) ** 2 + (xx - 400 - 20 * k) ** 2 < 60**2
                storm[near] = 35.0 + 0.2 * m
                fields["reflectivity"][m, k] = storm
                fields["rainfall_rate"][m, k] = np.where(near, 5.0, 0.0).astype(np.float32)
        for k in range(len(LEADS)):
            fields[radar_io.ENSEMBLE_MEAN][k] = no_echo
            for t in range(len(thresholds)):
                fields[radar_io.PROBABILITY][t, k] = np.zeros((side, side), dtype=np.float32)
    return path


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set size (``VmHWM``), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for pid {pid}")


@pytest.fixture()
def api(redis_url: str, tmp_path: Path) -> Iterator[tuple[str, int]]:
    data_dir = tmp_path / "data"
    product_dir = data_dir / "products" / JOB_ID
    product_dir.mkdir(parents=True)
    netcdf = write_largest_ensemble(product_dir / "forecast.nc")
    store = redis.Redis.from_url(redis_url)
    jobs.create_job(store, job_id=JOB_ID, kind="forecast", steps=len(LEADS), input_path=None, model_version="test",
                    members=MAX_MEMBERS, seed=3)
    jobs.update_job(store, job_id=JOB_ID, status="successful", progress=100, products={"netcdf": str(netcdf)})
    store.close()
    port = free_port()
    env = {**os.environ, "NOWCAST_REDIS_URL": redis_url, "NOWCAST_DATA_DIR": str(data_dir),
           "NOWCAST_API_KEYS": API_KEY, "NOWCAST_MAX_GRID": str(SIDE), "OMP_NUM_THREADS": "1"}
    process = start_api(env, port, tmp_path / "uvicorn.log")
    try:
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        stop_api(process)


def test_the_largest_ensemble_is_served_in_bounded_memory(api: tuple[str, int]) -> None:
    base, pid = api
    results = f"/jobs/{JOB_ID}/results"
    with httpx.Client(base_url=base, timeout=60) as client:
        # Warm: one small request so lazy imports and the first netCDF open count as baseline.
        assert client.get(f"/jobs/{JOB_ID}").json()["ensemble"]["members"] == MAX_MEMBERS
        baseline = peak_rss_mb(pid)
        requests = [
            {"f": "field", "lead": 6},
            {"f": "field", "lead": 12, "quantity": "member", "member": MAX_MEMBERS - 1},
            {"f": "field", "lead": 6, "quantity": "probability", "threshold": 30},
            {"f": "geotiff", "lead": 12, "quantity": "member", "member": 7},
            {"f": "geotiff", "lead": 6, "quantity": "probability", "threshold": 40},
            {"f": "geotiff", "lead": 6},
        ]
        for params in requests:
            response = client.get(results, params=params)
            assert response.status_code == 200, (params, response.text)
            grown = peak_rss_mb(pid) - baseline
            assert grown < RSS_BOUND_MB, (params, grown)
        member = client.get(results, params={"f": "field", "lead": 12, "quantity": "member", "member": 49}).json()
        assert (member["width"], member["height"]) == (SIDE, SIDE) and member["quantity"] == "member"
        for params in ({"f": "json"}, {"f": "json", "quantity": "member", "member": 3},
                       {"f": "json", "quantity": "probability", "threshold": 20}):
            started = time.monotonic()
            refused = client.get(results, params=params)
            # Decided from the shapes: a refusal that had read the members would take seconds, not this.
            assert refused.status_code == 406 and refused.json()["code"] == "json-too-large", refused.text
            assert time.monotonic() - started < 5.0
        grown = peak_rss_mb(pid) - baseline
        assert grown < RSS_BOUND_MB
    logging.getLogger(__name__).info("API peak RSS: start-up %.0f MB, growth over it %.0f MB (bound %d MB)",
                                     baseline, grown, RSS_BOUND_MB)
