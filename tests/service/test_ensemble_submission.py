"""POST /forecast and the OGC execution with ``members`` and ``seed``: the range checks, the job they make."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from model.members import MAX_MEMBERS
from tests.service.builders import write_sequence
from tests.service.test_forecast import _assert_problem, _files, _json_body, _queued
from tests.service.test_forecast import nothing_left as _nothing_left
from workers import jobs

nothing_left = _nothing_left  # the fixture: no job, no queued task, no file left after each test

BAD_MEMBERS = [0, 1000, "x", -1, 1.5, True, MAX_MEMBERS + 1]
BAD_SEEDS = [-1, 2**63, "x", 1.5, True]


def _reason(problem: dict, name: str) -> None:
    """The problem names the field and its allowed range."""
    assert problem["field"] == name
    wanted = f"from 1 to {MAX_MEMBERS}" if name == "members" else "from 0 to 2^63-1"
    assert name in problem["detail"] and wanted in problem["detail"], problem["detail"]


@pytest.mark.parametrize("name,value", [("members", v) for v in BAD_MEMBERS] + [("seed", v) for v in BAD_SEEDS])
def test_bad_members_or_seed_in_json_and_ogc_execution(client: TestClient, auth: dict, name: str, value: object,
                                                       nothing_left: None) -> None:
    body = _json_body(**{name: value})
    _reason(_assert_problem(client.post("/forecast", json=body, headers=auth), 422, f"invalid-{name}"), name)
    response = client.post("/processes/nowcast/execution", json={"inputs": body}, headers=auth)
    problem = _assert_problem(response, 422, f"invalid-{name}")
    assert problem["field"] == f"inputs.{name}" and "from" in problem["detail"]


@pytest.mark.parametrize("name,value", [("members", v) for v in (0, 1000, "x", -1, "1.5", "true", "51", "")]
                         + [("seed", v) for v in ("-1", str(2**63), "x", "1.5", " 3")])
def test_bad_members_or_seed_in_a_form(client: TestClient, auth: dict, tmp_path: Path, name: str, value: object,
                                       nothing_left: None) -> None:
    paths = write_sequence(tmp_path / "scans", count=4)
    response = client.post("/forecast", files=_files(paths), data={name: str(value)}, headers=auth)
    _reason(_assert_problem(response, 422, f"invalid-{name}"), name)


def test_an_ensemble_job_records_members_and_seed(client: TestClient, auth: dict, tmp_path: Path,
                                                  store: redis.Redis) -> None:
    paths = write_sequence(tmp_path / "scans", count=4)
    response = client.post("/forecast", files=_files(paths), data={"members": "4", "seed": "7"}, headers=auth)
    assert response.status_code == 201, response.text
    info = response.json()
    assert info["ensemble"] == {"members": 4, "seed": 7, "thresholds_dbz": [20.0, 30.0, 40.0]}
    record = jobs.get_job(store, job_id=info["jobID"])
    assert record is not None and (record.members, record.seed) == (4, 7)
    assert [m["headers"]["id"] for m in _queued(store)] == [info["jobID"]]
    # Another seed is another forecast; the same seed is the same job; the JSON field gives the same job.
    other = client.post("/forecast", files=_files(paths), data={"members": "4", "seed": "8"}, headers=auth).json()
    assert other["jobID"] != info["jobID"]
    again = client.post("/forecast", files=_files(paths), data={"members": "4", "seed": "7"}, headers=auth)
    assert again.status_code == 200 and again.json()["jobID"] == info["jobID"]
    assert client.get(f"/jobs/{info['jobID']}").json()["ensemble"]["members"] == 4
    # One member is the deterministic job whatever its seed: the id it always had, no ensemble.
    plain = client.post("/forecast", files=_files(paths), headers=auth).json()
    seeded = client.post("/forecast", files=_files(paths), data={"members": "1", "seed": "5"}, headers=auth)
    assert seeded.json()["jobID"] == plain["jobID"] and plain["ensemble"] is None
    assert jobs.get_job(store, job_id=plain["jobID"]).seed == 0


def test_ogc_execution_and_json_take_members(client: TestClient, auth: dict, store: redis.Redis) -> None:
    body = _json_body(members=3, seed=2**63 - 1)
    created = client.post("/processes/nowcast/execution", json={"inputs": body}, headers=auth)
    assert created.status_code == 201, created.text
    assert created.json()["ensemble"]["seed"] == 2**63 - 1
    same = client.post("/forecast", json=body, headers=auth)
    assert same.status_code == 200 and same.json()["jobID"] == created.json()["jobID"]
    record = jobs.get_job(store, job_id=created.json()["jobID"])
    assert record is not None and (record.members, record.seed) == (3, 2**63 - 1)


def test_the_api_describes_members_and_seed(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    form = spec["paths"]["/forecast"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["properties"]["members"]["maximum"] == MAX_MEMBERS and form["properties"]["seed"]["minimum"] == 0
    request = spec["components"]["schemas"]["ForecastJSONRequest"]["properties"]
    assert request["members"]["maximum"] == MAX_MEMBERS and request["seed"]["maximum"] == 2**63 - 1
    inputs = client.get("/processes/nowcast").json()["inputs"]
    assert inputs["members"]["schema"] == {"type": "integer", "minimum": 1, "maximum": MAX_MEMBERS, "default": 1}
    assert inputs["seed"]["schema"]["maximum"] == 2**63 - 1
    parameters = {p["name"] for p in spec["paths"]["/jobs/{jobID}/results"]["get"]["parameters"]}
    assert {"quantity", "threshold", "member"} <= parameters
