"""An ensemble product through the app: the mean, a member and a probability as field, GeoTIFF and JSON.

The product is a real one, written by ``model.io.netcdf.write_forecast`` from (M, L, H, W) members on
the workers' UTM 32N test grid, with a deterministic product beside it for the 409s.
"""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest
import redis
import xarray as xr
from fastapi.testclient import TestClient

from model.io import netcdf as radar_io
from model.members import ensemble_mean, exceedance_probability
from service.settings import ApiSettings
from tests.workers.conftest import FEED_START, write_blob_feed
from workers import jobs

JOB_ID = "forecast-ensemble"
DETERMINISTIC_ID = "forecast-deterministic"
LEADS = [6, 12]
MEMBERS = 4
SEED = 11


def _finish(store: redis.Redis, settings: ApiSettings, job_id: str, dbz: np.ndarray,
            sequence: radar_io.RadarSequence, members: int) -> None:
    product_dir = settings.product_dir(job_id)
    product_dir.mkdir(parents=True)
    netcdf = radar_io.write_forecast(
        product_dir / "forecast.nc", dbz, reference_time=sequence.times[-1], lead_minutes=LEADS, grid=sequence,
        model="PredRNN-v2", model_version="test", checkpoint_sha256="test", source="predrnn",
        input_times=sequence.times, ensemble_seed=SEED, ensemble_perturbation="test")
    observed = radar_io.write_observed(product_dir / "observed.nc", sequence, count=2)
    jobs.create_job(store, job_id=job_id, kind="forecast", steps=2, input_path="/nowhere", model_version="test",
                    members=members, seed=SEED if members > 1 else 0)
    jobs.update_job(store, job_id=job_id, status="successful", progress=100, source="predrnn",
                    products={"netcdf": str(netcdf), "observed": str(observed), "png": {}, "obs_png": {}},
                    reference_time="2026-03-01T12:18:00Z", model="PredRNN-v2", timestep_minutes=6)


@pytest.fixture()
def members(store: redis.Redis, settings: ApiSettings, tmp_path: Path) -> np.ndarray:
    """(M, L, H, W) dBZ: the feed's last frames shifted by a different offset per member."""
    sequence = radar_io.read_scans(write_blob_feed(tmp_path / "feed", FEED_START, 4))
    base = sequence.dbz[-2:]
    dbz = np.stack([base + 6.0 * (m - 1.5) for m in range(MEMBERS)]).astype(np.float32)
    dbz[:, 0, 0, 0] = np.nan  # a no-data cell
    _finish(store, settings, JOB_ID, dbz, sequence, MEMBERS)
    _finish(store, settings, DETERMINISTIC_ID, dbz[0], sequence, 1)
    return dbz


def decode(document: dict) -> np.ndarray:
    """(H, W) values of a field document in its ``units``, south-north flipped back to the product's rows."""
    codes = np.frombuffer(base64.b64decode(document["values"]), dtype=np.uint8)
    codes = codes.reshape(document["height"], document["width"]).astype(np.float64)
    encoding = document["encoding"]
    return np.where(codes == encoding["nodata"], np.nan, encoding["offset"] + codes * encoding["step"])[::-1]


def field(client: TestClient, **params: object) -> dict:
    response = client.get(f"/jobs/{JOB_ID}/results", params={"f": "field", **params})
    assert response.status_code == 200, response.text
    return response.json()


def test_field_of_the_mean_a_member_and_a_probability(client: TestClient, members: np.ndarray) -> None:
    default = field(client, lead=12)
    assert default["quantity"] == "mean" and default["units"] == "dBZ"
    assert default["ensemble"] == {"members": MEMBERS, "seed": SEED, "thresholds_dbz": [20.0, 30.0, 40.0]}
    assert default["encoding"]["offset_dbz"] == default["encoding"]["offset"] == -32.0
    np.testing.assert_allclose(decode(default), ensemble_mean(members)[1], atol=0.25)
    assert field(client, lead=12, quantity="mean")["values"] == default["values"]

    member = field(client, lead=6, quantity="member", member=2)
    assert member["quantity"] == "member" and member["member"] == 2
    np.testing.assert_allclose(decode(member), members[2, 0], atol=0.25)

    probability = field(client, lead=6, quantity="probability", threshold=30)
    assert probability["quantity"] == "probability" and probability["units"] == "1"
    assert probability["threshold_dbz"] == 30.0
    assert probability["encoding"] == {"dtype": "uint8", "offset": 0.0, "step": 0.01, "nodata": 255,
                                       "rows": "north to south", "columns": "west to east"}
    expected = exceedance_probability(members[:, 0], [30.0])[0]
    np.testing.assert_allclose(decode(probability), expected, atol=0.005)
    assert np.isnan(decode(probability)[0, 0]) and np.nanmax(decode(probability)) == 1.0


def test_bad_quantities_name_what_is_available(client: TestClient, members: np.ndarray) -> None:
    cases = [
        (JOB_ID, {"quantity": "probability", "threshold": 25}, 404, "threshold-not-available", "[20.0, 30.0, 40.0]"),
        (JOB_ID, {"quantity": "member", "member": 4}, 404, "member-not-available", "0..3"),
        (JOB_ID, {"quantity": "member", "member": 99}, 422, "invalid-request", "member"),
        (JOB_ID, {"quantity": "probability"}, 422, "missing-threshold", "threshold"),
        (JOB_ID, {"quantity": "member"}, 422, "missing-member", "member"),
        (JOB_ID, {"quantity": "mean", "threshold": 30}, 422, "unexpected-threshold", "probability"),
        (JOB_ID, {"quantity": "spread"}, 422, "invalid-request", "quantity"),
        (JOB_ID, {"quantity": "mean", "lead": 0}, 404, "quantity-not-available", "observed"),
        (DETERMINISTIC_ID, {"quantity": "mean"}, 409, "not-an-ensemble", "deterministic"),
        (DETERMINISTIC_ID, {"quantity": "probability", "threshold": 30}, 409, "not-an-ensemble", "deterministic"),
        (DETERMINISTIC_ID, {"quantity": "member", "member": 0}, 409, "not-an-ensemble", "deterministic"),
    ]
    for job_id, params, status, code, named in cases:
        # JSON is the whole product: lead does not apply to it.
        for f in ("field", "geotiff") + (("json",) if "lead" not in params else ()):
            response = client.get(f"/jobs/{job_id}/results", params={"f": f, **params})
            body = response.json()
            assert (response.status_code, body["code"]) == (status, code), (f, params, body)
            assert named in body["detail"] and body["field"] is not None, body
    png = client.get(f"/jobs/{JOB_ID}/results", params={"f": "netcdf", "quantity": "mean"})
    assert png.status_code == 422 and png.json()["code"] == "quantity-not-available"


def test_deterministic_field_keeps_its_document(client: TestClient, members: np.ndarray) -> None:
    document = client.get(f"/jobs/{DETERMINISTIC_ID}/results", params={"f": "field", "lead": 6}).json()
    assert document["quantity"] == "reflectivity" and document["units"] == "dBZ" and "ensemble" not in document
    assert document["encoding"]["offset_dbz"] == -32.0 and document["encoding"]["step_dbz"] == 0.5
    np.testing.assert_allclose(decode(document), members[0, 0], atol=0.25)


def test_geotiff_per_quantity(client: TestClient, members: np.ndarray, settings: ApiSettings,
                              tmp_path: Path) -> None:
    import rasterio

    expected = {("mean", None): ensemble_mean(members)[0], ("member", 3): members[3, 0],
                ("probability", 40.0): exceedance_probability(members[:, 0], [40.0])[0]}
    names = {("mean", None): "lead_006_mean.tif", ("member", 3): "lead_006_m03.tif",
             ("probability", 40.0): "lead_006_p40.tif"}
    for (quantity, value), wanted in expected.items():
        params: dict[str, object] = {"f": "geotiff", "lead": 6, "quantity": quantity}
        if quantity == "member":
            params["member"] = value
        if quantity == "probability":
            params["threshold"] = value
        response = client.get(f"/jobs/{JOB_ID}/results", params=params)
        assert response.status_code == 200, response.text
        assert (settings.product_dir(JOB_ID) / names[(quantity, value)]).is_file()
        path = tmp_path / names[(quantity, value)]
        path.write_bytes(response.content)
        with rasterio.open(path) as tif:
            assert tif.crs.to_epsg() == 32632 and tif.dtypes[0] == "float32"
            band = tif.read(1)[::-1]
        np.testing.assert_array_equal(np.isnan(band), np.isnan(wanted))
        np.testing.assert_allclose(band[~np.isnan(band)], wanted[~np.isnan(wanted)], atol=1e-5)
    default = client.get(f"/jobs/{JOB_ID}/results", params={"f": "geotiff", "lead": 6})
    assert default.content == (settings.product_dir(JOB_ID) / "lead_006_mean.tif").read_bytes()


def test_json_of_the_mean_with_probabilities_and_of_a_member(client: TestClient, members: np.ndarray) -> None:
    body = client.get(f"/jobs/{JOB_ID}/results", params={"f": "json"}).json()
    assert body["quantity"] == "mean" and body["shape"] == list(members.shape[1:])
    assert body["ensemble"]["members"] == MEMBERS and body["probability_units"] == "1"
    assert sorted(body["probability"]) == ["20", "30", "40"]
    mean = np.array(body["reflectivity"], dtype=np.float64)
    np.testing.assert_allclose(mean, ensemble_mean(members), atol=0.006)
    p = {t: np.array(body["probability"][t], dtype=np.float64) for t in ("20", "30", "40")}
    assert np.nanmin(p["20"]) >= 0 and np.nanmax(p["20"]) <= 1
    assert (p["20"][1:] >= p["30"][1:]).all() and (p["30"][1:] >= p["40"][1:]).all()
    member = client.get(f"/jobs/{JOB_ID}/results", params={"f": "json", "quantity": "member", "member": 1}).json()
    assert member["member"] == 1 and "probability" not in member
    np.testing.assert_allclose(np.array(member["reflectivity"], dtype=np.float64), members[1], atol=0.006)
    with xr.open_dataset(Path(client.app.state.settings.product_dir(JOB_ID)) / "forecast.nc") as ds:
        rain = ds["rainfall_rate"].values[1]
    np.testing.assert_allclose(np.array(member["rainfall_rate"], dtype=np.float64), rain, atol=0.006)
    one = client.get(f"/jobs/{JOB_ID}/results",
                     params={"f": "json", "quantity": "probability", "threshold": 30}).json()
    assert list(one["probability"]) == ["30"] and one["probability"]["30"] == body["probability"]["30"]


def test_nowcast_routes_serve_the_same_quantities(client: TestClient, members: np.ndarray, store: redis.Redis,
                                                  settings: ApiSettings) -> None:
    import datetime as dt

    slot = dt.datetime(2026, 3, 1, 12, 18, tzinfo=dt.UTC)
    job_id = jobs.nowcast_job_id(slot)
    netcdf = settings.product_dir(JOB_ID) / "forecast.nc"
    jobs.create_job(store, job_id=job_id, kind="nowcast", steps=2, input_path=None, model_version="test",
                    slot=slot, members=MEMBERS, seed=SEED)
    jobs.update_job(store, job_id=job_id, status="successful", progress=100, products={"netcdf": str(netcdf)})
    params = {"f": "field", "lead": 6, "quantity": "probability", "threshold": 20}
    one = client.get("/nowcasts/20260301T1218Z", params=params)
    latest = client.get("/nowcasts/latest", params=params)
    assert one.status_code == latest.status_code == 200, (one.text, latest.text)
    expected = exceedance_probability(members[:, 0], [20.0])[0]
    np.testing.assert_allclose(decode(one.json()), expected, atol=0.005)
    assert latest.json()["values"] == one.json()["values"] and one.json()["jobID"] == job_id
    assert client.get("/nowcasts", params={"limit": 1}).json()["jobs"][0]["ensemble"]["members"] == MEMBERS


def test_domain_routes_serve_the_same_quantities(members: np.ndarray, store: redis.Redis, settings: ApiSettings,
                                                 tmp_path: Path) -> None:
    import datetime as dt

    from service.main import create_app

    domains = tmp_path / "domains.toml"
    domains.write_text('default = "national"\n\n[[domain]]\nid = "national"\nfeed_dir = "feeds/national"\n\n'
                       '[[domain]]\nid = "coast"\nfeed_dir = "feeds/coast"\n')
    job_id = "nowcast-coast-20260301T1218Z"
    netcdf = settings.product_dir(JOB_ID) / "forecast.nc"
    jobs.create_job(store, job_id=job_id, kind="nowcast", steps=2, input_path=None, model_version="test",
                    slot=dt.datetime(2026, 3, 1, 12, 18, tzinfo=dt.UTC), members=MEMBERS, seed=SEED,
                    domain="coast", domain_index=True)
    jobs.update_job(store, job_id=job_id, status="successful", progress=100, products={"netcdf": str(netcdf)})
    with TestClient(create_app(settings.model_copy(update={"domains": domains}))) as client:
        member = client.get("/domains/coast/nowcasts/20260301T1218Z",
                            params={"f": "field", "lead": 12, "quantity": "member", "member": 3})
        assert member.status_code == 200, member.text
        np.testing.assert_allclose(decode(member.json()), members[3, 1], atol=0.25)
        missing = client.get("/domains/coast/nowcasts/20260301T1218Z",
                             params={"f": "field", "quantity": "probability", "threshold": 35})
        assert missing.status_code == 404 and missing.json()["code"] == "threshold-not-available"
