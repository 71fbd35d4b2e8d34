"""An ensemble forecast end to end: POST /forecast members=4 over HTTP to uvicorn, a prefork Celery worker,
redis-server; then every representation of the ensemble product, checked against the netCDF file."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import xarray as xr

from tests.service.builders import write_sequence
from tests.service.conftest import API_KEY
from tests.service.test_integration import stack as _stack
from tests.utils.worker_process import WorkerProcess

pytestmark = pytest.mark.integration

stack = _stack  # uvicorn + celery worker + the test run's redis-server (tests/service/test_integration.py)
MEMBERS = 4


def _values(document: dict) -> np.ndarray:
    """(H, W) in the document's units, rows back in the product's (south-north) order."""
    codes = np.frombuffer(base64.b64decode(document["values"]), dtype=np.uint8)
    codes = codes.reshape(document["height"], document["width"]).astype(np.float64)
    encoding = document["encoding"]
    return np.where(codes == encoding["nodata"], np.nan, encoding["offset"] + codes * encoding["step"])[::-1]


def test_an_ensemble_job_over_the_real_stack(stack: tuple[str, WorkerProcess], tmp_path: Path) -> None:
    base, worker = stack
    with httpx.Client(base_url=base, timeout=60) as client:
        scans = write_sequence(tmp_path / "scans", count=5)
        files = [("file", (p.name, p.read_bytes(), "application/x-netcdf")) for p in scans]
        submitted = client.post("/forecast", files=files, data={"steps": "3", "members": str(MEMBERS), "seed": "5"},
                                headers={"X-API-Key": API_KEY})
        assert submitted.status_code == 201, submitted.text
        location = submitted.headers["location"]
        deadline = time.monotonic() + 240
        while (info := client.get(location).json())["status"] in ("accepted", "running"):
            assert time.monotonic() < deadline, worker.log_text()[-3000:]
            time.sleep(0.3)
        assert info["status"] == "successful", (info, worker.log_text()[-3000:])
        assert info["ensemble"] == {"members": MEMBERS, "seed": 5, "thresholds_dbz": [20.0, 30.0, 40.0]}

        netcdf = client.get(f"{location}/results", params={"f": "netcdf"})
        assert netcdf.status_code == 200
        (tmp_path / "forecast.nc").write_bytes(netcdf.content)
        with xr.open_dataset(tmp_path / "forecast.nc", engine="netcdf4") as ds:
            members = ds["reflectivity"].values
            mean = ds["reflectivity_ensemble_mean"].values
            probability = ds["probability_of_reflectivity_above_threshold"].values
            assert members.shape == (MEMBERS, 3, 16, 20) and ds.attrs["ensemble_seed"] == 5
        assert not np.allclose(members[0], members[1])  # perturbed members differ

        document = client.get(f"{location}/results", params={"f": "json"}).json()
        assert document["quantity"] == "mean" and document["ensemble"]["members"] == MEMBERS
        np.testing.assert_allclose(np.array(document["reflectivity"], dtype=np.float64), mean, atol=0.006)
        p = np.stack([np.array(document["probability"][t], dtype=np.float64) for t in ("20", "30", "40")])
        assert np.nanmin(p) >= 0 and np.nanmax(p) <= 1
        assert (np.diff(p, axis=0) <= 0).all()  # monotone: a higher threshold is never likelier
        np.testing.assert_allclose(p, probability, atol=0.006)

        fields = {
            "mean": {"quantity": "mean"},
            "p30": {"quantity": "probability", "threshold": 30},
            "member2": {"quantity": "member", "member": 2},
        }
        got = {name: client.get(f"{location}/results", params={"f": "field", "lead": 12, **params})
               for name, params in fields.items()}
        assert all(r.status_code == 200 for r in got.values()), {k: r.text for k, r in got.items()}
        np.testing.assert_allclose(_values(got["mean"].json()), mean[1], atol=0.25)
        np.testing.assert_allclose(_values(got["member2"].json()), members[2, 1], atol=0.25)
        p30 = _values(got["p30"].json())
        assert got["p30"].json()["units"] == "1" and np.nanmin(p30) >= 0 and np.nanmax(p30) <= 1
        np.testing.assert_allclose(p30, probability[1, 1], atol=0.005)

        tiff = client.get(f"{location}/results", params={"f": "geotiff", "lead": 6, "quantity": "probability",
                                                         "threshold": 20})
        assert tiff.status_code == 200 and tiff.headers["content-type"] == "image/tiff; application=geotiff"
        import rasterio

        (tmp_path / "p20.tif").write_bytes(tiff.content)
        with rasterio.open(tmp_path / "p20.tif") as band:
            assert band.dtypes[0] == "float32"
            np.testing.assert_allclose(band.read(1)[::-1], probability[0, 0], atol=1e-6)
