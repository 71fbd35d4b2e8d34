"""POST /forecast: multipart netCDF and JSON submissions, deduplication, and every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient

from service.settings import ApiSettings
from tests.service.builders import echo_field, scan_times, write_sequence, write_single_file
from workers import jobs


def _files(paths: list[Path]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("file", (p.name, p.read_bytes(), "application/x-netcdf")) for p in paths]


def _json_body(count: int = 5, height: int = 6, width: int = 7, **overrides: object) -> dict:
    frames = echo_field(count, height, width).round(2).tolist()
    body: dict = {
        "frames": frames,
        "shape": [count, height, width],
        "dtype": "float32",
        "timestep_minutes": 6,
        "units": "dBZ",
        "times": [t.isoformat() for t in scan_times(count)],
        "steps": 3,
    }
    body.update(overrides)
    return body


def _queued(store: redis.Redis, queue: str = "gpu") -> list[dict]:
    """The Celery messages waiting in a queue, decoded (what a worker would receive)."""
    return [json.loads(raw) for raw in store.lrange(queue, 0, -1)]


def _leftovers(settings: ApiSettings) -> list[Path]:
    inputs = settings.inputs_dir
    return sorted(inputs.iterdir()) if inputs.exists() else []


def test_multipart_scans_create_a_job_store_the_input_and_enqueue_by_name(
    client: TestClient, auth: dict, settings: ApiSettings, store: redis.Redis, tmp_path: Path
) -> None:
    paths = write_sequence(tmp_path / "scans", count=6)
    response = client.post("/forecast", files=_files(paths), data={"steps": "3"}, headers=auth)
    assert response.status_code == 201, response.text
    body = response.json()
    job_id = body["jobID"]
    assert job_id.startswith("forecast-")
    assert response.headers["location"] == f"/jobs/{job_id}"
    assert body["status"] == "accepted" and body["progress"] == 0 and body["steps"] == 3
    assert body["created"] is not None and body["finished"] is None
    assert {link["rel"] for link in body["links"]} == {"self", "http://www.opengis.net/def/rel/ogc/1.0/results"}
    record = jobs.get_job(store, job_id=job_id)
    assert record is not None and record.kind == "forecast" and record.owner is not None
    assert record.model_version == jobs.model_version(settings.checkpoint)
    stored = sorted(p.name for p in Path(record.input_path).iterdir())
    assert Path(record.input_path) == settings.inputs_dir / job_id and len(stored) == 6
    [message] = _queued(store)
    assert message["headers"]["task"] == "workers.tasks.forecast"
    assert message["headers"]["id"] == job_id
    assert message["headers"]["argsrepr"] == repr([job_id, record.input_path, 3])
    assert [p.name for p in _leftovers(settings)] == [job_id]  # no staging directory left


def test_same_input_returns_the_existing_job_whatever_its_packaging(
    client: TestClient, auth: dict, store: redis.Redis, tmp_path: Path
) -> None:
    paths = write_sequence(tmp_path / "scans", count=5, grid_mapping=None)
    first = client.post("/forecast", files=_files(paths), data={"steps": "3"}, headers=auth)
    assert first.status_code == 201
    # The same scans as one file with a time axis: same decoded content, same job.
    single = write_single_file(tmp_path / "all.nc", count=5)
    second = client.post("/forecast", files=_files([single]), data={"steps": "3"}, headers=auth)
    assert second.status_code == 200, second.text
    assert second.json()["jobID"] == first.json()["jobID"]
    assert second.headers["location"] == first.headers["location"]
    assert len(_queued(store)) == 1  # one run only
    # Another horizon is another job.
    third = client.post("/forecast", files=_files(paths), data={"steps": "4"}, headers=auth)
    assert third.status_code == 201 and third.json()["jobID"] != first.json()["jobID"]


def test_json_frames_are_accepted_and_match_the_netcdf_job(
    client: TestClient, auth: dict, settings: ApiSettings, store: redis.Redis
) -> None:
    response = client.post("/forecast", json=_json_body(), headers=auth)
    assert response.status_code == 201, response.text
    record = jobs.get_job(store, job_id=response.json()["jobID"])
    assert record is not None and record.steps == 3
    from model.io.netcdf import read_scans

    stored = read_scans(Path(record.input_path))
    assert stored.dbz.shape == (5, 6, 7)
    np.testing.assert_allclose(stored.dbz, np.asarray(_json_body()["frames"], dtype=np.float32))
    again = client.post("/forecast", json=_json_body(), headers=auth)
    assert again.status_code == 200 and again.json()["jobID"] == record.job_id


def test_json_rain_rate_and_nulls_are_converted(client: TestClient, auth: dict, store: redis.Redis) -> None:
    body = _json_body(units="mm/h")
    body["frames"] = [[[1.0] * 7 for _ in range(6)] for _ in range(5)]
    body["frames"][0][0][0] = None
    body["frames"][1][2][3] = 0.0
    response = client.post("/forecast", json=body, headers=auth)
    assert response.status_code == 201, response.text
    from model.io.netcdf import read_scans

    dbz = read_scans(Path(jobs.get_job(store, job_id=response.json()["jobID"]).input_path)).dbz
    assert np.isnan(dbz[0, 0, 0])
    assert dbz[1, 2, 3] == pytest.approx(-10.0)  # no rain: the floor, not -inf
    assert dbz[2, 0, 0] == pytest.approx(10 * np.log10(200.0), abs=1e-4)  # 1 mm/h = 23.01 dBZ


def test_default_steps_is_lead_steps(client: TestClient, auth: dict, tmp_path: Path) -> None:
    paths = write_sequence(tmp_path / "scans", count=4)
    response = client.post("/forecast", files=_files(paths), headers=auth)
    assert response.status_code == 201 and response.json()["steps"] == 3


# --------------------------------------------------------------------------------------- bad inputs


def _assert_problem(response, status: int, code: str, *, field: str | None = None,
                    file: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == code and problem["type"] == f"urn:nowcast:problem:{code}"
    assert problem["status"] == status and problem["detail"]
    if field is not None:
        assert problem["field"] == field
    if file is not None:
        assert problem["file"] == file and file in problem["detail"]
    return problem


@pytest.fixture()
def nothing_left(settings: ApiSettings, store: redis.Redis):
    """After the test: no job, no queued task, no file under inputs/."""
    yield
    assert jobs.list_jobs(store)[1] == 0
    assert store.llen("gpu") == 0
    assert _leftovers(settings) == []


def test_not_netcdf(client: TestClient, auth: dict, tmp_path: Path, nothing_left: None) -> None:
    paths = write_sequence(tmp_path / "scans", count=4)
    files = _files(paths) + [("file", ("notes.txt", b"hello, not a radar scan", "text/plain"))]
    problem = _assert_problem(client.post("/forecast", files=files, headers=auth), 422, "not-netcdf",
                              field="file", file="notes.txt")
    assert str(tmp_path) not in problem["detail"]


def test_netcdf_without_radar_variable(client: TestClient, auth: dict, tmp_path: Path, nothing_left: None) -> None:
    path = write_single_file(tmp_path / "temperature.nc", count=4, variable="temperature", units="K")
    problem = _assert_problem(client.post("/forecast", files=_files([path]), headers=auth), 422,
                              "missing-variable", field="file", file="temperature.nc")
    assert "no radar variable" in problem["detail"]
    assert "inputs" not in problem["detail"]  # the staging path is not leaked


def test_too_few_scans(client: TestClient, auth: dict, tmp_path: Path, nothing_left: None) -> None:
    paths = write_sequence(tmp_path / "scans", count=3)
    problem = _assert_problem(client.post("/forecast", files=_files(paths), headers=auth), 422, "too-few-scans",
                              field="file")
    assert "3 scan(s), at least 4 needed" in problem["detail"]


def test_uneven_cadence(client: TestClient, auth: dict, tmp_path: Path, nothing_left: None) -> None:
    times = scan_times(5)
    times[3] = times[3].replace(minute=times[3].minute + 2)  # 12:20 instead of 12:18
    path = write_single_file(tmp_path / "uneven.nc", count=5, times=times)
    problem = _assert_problem(client.post("/forecast", files=_files([path]), headers=auth), 422,
                              "uneven-cadence", field="file", file="uneven.nc")
    assert "the cadence is 6 min" in problem["detail"]


def test_nan_only_scan(client: TestClient, auth: dict, tmp_path: Path, nothing_left: None) -> None:
    values = echo_field(5, 16, 20)
    values[2] = np.nan
    path = write_single_file(tmp_path / "holes.nc", count=5, values=values)
    problem = _assert_problem(client.post("/forecast", files=_files([path]), headers=auth), 422,
                              "all-nan-scan", field="file", file="holes.nc")
    assert "2026-01-01T12:12Z" in problem["detail"]


def test_grid_above_the_maximum(client: TestClient, auth: dict, tmp_path: Path, nothing_left: None) -> None:
    path = write_single_file(tmp_path / "big.nc", count=4, height=8, width=65)
    problem = _assert_problem(client.post("/forecast", files=_files([path]), headers=auth), 422,
                              "grid-too-large", file="big.nc")
    assert "8x65 exceeds the maximum side 64" in problem["detail"]
    json_body = _json_body(count=4, height=2, width=65)
    _assert_problem(client.post("/forecast", json=json_body, headers=auth), 422, "grid-too-large", field="shape")


def test_ragged_json(client: TestClient, auth: dict, nothing_left: None) -> None:
    body = _json_body()
    body["frames"][3][2] = body["frames"][3][2][:-1]
    problem = _assert_problem(client.post("/forecast", json=body, headers=auth), 422, "invalid-request",
                              field="frames")
    assert "frames[3][2] has 6 values, frames[0][0] has 7 (ragged array)" in problem["detail"]
    mismatch = _json_body(shape=[5, 6, 8])
    _assert_problem(client.post("/forecast", json=mismatch, headers=auth), 422, "invalid-request", field="shape")


@pytest.mark.parametrize("steps", ["-1", "0", "13", "100000000", "three", "2.5"])
def test_negative_zero_huge_or_non_integer_steps(
    client: TestClient, auth: dict, tmp_path: Path, steps: str, nothing_left: None
) -> None:
    paths = write_sequence(tmp_path / "scans", count=4)
    problem = _assert_problem(client.post("/forecast", files=_files(paths), data={"steps": steps}, headers=auth),
                              422, "invalid-steps", field="steps")
    assert steps in problem["detail"]


@pytest.mark.parametrize("steps", [-3, 0, 13, 10**12])
def test_bad_steps_in_json(client: TestClient, auth: dict, steps: int, nothing_left: None) -> None:
    _assert_problem(client.post("/forecast", json=_json_body(steps=steps), headers=auth), 422,
                    "invalid-steps", field="steps")


def test_json_with_wrong_cadence_or_infinite_values(client: TestClient, auth: dict, nothing_left: None) -> None:
    _assert_problem(client.post("/forecast", json=_json_body(timestep_minutes=5), headers=auth), 422,
                    "uneven-cadence", field="timestep_minutes")
    body = _json_body()
    body["times"][2] = "2026-01-01T12:13:00Z"
    problem = _assert_problem(client.post("/forecast", json=body, headers=auth), 422, "uneven-cadence")
    assert problem["field"] == "frames[2]"
    body = json.dumps(_json_body()).replace("[[[", "[[[Infinity, ", 1).replace(
        '"shape": [5, 6, 7]', '"shape": [5, 6, 8]')
    response = client.post("/forecast", content=body, headers={**auth, "Content-Type": "application/json"})
    _assert_problem(response, 422, "invalid-request", field="frames")


def test_missing_or_wrong_key(client: TestClient, tmp_path: Path, nothing_left: None) -> None:
    paths = write_sequence(tmp_path / "scans", count=4)
    missing = client.post("/forecast", files=_files(paths))
    _assert_problem(missing, 401, "api-key-missing", field="X-API-Key")
    assert missing.headers["www-authenticate"] == 'ApiKey header="X-API-Key"'
    _assert_problem(client.post("/forecast", files=_files(paths), headers={"X-API-Key": "wrong-key-0123456789"}),
                    401, "api-key-invalid", field="X-API-Key")


def test_unsupported_content_type(client: TestClient, auth: dict, nothing_left: None) -> None:
    response = client.post("/forecast", content=b"frames", headers={**auth, "Content-Type": "text/plain"})
    _assert_problem(response, 415, "unsupported-media-type", field="Content-Type")
    _assert_problem(client.post("/forecast", content=b"x", headers=auth), 415, "unsupported-media-type")


def test_body_too_large(settings: ApiSettings, auth: dict, tmp_path: Path, nothing_left: None) -> None:
    from service.main import create_app

    small = settings.model_copy(update={"max_upload_mb": 1, "max_json_request_bytes": 1000})
    with TestClient(create_app(small)) as client:
        big = [("file", ("big.nc", b"CDF\x01" + b"\0" * (1024 * 1024), "application/x-netcdf"))]
        problem = _assert_problem(client.post("/forecast", files=big, headers=auth), 413, "body-too-large")
        assert "1048576" in problem["detail"]

        # Without Content-Length (chunked), the limit is enforced while the body streams in.
        def chunks():
            for _ in range(20):
                yield b"x" * 65536

        chunked = client.post("/forecast", content=chunks(), headers={**auth, "Content-Type": "application/json"})
        _assert_problem(chunked, 413, "body-too-large")
        _assert_problem(client.post("/forecast", json=_json_body(), headers=auth), 413, "body-too-large")


def test_form_without_file_or_with_unknown_fields(client: TestClient, auth: dict, nothing_left: None) -> None:
    _assert_problem(client.post("/forecast", data={"steps": "3"}, files=[("other", ("a", b"", "text/plain"))],
                                headers=auth), 422, "unknown-field", field="other")
    # A multipart part without a filename is a text field, not a file.
    text_part = client.post("/forecast", files=[("file", (None, b"text"))], headers=auth)
    _assert_problem(text_part, 422, "not-a-file", field="file")
    _assert_problem(client.post("/forecast", files=[("steps", (None, b"3"))], headers=auth), 422, "missing-file",
                    field="file")
    # A form-urlencoded body is not multipart: 415.
    _assert_problem(client.post("/forecast", data={"file": "text"}, headers=auth), 415, "unsupported-media-type")


def test_json_all_nan_frame_is_named(client: TestClient, auth: dict, nothing_left: None) -> None:
    body = _json_body()
    body["frames"][3] = [[None] * 7 for _ in range(6)]
    problem = _assert_problem(client.post("/forecast", json=body, headers=auth), 422, "all-nan-scan",
                              field="frames[3]")
    assert problem["detail"].startswith("frames: scan at 2026-01-01T12:18Z has no valid data")


def test_concurrent_submissions_are_all_accepted(client: TestClient, auth: dict, store: redis.Redis) -> None:
    """netCDF I/O is serialised in the API: concurrent uploads once crashed the process (SIGBUS)."""
    from concurrent.futures import ThreadPoolExecutor

    def submit(seed: int) -> int:
        body = _json_body()
        body["frames"] = echo_field(5, 6, 7, seed=seed).round(2).tolist()
        return client.post("/forecast", json=body, headers=auth).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(submit, range(16)))
    assert codes == [201] * 16
    assert jobs.list_jobs(store)[1] == 16 and store.llen("gpu") == 16
