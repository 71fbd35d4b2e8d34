"""A running stack for the viewer's browser test, and a headless Debian chromium to look at it.

The stack is the real thing: the test run's private redis-server (its own database), a real
prefork ``celery worker`` with a tiny random PredRNN checkpoint (4 scans in, 3 lead times out), and
the real app under uvicorn on a free loopback port. Before the browser opens, the worker runs: the
12:30 slot (a feed of moving blobs) in both streams, model and extrapolation; the 12:24 slot (the
model's), whose +6 min forecast can be compared with the scan observed at 12:30; the 14:00 slot,
skipped (the feed is stale by then); and an on-demand forecast whose uploaded scans are gone, which
fails. The tiny checkpoint has a model card beside it.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
from playwright.sync_api import Browser, sync_playwright

from tests.utils.api_process import start_api, stop_api
from tests.utils.redis_server import RedisServer, free_port
from tests.utils.worker_process import WorkerProcess
from tests.workers.conftest import FEED_START, write_blob_feed, write_tiny_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "artifacts" / "viewer"
CHROMIUM = Path("/usr/bin/chromium")
# Debian's chromium, never a browser Playwright downloads; no network, no first-run or sync chatter.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync",
]

DB = 11  # this package's Redis database (service tests use 9, worker tests 3 and 5)
INPUT_SCANS, LEAD_STEPS = 4, 3
SUCCESSFUL_SLOT = FEED_START + dt.timedelta(minutes=30)  # 2026-03-01 12:30, the newest feed scan
SKIPPED_SLOT = FEED_START + dt.timedelta(hours=2)  # 14:00: newest scan 90 min old, stale
EARLIER_SLOT = FEED_START + dt.timedelta(minutes=24)  # 12:24: its +6 min is valid at 12:30, observed
FAILED_ID = "forecast-" + "0" * 64  # an on-demand job whose uploaded scans were removed
MODEL_CARD = """# Model card: the tiny test checkpoint

## Known limits

Random weights: it predicts no echo at all. Never use it for a forecast.
"""


@dataclass
class Stack:
    base_url: str
    api_key: str
    store: redis.Redis
    tmp: Path
    api_env: dict[str, str]
    redis_url: str

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        return httpx.get(f"{self.base_url}{path}", timeout=10, **kwargs)  # type: ignore[arg-type]


def _wait_for_job(store: redis.Redis, job_id: str, timeout: float = 120.0) -> None:
    from workers import jobs

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = jobs.get_job(store, job_id=job_id)
        if record is not None and record.status in ("successful", "failed", "skipped"):
            return
        time.sleep(0.2)
    raise AssertionError(f"{job_id} did not finish in {timeout} s: {jobs.get_job(store, job_id=job_id)}")


@pytest.fixture(scope="package")
def stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    import torch

    from workers import jobs
    from workers.celery_app import create_app
    from workers.settings import WorkerSettings

    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("viewer-stack")
    data_dir = tmp / "var"
    url = redis_server.url.rsplit("/", 1)[0] + f"/{DB}"
    store = redis.Redis.from_url(url)
    store.flushdb()
    checkpoint = write_tiny_checkpoint(tmp / "tiny.pt", input_length=INPUT_SCANS, output_length=LEAD_STEPS)
    checkpoint.with_suffix(".md").write_text(MODEL_CARD)
    write_blob_feed(data_dir / "feed", FEED_START, 6)  # 12:00 .. 12:30

    settings_env = {
        "NOWCAST_CHECKPOINT": str(checkpoint),
        "NOWCAST_INPUT_SCANS": str(INPUT_SCANS),
        "NOWCAST_LEAD_STEPS": str(LEAD_STEPS),
        "NOWCAST_PRECISION": "fp32",
    }
    worker = WorkerProcess(redis_url=url, data_dir=data_dir, env=settings_env, log_path=tmp / "worker.log")
    api_key = secrets.token_urlsafe(24)
    api_env = {
        **os.environ, **settings_env,
        "NOWCAST_REDIS_URL": url, "NOWCAST_DATA_DIR": str(data_dir), "NOWCAST_DEVICE": "cpu",
        "NOWCAST_API_KEYS": api_key, "NOWCAST_ENVIRONMENT": "production", "NOWCAST_LOG_FORMAT": "text",
        "NOWCAST_RETRY_AFTER_SECONDS": "1",
        "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
    }
    port = free_port()
    api: subprocess.Popen | None = None
    celery = create_app(WorkerSettings(redis_url=url, data_dir=data_dir))
    try:
        worker.start()
        api = start_api(api_env, port, tmp / "api.log")
        for slot in (SUCCESSFUL_SLOT, EARLIER_SLOT, SKIPPED_SLOT):
            celery.send_task("workers.tasks.nowcast", args=[slot.isoformat().replace("+00:00", "Z")], queue="gpu")
        celery.send_task("workers.tasks.nowcast_extrapolation",
                         args=[SUCCESSFUL_SLOT.isoformat().replace("+00:00", "Z")], queue="cpu")
        gone = data_dir / "inputs" / FAILED_ID
        jobs.create_job(store, job_id=FAILED_ID, kind="forecast", steps=LEAD_STEPS, input_path=str(gone),
                        model_version="test")
        celery.send_task("workers.tasks.forecast", args=[FAILED_ID, str(gone), LEAD_STEPS], task_id=FAILED_ID,
                         queue="gpu")
        for job_id in (*(jobs.nowcast_job_id(slot) for slot in (SUCCESSFUL_SLOT, EARLIER_SLOT, SKIPPED_SLOT)),
                       jobs.nowcast_job_id(SUCCESSFUL_SLOT, "extrapolation"), FAILED_ID):
            _wait_for_job(store, job_id)
        yield Stack(base_url=f"http://127.0.0.1:{port}", api_key=api_key, store=store, tmp=tmp, api_env=api_env,
                    redis_url=url)
    finally:
        if api is not None:
            stop_api(api)
        worker.stop()
        celery.close()
        store.flushdb()
        store.close()


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser-deps` (Debian chromium for the viewer test)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture()
def keyed_reads_url(stack: Stack) -> Iterator[str]:
    """A second API process over the same Redis and data, with ``read_requires_key`` on."""
    port = free_port()
    env = {**stack.api_env, "NOWCAST_READ_REQUIRES_KEY": "true"}
    api = start_api(env, port, stack.tmp / "api-keyed.log")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_api(api)
