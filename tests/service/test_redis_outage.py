"""A Redis that is down or paused (SIGSTOP) gets 503 with Retry-After, fast, never a 500; readiness
says which check fails; nothing is half-accepted; service resumes when Redis does."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from service.main import create_app
from service.settings import ApiSettings
from tests.service.builders import write_sequence
from tests.service.test_forecast import _files
from tests.utils.redis_server import RedisServer
from workers import jobs

pytestmark = pytest.mark.integration

TIMEOUT_S = 0.5


@pytest.fixture()
def outage_client(settings: ApiSettings, private_redis: RedisServer) -> Iterator[TestClient]:
    own = settings.model_copy(update={"redis_url": private_redis.url, "redis_timeout_seconds": TIMEOUT_S})
    with TestClient(create_app(own)) as client:
        yield client


def _assert_unavailable(response, *, budget_s: float, started: float) -> None:
    assert time.monotonic() - started < budget_s, "the request hung instead of failing fast"
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) >= 1
    assert response.json()["code"] in ("queue-unavailable", "not-ready")


def _probe_all(client: TestClient, auth: dict, paths: list[Path], job_id: str, budget_s: float) -> None:
    for call in (lambda: client.post("/forecast", files=_files(paths), data={"steps": "3"}, headers=auth),
                 lambda: client.get(f"/jobs/{job_id}"),
                 lambda: client.get("/jobs"),
                 lambda: client.delete(f"/jobs/{job_id}", headers=auth),
                 lambda: client.get(f"/jobs/{job_id}/results"),
                 lambda: client.get("/nowcasts/latest")):
        started = time.monotonic()
        _assert_unavailable(call(), budget_s=budget_s, started=started)
    started = time.monotonic()
    ready = client.get("/readyz")
    _assert_unavailable(ready, budget_s=budget_s, started=started)
    assert "redis" in ready.json()["failing"] and ready.json()["checks"]["redis"]["ok"] is False


def test_paused_then_killed_redis_answers_503_and_recovers(
    outage_client: TestClient, private_redis: RedisServer, auth: dict, settings: ApiSettings, tmp_path: Path
) -> None:
    paths = write_sequence(tmp_path / "scans", count=4)
    first = outage_client.post("/forecast", files=_files(paths), data={"steps": "3"}, headers=auth)
    assert first.status_code == 201
    job_id = first.json()["jobID"]
    other = write_sequence(tmp_path / "other", count=4, seed=3)

    os.kill(private_redis.process.pid, signal.SIGSTOP)  # paused: connections open, no answers
    _probe_all(outage_client, auth, other, job_id, budget_s=10 * TIMEOUT_S + 3)
    os.kill(private_redis.process.pid, signal.SIGCONT)
    assert outage_client.get(f"/jobs/{job_id}").status_code == 200

    private_redis.stop()  # down: connections refused
    _probe_all(outage_client, auth, other, job_id, budget_s=10 * TIMEOUT_S + 3)
    private_redis.start()  # AOF: the accepted job and its queued task are still there

    store = redis.Redis.from_url(private_redis.url)
    try:
        assert outage_client.get(f"/jobs/{job_id}").json()["status"] == "accepted"
        assert store.llen("gpu") == 1
        again = outage_client.post("/forecast", files=_files(other), data={"steps": "3"}, headers=auth)
        assert again.status_code == 201 and store.llen("gpu") == 2
        # The refused submissions left no job, no input and no staging directory behind.
        assert jobs.list_jobs(store)[1] == 2
        leftovers = sorted(p.name for p in settings.inputs_dir.iterdir())
        assert leftovers == sorted([job_id, again.json()["jobID"]])
    finally:
        store.close()
