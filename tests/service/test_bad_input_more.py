"""Inputs an attacker or a broken feed sends: each answers 4xx problem+json with a reason, leaves
nothing behind, and never reaches a worker."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient

from service.settings import ApiSettings
from tests.service.builders import scan_times, write_sequence, write_single_file
from tests.service.test_forecast import _assert_problem, _files, _json_body
from tests.service.test_forecast import nothing_left as _nothing_left
from workers import jobs

nothing_left = _nothing_left  # the fixture: no job, no queued task, no file left after each test

DEEP = ("[" * 1000 + "]" * 1000).encode()


@pytest.mark.parametrize("depth", [1000, 100_000, 40])
@pytest.mark.parametrize("path", ["/forecast", "/processes/nowcast/execution"])
def test_deeply_nested_json_is_a_422(client: TestClient, auth: dict, path: str, depth: int,
                                     nothing_left: None) -> None:
    body = ("[" * depth + "]" * depth).encode()
    response = client.post(path, content=body, headers={**auth, "Content-Type": "application/json"})
    problem = _assert_problem(response, 422, "json-too-deep", field="body")
    assert f"nests {depth} levels" in problem["detail"]


def test_brackets_inside_strings_do_not_count_as_nesting(client: TestClient, auth: dict, nothing_left: None) -> None:
    body = json.dumps({**_json_body(), "dtype": "[" * 5000}).encode()
    response = client.post("/forecast", content=body, headers={**auth, "Content-Type": "application/json"})
    _assert_problem(response, 422, "invalid-request", field="dtype")


@pytest.mark.parametrize("scan_time", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00%2B01:00"])
def test_scan_time_past_the_datetime_range_is_a_422_without_a_key(client: TestClient, scan_time: str) -> None:
    _assert_problem(client.get(f"/nowcasts/{scan_time}"), 422, "invalid-scan-time", field="scan_time")


@pytest.mark.parametrize("stamp", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+01:00", "0900-01-01T00:00:00Z"])
def test_json_times_past_the_range_are_a_422(client: TestClient, auth: dict, stamp: str, nothing_left: None) -> None:
    body = _json_body()
    body["times"][0] = stamp
    problem = _assert_problem(client.post("/forecast", json=body, headers=auth), 422, "invalid-request")
    assert problem["field"] == "times"


def test_scan_times_in_a_file_outside_the_plausible_years(client: TestClient, auth: dict, tmp_path: Path,
                                                          nothing_left: None) -> None:
    import datetime as dt

    start = dt.datetime(2200, 12, 31, 23, 30, tzinfo=dt.UTC)
    path = write_single_file(tmp_path / "future.nc", count=10, times=scan_times(10, start=start))
    problem = _assert_problem(client.post("/forecast", files=_files([path]), headers=auth), 422,
                              "time-out-of-range", file="future.nc")
    assert "2201" in problem["detail"]


def _bomb(path: Path, scans: int, side: int) -> Path:
    """``scans`` zero fields of side x side in one zlib-compressed file: tiny on disk, huge decoded."""
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("time", scans)
        ds.createDimension("y", side)
        ds.createDimension("x", side)
        time = ds.createVariable("time", "i8", ("time",))
        time.units = "seconds since 1970-01-01 00:00:00"
        time[:] = 1_767_268_800 + 360 * np.arange(scans)
        ds.createVariable("y", "f8", ("y",))[:] = np.arange(side) * 1000.0
        ds.createVariable("x", "f8", ("x",))[:] = np.arange(side) * 1000.0
        var = ds.createVariable("reflectivity", "f4", ("time", "y", "x"), zlib=True, complevel=9,
                                chunksizes=(1, side, side))
        var.units = "dBZ"
        for t in range(scans):
            var[t] = np.zeros((side, side), dtype=np.float32)
    return path


def test_decompression_bomb_is_refused_from_the_header(client: TestClient, auth: dict, tmp_path: Path,
                                                       nothing_left: None) -> None:
    bomb = _bomb(tmp_path / "bomb.nc", scans=10, side=2000)  # 160 MB decoded, ~0.2 MB on disk
    assert bomb.stat().st_size < 1_000_000
    tracemalloc.start()
    try:
        response = client.post("/forecast", files=_files([bomb]), headers=auth)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    problem = _assert_problem(response, 422, "grid-too-large", file="bomb.nc")
    assert "2000x2000" in problem["detail"]
    assert peak < 20_000_000, f"{peak / 1e6:.0f} MB allocated: the data was decoded before the size check"


def test_too_many_scans_per_request(client: TestClient, auth: dict, settings: ApiSettings, tmp_path: Path,
                                    nothing_left: None) -> None:
    many = settings.max_scans + 1
    body = _json_body(count=many, height=1, width=1)
    body["times"] = [t.isoformat() for t in scan_times(many)]
    problem = _assert_problem(client.post("/forecast", json=body, headers=auth), 422, "too-many-scans",
                              field="frames")
    assert f"at most {settings.max_scans}" in problem["detail"]
    path = write_single_file(tmp_path / "long.nc", count=many, height=2, width=2)
    _assert_problem(client.post("/forecast", files=_files([path]), headers=auth), 422, "too-many-scans",
                    file="long.nc")


def test_a_hundred_thousand_tiny_frames(client: TestClient, auth: dict, nothing_left: None) -> None:
    body = {"frames": [[[1.0]]] * 100_000, "shape": [100_000, 1, 1], "timestep_minutes": 6, "units": "dBZ"}
    _assert_problem(client.post("/forecast", json=body, headers=auth), 422, "too-many-scans", field="frames")


@pytest.mark.parametrize("value", [500.0, 1e30, -1e30, 3e38, -41.0])
def test_implausible_reflectivity_in_json(client: TestClient, auth: dict, value: float, nothing_left: None) -> None:
    body = _json_body()
    body["frames"][2][1][3] = value
    problem = _assert_problem(client.post("/forecast", json=body, headers=auth), 422, "implausible-value",
                              field="frames")
    assert "-40..90 dBZ" in problem["detail"] and "1 value(s)" in problem["detail"]


@pytest.mark.parametrize("value", [np.inf, -np.inf, 3e38, 500.0])
def test_implausible_reflectivity_in_netcdf(client: TestClient, auth: dict, tmp_path: Path, value: float,
                                            nothing_left: None) -> None:
    values = np.full((10, 16, 20), 10.0, dtype=np.float32)
    values[4, 3, 2] = value
    path = write_single_file(tmp_path / "odd.nc", values=values)
    problem = _assert_problem(client.post("/forecast", files=_files([path]), headers=auth), 422,
                              "implausible-value", file="odd.nc")
    assert "[4, 3, 2]" in problem["detail"]


def test_implausible_rain_rates(client: TestClient, auth: dict, tmp_path: Path, nothing_left: None) -> None:
    body = _json_body(units="mm/h")
    body["frames"] = np.clip(np.asarray(body["frames"]), 0, None).tolist()
    body["frames"][0][0][0] = 5000.0  # 82 dBZ under Marshall-Palmer: only the rain-rate bound catches it
    problem = _assert_problem(client.post("/forecast", json=body, headers=auth), 422, "implausible-value",
                              field="frames")
    assert "1000 mm/h" in problem["detail"]
    values = np.full((10, 16, 20), 2.0, dtype=np.float32)
    values[1, 1, 1] = 1500.0
    path = write_single_file(tmp_path / "rain.nc", variable="rainfall_rate", units="mm h-1", values=values)
    _assert_problem(client.post("/forecast", files=_files([path]), headers=auth), 422, "implausible-value",
                    file="rain.nc")


@pytest.mark.parametrize("axis", ["nan", "constant", "zigzag"])
def test_json_grid_axes_must_be_finite_and_strictly_monotonic(client: TestClient, auth: dict, axis: str,
                                                              nothing_left: None) -> None:
    body = _json_body()  # 6 x 7 frames
    x = {"nan": "[NaN, NaN, NaN, NaN, NaN, NaN, NaN]", "constant": json.dumps([5.0] * 7),
         "zigzag": json.dumps([0.0, 1.0, 2.0, 1.5, 3.0, 4.0, 5.0])}[axis]
    grid = f'{{"x": {x}, "y": {json.dumps([float(i) for i in range(6)])}}}'
    text = json.dumps(body)[:-1] + f', "grid": {grid}}}'  # NaN is not JSON, but Python's parser takes it
    response = client.post("/forecast", content=text, headers={**auth, "Content-Type": "application/json"})
    problem = _assert_problem(response, 422, "invalid-request", field="grid.x")
    assert ("NaN" in problem["detail"]) == (axis == "nan")


def test_netcdf_axis_that_is_not_monotonic(client: TestClient, auth: dict, tmp_path: Path,
                                           nothing_left: None) -> None:
    path = write_single_file(tmp_path / "flat.nc")
    with netCDF4.Dataset(path, "a") as ds:
        ds["x"][:] = np.zeros(20)
    problem = _assert_problem(client.post("/forecast", files=_files([path]), headers=auth), 422,
                              "bad-grid-axis", file="flat.nc")
    assert "'x' is not strictly monotonic" in problem["detail"]


def test_grid_mismatch_and_duplicate_name_the_bad_file(client: TestClient, auth: dict, tmp_path: Path,
                                                       nothing_left: None) -> None:
    paths = write_sequence(tmp_path / "scans", count=6)
    odd = write_sequence(tmp_path / "odd", count=1, width=21, times=[scan_times(7)[6]])[0]
    odd = odd.rename(tmp_path / "odd" / "zz_wider.nc")
    problem = _assert_problem(client.post("/forecast", files=_files([*paths, odd]), headers=auth), 422,
                              "grid-mismatch", file="zz_wider.nc")
    assert problem["detail"].startswith("zz_wider.nc")
    copy = tmp_path / "zz_again.nc"
    copy.write_bytes(paths[2].read_bytes())
    problem = _assert_problem(client.post("/forecast", files=_files([*paths, copy]), headers=auth), 422,
                              "duplicate-scan")
    assert problem["file"] in {"zz_again.nc", paths[2].name} and problem["detail"].startswith(problem["file"])


@pytest.mark.parametrize("steps", ["\u0663", " +3 ", "3 ", "+3", "3.0"])
def test_multipart_steps_must_be_plain_ascii_digits(client: TestClient, auth: dict, tmp_path: Path, steps: str,
                                                     nothing_left: None) -> None:
    paths = write_sequence(tmp_path / "scans", count=4)
    _assert_problem(client.post("/forecast", files=_files(paths), data={"steps": steps}, headers=auth), 422,
                    "invalid-steps", field="steps")


@pytest.mark.parametrize("steps", [True, 3.0, "3"])
def test_json_steps_must_be_a_json_integer(client: TestClient, auth: dict, steps: object, nothing_left: None) -> None:
    _assert_problem(client.post("/forecast", json=_json_body(steps=steps), headers=auth), 422, "invalid-steps",
                    field="steps")


def test_empty_frames_are_refused_and_the_schema_says_so(client: TestClient, auth: dict, nothing_left: None) -> None:
    for frames in ([], [[]], [[[]]]):
        body = {**_json_body(), "frames": frames, "times": None}
        _assert_problem(client.post("/forecast", json=body, headers=auth), 422, "invalid-request")
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    frames = schemas["ForecastJSONRequest"]["properties"]["frames"]
    assert frames["minItems"] == 1 and frames["items"]["minItems"] == 1
    assert frames["items"]["items"]["minItems"] == 1
    shape = schemas["ForecastJSONResult"]["properties"]["shape"]
    assert "prefixItems" not in json.dumps(shape) and shape["minItems"] == shape["maxItems"] == 3


def test_options_and_405_list_every_method(client: TestClient, store: redis.Redis) -> None:
    jobs.create_job(store, job_id="forecast-x", kind="forecast", steps=3, input_path=None, model_version="v")
    options = client.options("/jobs/forecast-x")
    assert options.status_code == 204
    assert options.headers["allow"] == "GET, DELETE, OPTIONS"
    put = client.put("/jobs/forecast-x")
    assert put.status_code == 405 and put.headers["allow"] == "GET, DELETE, OPTIONS"
    assert put.headers["content-type"] == "application/problem+json"
    assert client.options("/forecast").headers["allow"] == "POST, OPTIONS"
