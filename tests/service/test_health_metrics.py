"""/healthz, /readyz (each failing check named), /metrics, request ids and JSON logs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from service.main import create_app
from service.settings import ApiSettings
from tests.service.builders import finish_job
from workers import jobs


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_names_every_failing_check(settings: ApiSettings, tmp_path: Path) -> None:
    # No worker consumes the queue in this test: the worker check fails, the others pass.
    with TestClient(create_app(settings)) as client:
        response = client.get("/readyz")
    assert response.status_code == 503 and response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["failing"] == ["worker"] and body["checks"]["redis"]["ok"] is True
    assert body["checks"]["checkpoint"]["ok"] is True and body["checks"]["data_dir"]["ok"] is True
    assert "no live worker consumes queue 'gpu'" in body["detail"]

    down = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0", "checkpoint": tmp_path / "none.pt"})
    with TestClient(create_app(down)) as client:
        body = client.get("/readyz").json()
    assert body["failing"] == ["redis", "checkpoint", "worker"]
    assert body["checks"]["worker"]["detail"] == "not checked: Redis (the broker) does not answer"


def test_readyz_with_a_live_worker(settings: ApiSettings, redis_url: str, tmp_path: Path) -> None:
    """A real `celery worker` process consuming `gpu` (started with Celery's CLI) makes the API ready."""
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-b", redis_url, "worker", "-Q", "gpu", "-P", "solo",
         "-n", f"readyz-{tmp_path.name}@%h", "--without-heartbeat", "--without-gossip", "--without-mingle",
         "-l", "WARNING"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        ready = settings.model_copy(update={"readiness_timeout_seconds": 1.0})
        with TestClient(create_app(ready)) as client:
            for _ in range(60):
                response = client.get("/readyz")
                if response.status_code == 200:
                    break
            assert response.status_code == 200, response.text
            assert response.json()["status"] == "ready"
            assert "worker(s) on queue 'gpu'" in response.json()["checks"]["worker"]["detail"]
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def test_metrics(client: TestClient, store: redis.Redis, settings: ApiSettings) -> None:
    jobs.create_job(store, job_id="forecast-a", kind="forecast", steps=3, input_path="/x", model_version="v")
    jobs.create_job(store, job_id="forecast-b", kind="forecast", steps=3, input_path="/x", model_version="v",
                    status="failed")
    jobs.create_job(store, job_id="nowcast-20260101T1200Z", kind="nowcast", steps=3, input_path="/x",
                    model_version="v")
    finish_job(store, job_id="nowcast-20260101T1200Z", product_dir=settings.product_dir("nowcast-20260101T1200Z"))
    store.rpush("gpu", b"m1", b"m2")
    client.get("/jobs/forecast-a")
    client.get("/jobs/forecast-zzz")
    text = client.get("/metrics").text
    assert 'nowcast_jobs{kind="forecast",state="accepted"} 1.0' in text
    assert 'nowcast_jobs{kind="forecast",state="failed"} 1.0' in text
    assert 'nowcast_jobs{kind="nowcast",state="successful"} 1.0' in text
    assert 'nowcast_queue_depth{queue="gpu"} 2.0' in text
    assert 'nowcast_api_requests_total{method="GET",route="/jobs/{jobID}",status="200"} 1.0' in text
    assert 'nowcast_api_requests_total{method="GET",route="/jobs/{jobID}",status="404"} 1.0' in text
    assert 'nowcast_api_request_duration_seconds_count{method="GET",route="/jobs/{jobID}"} 2.0' in text
    age = next(line for line in text.splitlines() if line.startswith("nowcast_latest_successful_nowcast_age"))
    assert 0 <= float(age.split()[-1]) < 60
    assert "nowcast_redis_up 1.0" in text


def test_request_id_is_echoed_and_logged_as_json(
    capsys: pytest.CaptureFixture, settings: ApiSettings, store: redis.Redis
) -> None:
    jobs.create_job(store, job_id="forecast-a", kind="forecast", steps=3, input_path="/x", model_version="v")
    with TestClient(create_app(settings)) as client:  # built inside capsys, so its log handler is captured
        response = client.get("/jobs/forecast-a", headers={"X-Request-ID": "req-123"})
        assert response.headers["x-request-id"] == "req-123"
        assert len(client.get("/healthz").headers["x-request-id"]) == 32  # generated: uuid4 hex
        injected = client.get("/healthz", headers={"X-Request-ID": "bad id\nforged line"})
        assert len(injected.headers["x-request-id"]) == 32  # not echoed: replaced
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    [access] = [line for line in lines if line["logger"] == "service.access" and line.get("request_id") == "req-123"]
    assert access["job_id"] == "forecast-a" and access["status"] == 200 and access["route"] == "/jobs/{jobID}"
    assert access["message"] == "GET /jobs/forecast-a 200" and access["level"] == "INFO"
    assert isinstance(access["duration_ms"], float)


def test_importing_the_api_does_not_import_torch() -> None:
    code = "import sys, service.main, service.routes; assert 'torch' not in sys.modules, 'torch imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
