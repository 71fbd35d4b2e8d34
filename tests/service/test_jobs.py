"""GET /jobs, GET /jobs/{jobID}, DELETE /jobs/{jobID}, GET /jobs/{jobID}/results in every state."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
import redis
import xarray as xr
from fastapi.testclient import TestClient
from PIL import Image

from service.settings import ApiSettings
from tests.service.builders import OBSERVED_TAG, finish_job, png_bytes
from workers import jobs


def _job(store: redis.Redis, job_id: str = "forecast-abc", kind: str = "forecast", **fields) -> str:
    jobs.create_job(store, job_id=job_id, kind=kind, steps=3, input_path="/nowhere", model_version="v")
    if fields:
        jobs.update_job(store, job_id=job_id, **fields)
    return job_id


def test_status_of_a_queued_job_has_retry_after(client: TestClient, store: redis.Redis) -> None:
    job_id = _job(store)
    response = client.get(f"/jobs/{job_id}")
    assert response.status_code == 200
    assert response.headers["retry-after"] == "5"
    body = response.json()
    assert body["jobID"] == job_id and body["status"] == "accepted" and body["processID"] == "nowcast"
    assert body["type"] == "process"
    jobs.update_job(store, job_id=job_id, status="running", progress=40, started=jobs.utc_now_iso())
    running = client.get(f"/jobs/{job_id}")
    assert running.json()["progress"] == 40 and running.headers["retry-after"] == "5"


def test_status_of_a_finished_job_has_no_retry_after_and_links_results(
    client: TestClient, store: redis.Redis, settings: ApiSettings
) -> None:
    job_id = _job(store)
    finish_job(store, job_id=job_id, product_dir=settings.product_dir(job_id))
    response = client.get(f"/jobs/{job_id}")
    assert "retry-after" not in response.headers
    body = response.json()
    assert body["status"] == "successful" and body["source"] == "predrnn"
    # Every minute with a PNG: the observed scans (<= 0) then the forecast, from the reference time.
    assert body["lead_times"] == [-12, -6, 0, 6, 12, 18]
    assert body["reference_time"] == "2026-01-01T12:54:00Z" and body["timestep_minutes"] == 6
    assert body["model"] == "PredRNN-v2" and body["model_version"] == "v"
    hrefs = {link["type"]: link["href"] for link in body["links"] if link["rel"] != "self"}
    assert hrefs == {
        "application/x-netcdf": f"/jobs/{job_id}/results",
        "application/json": f"/jobs/{job_id}/results?f=json",
        "image/png": f"/jobs/{job_id}/results?f=png",
    }


def test_unknown_job_is_404_not_pending(client: TestClient) -> None:
    for path in ("/jobs/forecast-nope", "/jobs/forecast-nope/results"):
        response = client.get(path)
        assert response.status_code == 404
        assert response.json()["code"] == "job-not-found" and response.json()["field"] == "jobID"
    assert client.delete("/jobs/forecast-nope", headers={"X-API-Key": "test-key-0123456789abcdef"}).status_code == 404


def test_list_is_newest_first_and_paginated(client: TestClient, store: redis.Redis) -> None:
    for i in range(5):
        _job(store, f"forecast-{i}")
    _job(store, "nowcast-20260101T1200Z", kind="nowcast")
    page = client.get("/jobs", params={"limit": 2, "offset": 1, "kind": "forecast"}).json()
    assert [j["jobID"] for j in page["jobs"]] == ["forecast-3", "forecast-2"]
    assert page["numberMatched"] == 5
    links = {link["rel"]: link["href"] for link in page["links"]}
    assert links == {"self": "/jobs?limit=2&kind=forecast&offset=1", "next": "/jobs?limit=2&kind=forecast&offset=3",
                     "prev": "/jobs?limit=2&kind=forecast&offset=0"}
    everything = client.get("/jobs").json()
    assert everything["numberMatched"] == 6 and everything["jobs"][0]["jobID"] == "nowcast-20260101T1200Z"
    assert [link["rel"] for link in everything["links"]] == ["self"]
    bad = client.get("/jobs", params={"limit": 0})
    assert bad.status_code == 422 and bad.json()["field"] == "limit"
    assert client.get("/jobs", params={"kind": "other"}).json()["field"] == "kind"


def test_results_not_ready_failed_skipped_dismissed(client: TestClient, store: redis.Redis) -> None:
    job_id = _job(store)
    not_ready = client.get(f"/jobs/{job_id}/results")
    assert not_ready.status_code == 404 and not_ready.json()["code"] == "result-not-ready"
    assert not_ready.headers["retry-after"] == "5"
    jobs.update_job(store, job_id=job_id, status="failed", message="input grid 8x8 smaller than the patch")
    failed = client.get(f"/jobs/{job_id}/results")
    assert failed.status_code == 409 and failed.json()["code"] == "job-failed"
    assert failed.json()["detail"] == f"job {job_id} failed: input grid 8x8 smaller than the patch"
    # RFC 9457 and our OpenAPI schema: "status" is the HTTP status (an integer), the job's is apart.
    assert failed.json()["status"] == 409 and failed.json()["job_status"] == "failed"
    slot = _job(store, "nowcast-20260101T1200Z", kind="nowcast", status="skipped",
                message="feed stale: newest scan 45 min old")
    skipped = client.get(f"/jobs/{slot}/results")
    assert skipped.status_code == 409 and skipped.json()["code"] == "nowcast-skipped"
    assert "feed stale: newest scan 45 min old" in skipped.json()["detail"]
    dismissed = _job(store, "forecast-dismissed", status="dismissed")
    assert client.get(f"/jobs/{dismissed}/results").json()["code"] == "job-dismissed"


def test_results_netcdf_json_png(client: TestClient, store: redis.Redis, settings: ApiSettings, tmp_path: Path) -> None:
    job_id = _job(store)
    expected = finish_job(store, job_id=job_id, product_dir=settings.product_dir(job_id))

    netcdf = client.get(f"/jobs/{job_id}/results")
    assert netcdf.status_code == 200 and netcdf.headers["content-type"] == "application/x-netcdf"
    assert netcdf.headers["vary"] == "Accept"
    (tmp_path / "got.nc").write_bytes(netcdf.content)
    with xr.open_dataset(tmp_path / "got.nc", engine="netcdf4") as ds:
        np.testing.assert_array_equal(ds["reflectivity"].values, expected)
        assert list(ds["lead_time"].values) == [6, 12, 18]

    for request in ({"headers": {"Accept": "application/json"}}, {"params": {"f": "json"}}):
        document = client.get(f"/jobs/{job_id}/results", **request)
        assert document.status_code == 200 and document.headers["content-type"] == "application/json"
        body = document.json()
        assert body["jobID"] == job_id and body["shape"] == [3, 16, 20] and body["units"] == "dBZ"
        assert body["lead_time_minutes"] == [6, 12, 18]
        assert body["reference_time"] == "2026-01-01T12:54:00Z"
        assert body["valid_times"] == ["2026-01-01T13:00:00Z", "2026-01-01T13:06:00Z", "2026-01-01T13:12:00Z"]
        assert body["x"][:3] == [0.0, 1000.0, 2000.0] and body["attributes"]["source"] == "predrnn"
        values = np.array([[[np.nan if v is None else v for v in row] for row in f] for f in body["reflectivity"]])
        assert body["reflectivity"][0][0][0] is None
        np.testing.assert_allclose(values, expected, atol=0.005)

    png = client.get(f"/jobs/{job_id}/results", params={"lead": 12}, headers={"Accept": "image/png"})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content == png_bytes(12) and Image.open(io.BytesIO(png.content)).getpixel((0, 0)) == 12
    first = client.get(f"/jobs/{job_id}/results", params={"f": "png"})
    assert first.content == png_bytes(6)  # no lead: the first lead time
    for lead in (30, -18, -3):  # past the forecast, before the observed scans, off the cadence
        missing = client.get(f"/jobs/{job_id}/results", params={"f": "png", "lead": lead})
        assert missing.status_code == 404 and missing.json()["code"] == "lead-not-available"
        assert missing.json()["field"] == "lead" and "[-12, -6, 0, 6, 12, 18]" in missing.json()["detail"]


def test_observed_scans_are_png_at_lead_zero_and_below(
    client: TestClient, store: redis.Redis, settings: ApiSettings
) -> None:
    job_id = _job(store)
    finish_job(store, job_id=job_id, product_dir=settings.product_dir(job_id))
    for minutes_before in (0, 6, 12):
        png = client.get(f"/jobs/{job_id}/results", params={"f": "png", "lead": -minutes_before})
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        assert png.content == png_bytes(OBSERVED_TAG + minutes_before)
        assert png.headers["content-disposition"] == f'inline; filename="{job_id}_obs_{minutes_before:03d}.png"'
    # Found on disk by name too (a record written before obs_png was recorded).
    jobs.update_job(store, job_id=job_id, products={"netcdf": str(settings.product_dir(job_id) / "forecast.nc")})
    assert client.get(f"/jobs/{job_id}/results", params={"f": "png", "lead": -6}).content == png_bytes(106)
    assert client.get(f"/jobs/{job_id}/results", params={"f": "png"}).content == png_bytes(6)  # still lead 6


def test_status_fields_before_the_worker_sets_them(client: TestClient, store: redis.Redis) -> None:
    body = client.get(f"/jobs/{_job(store)}").json()
    assert body["model_version"] == "v"  # known from submission
    assert body["reference_time"] is None and body["model"] is None and body["lead_times"] is None
    assert body["timestep_minutes"] is None


@pytest.mark.parametrize(
    ("accept", "expected"),
    [("*/*", "application/x-netcdf"), ("application/netcdf", "application/x-netcdf"),
     ("image/*", "image/png"), ("application/json;q=0.5, image/png;q=0.9", "image/png"),
     ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "application/x-netcdf")],
)
def test_accept_negotiation(client: TestClient, store: redis.Redis, settings: ApiSettings, accept: str,
                            expected: str) -> None:
    job_id = _job(store)
    finish_job(store, job_id=job_id, product_dir=settings.product_dir(job_id))
    response = client.get(f"/jobs/{job_id}/results", headers={"Accept": accept})
    assert response.status_code == 200 and response.headers["content-type"] == expected


def test_unacceptable_and_too_large_for_json(client: TestClient, store: redis.Redis, settings: ApiSettings) -> None:
    job_id = _job(store)
    finish_job(store, job_id=job_id, product_dir=settings.product_dir(job_id))
    refused = client.get(f"/jobs/{job_id}/results", headers={"Accept": "text/csv"})
    assert refused.status_code == 406 and refused.json()["code"] == "not-acceptable"
    assert client.get(f"/jobs/{job_id}/results", params={"f": "csv"}).json()["field"] == "f"
    from service.main import create_app

    with TestClient(create_app(settings.model_copy(update={"json_max_values": 100}))) as small:
        too_large = small.get(f"/jobs/{job_id}/results", params={"f": "json"})
        assert too_large.status_code == 406 and too_large.json()["code"] == "json-too-large"
        assert "960 values" in too_large.json()["detail"]


def test_dismiss_a_queued_job_revokes_it(client: TestClient, store: redis.Redis, auth: dict) -> None:
    job_id = _job(store)
    assert client.delete(f"/jobs/{job_id}").status_code == 401
    # Celery's revoke is a broadcast (Redis pub/sub on the pidbox channel): listen to it.
    listener = store.pubsub()
    listener.psubscribe("*pidbox*")
    assert listener.get_message(timeout=2)["type"] == "psubscribe"
    response = client.delete(f"/jobs/{job_id}", headers=auth)
    assert response.status_code == 200 and response.json()["status"] == "dismissed"
    record = jobs.get_job(store, job_id=job_id)
    assert record.status == "dismissed" and record.finished is not None
    broadcast = listener.get_message(timeout=5)
    listener.close()
    assert broadcast is not None and broadcast["channel"] == b"/9.celery.pidbox"
    command = json.loads(base64.b64decode(json.loads(broadcast["data"])["body"]))
    assert command["method"] == "revoke" and command["arguments"]["task_id"] == job_id
    assert command["arguments"]["terminate"] is False
    again = client.delete(f"/jobs/{job_id}", headers=auth)
    assert again.status_code == 200 and again.json()["status"] == "dismissed"


@pytest.mark.parametrize("status", ["running", "successful", "failed"])
def test_running_or_finished_jobs_cannot_be_dismissed(client: TestClient, store: redis.Redis, auth: dict,
                                                      status: str) -> None:
    job_id = _job(store, status=status)
    response = client.delete(f"/jobs/{job_id}", headers=auth)
    assert response.status_code == 409 and response.json()["code"] == f"job-{status}"
    assert jobs.get_job(store, job_id=job_id).status == status
    slot = _job(store, "nowcast-20260101T1200Z", kind="nowcast")
    assert client.delete(f"/jobs/{slot}", headers=auth).json()["code"] == "not-dismissable"


def test_reads_keyed_by_setting(settings: ApiSettings, store: redis.Redis, auth: dict) -> None:
    from service.main import create_app

    job_id = _job(store)
    with TestClient(create_app(settings.model_copy(update={"read_requires_key": True}))) as keyed:
        for path in ("/jobs", f"/jobs/{job_id}", f"/jobs/{job_id}/results", "/nowcasts", "/processes", "/"):
            assert keyed.get(path).status_code == 401, path
        assert keyed.get(f"/jobs/{job_id}", headers=auth).status_code == 200
        assert keyed.get("/healthz").status_code == 200  # probes stay open
        assert keyed.get("/metrics").status_code == 200
