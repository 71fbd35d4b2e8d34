"""A product on the map: the JSON's grid mapping and rain rate, the viewer's field, the GeoTIFF.

The product is a real one, written as the workers write it (forecast.nc and observed.nc from a
feed on a UTM 32N grid), and every representation is fetched through the app.
"""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import redis
import xarray as xr
from fastapi.testclient import TestClient

from model.io import netcdf as radar_io
from model.io.units import dbz_to_rainrate
from service.settings import ApiSettings
from tests.workers.conftest import FEED_START, write_blob_feed
from workers import jobs

JOB_ID = "forecast-map"
LEADS = [6, 12]


@pytest.fixture()
def product(store: redis.Redis, settings: ApiSettings, tmp_path: Path) -> radar_io.RadarSequence:
    sequence = radar_io.read_scans(write_blob_feed(tmp_path / "feed", FEED_START, 4))
    product_dir = settings.product_dir(JOB_ID)
    product_dir.mkdir(parents=True)
    forecast = sequence.dbz[-2:].copy()
    forecast[0, 0, 0] = np.nan  # a no-data cell
    netcdf = radar_io.write_forecast(
        product_dir / "forecast.nc", forecast, reference_time=sequence.times[-1], lead_minutes=LEADS,
        grid=sequence, model="PredRNN-v2", model_version="test", checkpoint_sha256="test", source="predrnn",
        input_times=sequence.times)
    observed = radar_io.write_observed(product_dir / "observed.nc", sequence, count=3)
    jobs.create_job(store, job_id=JOB_ID, kind="forecast", steps=2, input_path="/nowhere", model_version="test")
    jobs.update_job(store, job_id=JOB_ID, status="successful", progress=100, source="predrnn",
                    products={"netcdf": str(netcdf), "observed": str(observed), "png": {}, "obs_png": {}},
                    reference_time="2026-03-01T12:18:00Z", model="PredRNN-v2", timestep_minutes=6)
    return sequence


def test_json_carries_the_grid_mapping_and_the_rain_rate(client: TestClient, product: radar_io.RadarSequence) -> None:
    body = client.get(f"/jobs/{JOB_ID}/results", params={"f": "json"}).json()
    mapping = body["grid_mapping"]
    assert mapping["name"] == "crs" and mapping["attributes"] == product.grid.grid_mapping
    assert mapping["proj4"] == "+proj=utm +zone=32 +datum=WGS84 +units=m +no_defs"
    assert "UTM zone 32N" in mapping["crs_wkt"]
    assert body["rainfall_rate_units"] == "mm h-1" and body["rainfall_rate"][0][0][0] is None
    rate = np.array(body["rainfall_rate"][1], dtype=np.float64)
    np.testing.assert_allclose(rate, dbz_to_rainrate(product.dbz[-1]), atol=0.006)


def decode(document: dict) -> np.ndarray:
    codes = np.frombuffer(base64.b64decode(document["values"]), dtype=np.uint8)
    codes = codes.reshape(document["height"], document["width"]).astype(np.float64)
    encoding = document["encoding"]
    return np.where(codes == encoding["nodata"], np.nan, encoding["offset_dbz"] + codes * encoding["step_dbz"])


def test_field_is_the_lead_time_north_up_with_its_projection(
    client: TestClient, product: radar_io.RadarSequence
) -> None:
    response = client.get(f"/jobs/{JOB_ID}/results", params={"f": "field", "lead": 12})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/vnd.nowcast.field+json"
    document = response.json()
    assert document["kind"] == "forecast" and document["valid_time"] == "2026-03-01T12:30:00Z"
    assert (document["height"], document["width"]) == product.dbz.shape[1:]
    # The feed's y axis runs south to north; the field's rows run north to south, as a canvas draws.
    x, y = product.grid.x, product.grid.y
    assert document["extent"] == [x[0] - 500.0, y[0] - 500.0, x[-1] + 500.0, y[-1] + 500.0]
    np.testing.assert_allclose(decode(document), product.dbz[-1][::-1], atol=0.25)
    assert document["grid_mapping"]["proj4"].startswith("+proj=utm +zone=32")
    west, south, east, north = document["lonlat_bounds"]
    assert 8.9 < west < 9.0 < east < 9.5 and 45.0 < south < north < 45.4  # UTM 32N, 500 km E, 5000 km N
    # Observed scans: lead 0 is the newest scan, -12 two scans before; one without data is a 404.
    observed = client.get(f"/jobs/{JOB_ID}/results", params={"f": "field", "lead": -12}).json()
    assert observed["kind"] == "observed" and observed["valid_time"] == "2026-03-01T12:06:00Z"
    np.testing.assert_allclose(decode(observed), product.dbz[-3][::-1], atol=0.25)
    missing = client.get(f"/jobs/{JOB_ID}/results", params={"f": "field", "lead": -18})
    assert missing.status_code == 404 and missing.json()["code"] == "lead-not-available"
    assert missing.json()["status"] == 404


def test_geotiff_opens_in_rasterio_with_crs_and_transform(
    client: TestClient, product: radar_io.RadarSequence, settings: ApiSettings, tmp_path: Path
) -> None:
    import rasterio

    started = dt.datetime.now()
    first = client.get(f"/jobs/{JOB_ID}/results", params={"f": "geotiff", "lead": 6})
    assert first.status_code == 200 and first.headers["content-type"] == "image/tiff; application=geotiff"
    assert (settings.product_dir(JOB_ID) / "lead_006.tif").is_file()  # kept: the next request reads it
    again = client.get(f"/jobs/{JOB_ID}/results", params={"f": "geotiff", "lead": 6})
    assert again.content == first.content and dt.datetime.now() - started < dt.timedelta(seconds=30)
    path = tmp_path / "lead6.tif"
    path.write_bytes(first.content)
    with rasterio.open(path) as tif:
        assert tif.crs.to_epsg() == 32632  # WGS 84 / UTM zone 32N
        x, y = product.grid.x, product.grid.y
        assert tif.transform == rasterio.Affine(1000.0, 0.0, x[0] - 500.0, 0.0, -1000.0, y[-1] + 500.0)
        assert (tif.height, tif.width) == product.dbz.shape[1:] and tif.dtypes[0] == "float32"
        assert tif.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        band = tif.read(1)
    with xr.open_dataset(settings.product_dir(JOB_ID) / "forecast.nc", engine="netcdf4") as ds:
        expected = ds["reflectivity"].values[0][::-1]  # north-up, as every GeoTIFF reader expects
    np.testing.assert_array_equal(np.isnan(band), np.isnan(expected))
    np.testing.assert_allclose(band[~np.isnan(band)], expected[~np.isnan(expected)])
