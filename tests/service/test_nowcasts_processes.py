"""/nowcasts (slots, latest, one slot) and the OGC API - Processes resources."""

from __future__ import annotations

import datetime as dt

import redis
from fastapi.testclient import TestClient

from service.settings import ApiSettings
from tests.service.builders import OBSERVED_TAG, echo_field, finish_job, png_bytes, scan_times
from workers import jobs


def _slot(store: redis.Redis, when: dt.datetime, status: str = "accepted", message: str = "") -> str:
    job_id = jobs.nowcast_job_id(when)
    jobs.create_job(store, job_id=job_id, kind="nowcast", steps=3, input_path="/feed", model_version="v",
                    slot=when, status=status, message=message)
    return job_id


def test_slots_latest_and_one_slot(client: TestClient, store: redis.Redis, settings: ApiSettings) -> None:
    t0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    assert client.get("/nowcasts/latest").json()["code"] == "no-nowcast"
    ok = _slot(store, t0)
    finish_job(store, job_id=ok, product_dir=settings.product_dir(ok))
    skipped = _slot(store, t0 + dt.timedelta(minutes=6), status="skipped", message="feed stale (newest scan 12:00)")
    slots = client.get("/nowcasts").json()
    assert [(s["jobID"], s["status"]) for s in slots["jobs"]] == [(skipped, "skipped"), (ok, "successful")]
    assert slots["jobs"][0]["message"] == "feed stale (newest scan 12:00)"
    assert slots["jobs"][1]["slot"] == "2026-01-01T12:00:00Z" and slots["numberMatched"] == 2

    latest = client.get("/nowcasts/latest", params={"f": "png", "lead": 18})
    assert latest.status_code == 200 and latest.content == png_bytes(18)
    assert latest.headers["content-location"] == "/nowcasts/20260101T1200Z"
    observed = client.get("/nowcasts/latest", params={"f": "png", "lead": -6})
    assert observed.status_code == 200 and observed.content == png_bytes(OBSERVED_TAG + 6)
    one_slot = client.get("/nowcasts/20260101T1200Z", params={"f": "png", "lead": 0})
    assert one_slot.status_code == 200 and one_slot.content == png_bytes(OBSERVED_TAG)
    assert client.get("/nowcasts/20260101T1200Z", params={"f": "png", "lead": -30}).json()["code"] == (
        "lead-not-available")
    assert slots["jobs"][1]["lead_times"] == [-12, -6, 0, 6, 12, 18]
    assert client.get("/nowcasts/latest").headers["content-type"] == "application/x-netcdf"

    for spelling in ("20260101T1200Z", "2026-01-01T12:00:00Z", "2026-01-01T12:00"):
        as_json = client.get(f"/nowcasts/{spelling}", headers={"Accept": "application/json"})
        assert as_json.status_code == 200 and as_json.json()["jobID"] == ok, spelling
    skipped_product = client.get("/nowcasts/20260101T1206Z")
    assert skipped_product.status_code == 409 and "feed stale" in skipped_product.json()["detail"]
    assert client.get("/nowcasts/20260101T1212Z").json()["code"] == "job-not-found"
    bad = client.get("/nowcasts/yesterday")
    assert bad.status_code == 422 and bad.json()["field"] == "scan_time"


def test_landing_conformance_processes(client: TestClient) -> None:
    landing = client.get("/").json()
    rels = {link["rel"]: link["href"] for link in landing["links"]}
    assert rels["service-desc"] == "/openapi.json" and rels["http://www.opengis.net/def/rel/ogc/1.0/conformance"]
    assert rels["http://www.opengis.net/def/rel/ogc/1.0/processes"] == "/processes"
    conformance = client.get("/conformance").json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/core" in conformance
    processes = client.get("/processes").json()["processes"]
    assert [p["id"] for p in processes] == ["nowcast"]
    description = client.get("/processes/nowcast").json()
    assert set(description["inputs"]) == {"frames", "units", "steps", "members", "seed"}
    assert description["inputs"]["steps"]["schema"]["maximum"] == 12
    assert "async-execute" in description["jobControlOptions"] and "forecast" in description["outputs"]


def test_execute_creates_the_same_job_as_post_forecast(client: TestClient, auth: dict, store: redis.Redis) -> None:
    inputs = {
        "frames": echo_field(4, 5, 6).round(2).tolist(), "shape": [4, 5, 6], "dtype": "float32",
        "timestep_minutes": 6, "units": "dBZ", "times": [t.isoformat() for t in scan_times(4)], "steps": 2,
    }
    assert client.post("/processes/nowcast/execution", json={"inputs": inputs}).status_code == 401
    executed = client.post("/processes/nowcast/execution", json={"inputs": inputs, "response": "document"},
                           headers=auth)
    assert executed.status_code == 201, executed.text
    assert executed.headers["location"] == f"/jobs/{executed.json()['jobID']}"
    forecast = client.post("/forecast", json=inputs, headers=auth)
    assert forecast.status_code == 200 and forecast.json()["jobID"] == executed.json()["jobID"]
    bad = client.post("/processes/nowcast/execution", json={"inputs": {**inputs, "units": "K"}}, headers=auth)
    assert bad.status_code == 422 and bad.json()["field"] == "inputs.units"
    not_json = client.post("/processes/nowcast/execution", content=b"a", headers={**auth, "Content-Type": "text/plain"})
    assert not_json.status_code == 415
    assert jobs.list_jobs(store)[1] == 1
