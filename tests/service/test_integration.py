"""End to end over real processes: uvicorn serving the API, a prefork ``celery worker``, redis-server.

Submit a netCDF sequence over HTTP, poll the job as a client would, fetch the forecast as netCDF,
JSON and PNG and check their contents against each other and against the input.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import xarray as xr
from PIL import Image

from tests.service.builders import write_sequence
from tests.service.conftest import API_KEY
from tests.utils.api_process import start_api, stop_api
from tests.utils.redis_server import free_port
from tests.utils.worker_process import WorkerProcess

pytestmark = pytest.mark.integration

SETTINGS_ENV = {
    "NOWCAST_INPUT_SCANS": "4",
    "NOWCAST_LEAD_STEPS": "3",
    "NOWCAST_MAX_GRID": "64",
    "NOWCAST_QUICKLOOKS": "true",
    "NOWCAST_WARMUP": "false",
}


@pytest.fixture()
def stack(redis_url: str, tmp_path: Path, tiny_checkpoint: Path) -> Iterator[tuple[str, WorkerProcess]]:
    data_dir = tmp_path / "data"
    env = {**SETTINGS_ENV, "NOWCAST_CHECKPOINT": str(tiny_checkpoint)}
    worker = WorkerProcess(redis_url=redis_url, data_dir=data_dir, env=env, queues="gpu,cpu").start()
    port = free_port()
    api_env = {**os.environ, **env, "NOWCAST_REDIS_URL": redis_url, "NOWCAST_DATA_DIR": str(data_dir),
               "NOWCAST_API_KEYS": API_KEY, "NOWCAST_READINESS_CACHE_SECONDS": "0"}
    try:
        api = start_api(api_env, port, tmp_path / "uvicorn.log")
    except RuntimeError:
        worker.stop()
        raise
    try:
        yield f"http://127.0.0.1:{port}", worker
    finally:
        stop_api(api)
        worker.stop()


def test_submit_poll_and_fetch_every_representation(stack: tuple[str, WorkerProcess], tmp_path: Path) -> None:
    base, worker = stack
    with httpx.Client(base_url=base, timeout=30) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text

        scans = write_sequence(tmp_path / "scans", count=5)
        files = [("file", (p.name, p.read_bytes(), "application/x-netcdf")) for p in scans]
        submitted = client.post("/forecast", files=files, data={"steps": "3"}, headers={"X-API-Key": API_KEY})
        assert submitted.status_code == 201, submitted.text
        location = submitted.headers["location"]

        deadline = time.monotonic() + 180
        while True:
            status = client.get(location)
            assert status.status_code == 200
            if status.json()["status"] not in ("accepted", "running"):
                break
            assert int(status.headers["retry-after"]) >= 1
            assert time.monotonic() < deadline, worker.log_text()[-3000:]
            time.sleep(0.3)
        info = status.json()
        assert info["status"] == "successful", (info, worker.log_text()[-3000:])
        assert info["progress"] == 100 and info["source"] == "predrnn"
        # 4 input scans (12:06 .. 12:24) drawn as observed PNGs, then 3 lead times.
        assert info["lead_times"] == [-18, -12, -6, 0, 6, 12, 18]
        assert info["reference_time"] == "2026-01-01T12:24:00Z" and info["timestep_minutes"] == 6
        assert info["model"] == "PredRNN-v2" and len(info["model_version"]) == 64

        netcdf = client.get(f"{location}/results")
        assert netcdf.status_code == 200 and netcdf.headers["content-type"] == "application/x-netcdf"
        (tmp_path / "forecast.nc").write_bytes(netcdf.content)
        with xr.open_dataset(tmp_path / "forecast.nc", engine="netcdf4") as ds:
            reflectivity = ds["reflectivity"].values
            assert reflectivity.shape == (3, 16, 20)
            assert list(ds["lead_time"].values) == [6, 12, 18]
            assert str(ds["forecast_reference_time"].values)[:16] == "2026-01-01T12:24"  # the last scan
            assert ds.attrs["source"] == "predrnn" and ds.attrs["Conventions"] == "CF-1.8"
            assert np.isfinite(reflectivity).all() and (reflectivity >= -10).all() and (reflectivity <= 60).all()

        document = client.get(f"{location}/results", headers={"Accept": "application/json"}).json()
        assert document["shape"] == [3, 16, 20] and document["lead_time_minutes"] == [6, 12, 18]
        np.testing.assert_allclose(np.asarray(document["reflectivity"], dtype=np.float64), reflectivity,
                                   atol=0.005)

        png = client.get(f"{location}/results", params={"f": "png", "lead": 12})
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        image = Image.open(io.BytesIO(png.content))
        assert image.format == "PNG" and image.size[0] > 20
        observed = client.get(f"{location}/results", params={"f": "png", "lead": -18})
        assert observed.status_code == 200 and observed.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(observed.content)).size == image.size  # same figure as the forecast

        # The same input again: the existing job, no second run.
        again = client.post("/forecast", files=files, data={"steps": "3"}, headers={"X-API-Key": API_KEY})
        assert again.status_code == 200 and again.headers["location"] == location
        assert client.delete(location, headers={"X-API-Key": API_KEY}).status_code == 409
        metrics = client.get("/metrics").text
        assert 'nowcast_jobs{kind="forecast",state="successful"} 1.0' in metrics
