"""Owners own their jobs: only the submitting key dismisses (and, where reads need a key, reads or
lists) a job, two keys never share one, and a dismissed input can be submitted again."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from service.main import create_app
from service.settings import ApiSettings
from tests.service.builders import write_sequence
from tests.service.conftest import OTHER_KEY
from tests.service.test_forecast import _files
from workers import jobs

OTHER = {"X-API-Key": OTHER_KEY}


def _queued_ids(store: redis.Redis) -> list[str]:
    return [json.loads(raw)["headers"]["id"] for raw in store.lrange("gpu", 0, -1)]


def _submit(client: TestClient, headers: dict, paths: list[Path]) -> dict:
    response = client.post("/forecast", files=_files(paths), data={"steps": "3"}, headers=headers)
    assert response.status_code in (200, 201), response.text
    return {"status_code": response.status_code, **response.json()}


@pytest.fixture()
def keyed(settings: ApiSettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings.model_copy(update={"read_requires_key": True}))) as client:
        yield client


def test_another_key_cannot_dismiss_a_job(client: TestClient, auth: dict, store: redis.Redis,
                                          tmp_path: Path) -> None:
    job = _submit(client, auth, write_sequence(tmp_path / "scans", count=4))
    refused = client.delete(f"/jobs/{job['jobID']}", headers=OTHER)
    assert refused.status_code == 403 and refused.json()["code"] == "not-owner"
    assert jobs.get_job(store, job_id=job["jobID"]).status == "accepted"
    assert _queued_ids(store) == [job["jobID"]]
    assert client.delete(f"/jobs/{job['jobID']}", headers=auth).json()["status"] == "dismissed"


def test_two_keys_sending_the_same_scans_get_separate_jobs(client: TestClient, auth: dict,
                                                           tmp_path: Path) -> None:
    paths = write_sequence(tmp_path / "scans", count=4)
    mine, theirs = _submit(client, auth, paths), _submit(client, OTHER, paths)
    assert mine["status_code"] == theirs["status_code"] == 201
    assert mine["jobID"] != theirs["jobID"]
    assert _submit(client, auth, paths)["jobID"] == mine["jobID"]  # the same key still deduplicates


def test_a_dismissed_input_can_be_submitted_again(client: TestClient, auth: dict, store: redis.Redis,
                                                  tmp_path: Path) -> None:
    paths = write_sequence(tmp_path / "scans", count=4)
    job_id = _submit(client, auth, paths)["jobID"]
    client.delete(f"/jobs/{job_id}", headers=auth)
    store.delete("gpu")  # as a worker would: the revoked message is dropped
    again = _submit(client, auth, paths)
    assert again["status_code"] == 201 and again["jobID"] == job_id and again["status"] == "accepted"
    record = jobs.get_job(store, job_id=job_id)
    assert record.requeues == 1 and record.attempts == 0 and record.finished is None
    # A fresh task id: workers drop messages whose id was revoked, so the old one cannot be reused.
    assert _queued_ids(store) == [record.task_id] and record.task_id == f"{job_id}-r1"
    assert Path(record.input_path).is_dir()
    dismissed = client.delete(f"/jobs/{job_id}", headers=auth)
    assert dismissed.json()["status"] == "dismissed"


def test_keyed_reads_see_only_their_own_jobs_and_the_schedule(keyed: TestClient, auth: dict, store: redis.Redis,
                                                               tmp_path: Path) -> None:
    mine = _submit(keyed, auth, write_sequence(tmp_path / "a", count=4))["jobID"]
    theirs = _submit(keyed, OTHER, write_sequence(tmp_path / "b", count=4, seed=1))["jobID"]
    jobs.create_job(store, job_id="nowcast-20260101T1200Z", kind="nowcast", steps=3, input_path=None,
                    model_version="v")
    for path in (f"/jobs/{theirs}", f"/jobs/{theirs}/results"):
        hidden = keyed.get(path, headers=auth)
        assert hidden.status_code == 404 and hidden.json()["code"] == "job-not-found", path
    assert keyed.delete(f"/jobs/{theirs}", headers=auth).status_code == 404
    assert keyed.get(f"/jobs/{mine}", headers=auth).status_code == 200
    assert keyed.get("/jobs/nowcast-20260101T1200Z", headers=auth).status_code == 200
    listing = keyed.get("/jobs", headers=auth).json()
    assert [j["jobID"] for j in listing["jobs"]] == ["nowcast-20260101T1200Z", mine]
    assert listing["numberMatched"] == 2
    only_forecasts = keyed.get("/jobs?kind=forecast", headers=OTHER).json()
    assert [j["jobID"] for j in only_forecasts["jobs"]] == [theirs]
    page = keyed.get("/jobs?limit=1&offset=1", headers=auth).json()
    assert [j["jobID"] for j in page["jobs"]] == [mine]


def test_open_reads_list_every_job(client: TestClient, auth: dict, tmp_path: Path) -> None:
    _submit(client, auth, write_sequence(tmp_path / "a", count=4))
    _submit(client, OTHER, write_sequence(tmp_path / "b", count=4, seed=1))
    assert client.get("/jobs").json()["numberMatched"] == 2
