"""Three domains through a real prefork worker, a real Redis and the real API: each its own grid, ids,
queue, verification and health; a domain whose feed directory is missing is skipped and reported
unhealthy while the others go on."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import xarray as xr
from fastapi.testclient import TestClient

from tests.utils.redis_server import RedisServer
from tests.utils.worker_process import WorkerProcess
from tests.workers.conftest import FEED_START, write_blob_feed
from workers import jobs, skill_store, verification
from workers.celery_app import create_app
from workers.settings import WorkerSettings

pytestmark = pytest.mark.integration

INPUT_SCANS, LEAD_STEPS = 4, 3
DB = 13  # this module's Redis database
SLOT = "2026-03-01T12:30:00Z"
NOW = "2026-03-01T12:50:00Z"  # every valid time of the 12:30 slot (12:36-12:48) has its scan
DOMAINS = """\
default = "national"

[[domain]]
id = "national"
feed_dir = "feeds/national"

[[domain]]
id = "coast"
feed_dir = "feeds/coast"
queue = "coastq"
extrapolation_queue = "coastq"

[[domain]]
id = "broken"
feed_dir = "feeds/nowhere"
"""


def wait_for(r: redis.Redis, job_id: str, timeout: float = 120.0) -> jobs.JobRecord:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = jobs.get_job(r, job_id=job_id)
        if record is not None and record.status in jobs.FINISHED_STATUSES:
            return record
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} not finished after {timeout} s: {jobs.get_job(r, job_id=job_id)}")


@pytest.fixture(scope="module")
def stack(redis_server: RedisServer, tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("domains")
    data_dir = root / "var"
    write_blob_feed(root / "feeds" / "national", FEED_START, 9, shape=(24, 32))  # 12:00 .. 12:48
    write_blob_feed(root / "feeds" / "coast", FEED_START, 9, shape=(16, 40), seed=1)
    domains_file = root / "domains.toml"
    domains_file.write_text(DOMAINS)
    url = redis_server.url.replace("/0", f"/{DB}")
    r = redis.Redis.from_url(url)
    r.flushdb()
    env = {"NOWCAST_CHECKPOINT": str(tiny_checkpoint), "NOWCAST_INPUT_SCANS": str(INPUT_SCANS),
           "NOWCAST_LEAD_STEPS": str(LEAD_STEPS), "NOWCAST_PRECISION": "fp32", "NOWCAST_DOMAINS": str(domains_file),
           "NOWCAST_QUICKLOOKS": "0"}
    worker = WorkerProcess(redis_url=url, data_dir=data_dir, env=env, queues="gpu,cpu,coastq").start()
    settings = WorkerSettings(redis_url=url, data_dir=data_dir, checkpoint=tiny_checkpoint, input_scans=INPUT_SCANS,
                              lead_steps=LEAD_STEPS, domains=domains_file, verification_grace_minutes=30)
    app = create_app(settings)
    try:
        yield {"r": r, "app": app, "settings": settings, "root": root, "url": url, "file": domains_file}
    finally:
        worker.stop()
        app.close()
        r.flushdb()
        r.close()


@pytest.fixture(scope="module")
def ran(stack: dict) -> dict[str, jobs.JobRecord]:
    """Every domain's two jobs of the 12:30 slot, sent as beat sends them (kwargs and queue per domain)."""
    for domain, queue in ((None, "gpu"), ("coast", "coastq"), ("broken", "gpu")):
        kwargs = {} if domain is None else {"domain": domain}
        stack["app"].send_task("workers.tasks.nowcast", args=[SLOT], kwargs=kwargs, queue=queue)
        stack["app"].send_task("workers.tasks.nowcast_extrapolation", args=[SLOT], kwargs=kwargs,
                               queue="coastq" if domain == "coast" else "cpu")
    ids = ["nowcast-20260301T1230Z", "nowcast-20260301T1230Z-extrapolation", "nowcast-coast-20260301T1230Z",
           "nowcast-coast-20260301T1230Z-extrapolation", "nowcast-broken-20260301T1230Z",
           "nowcast-broken-20260301T1230Z-extrapolation"]
    return {job_id: wait_for(stack["r"], job_id) for job_id in ids}


def test_each_domain_nowcasts_on_its_own_grid_and_names_itself(stack: dict, ran: dict[str, jobs.JobRecord]) -> None:
    for job_id, shape, domain in (("nowcast-20260301T1230Z", (24, 32), "national"),
                                  ("nowcast-coast-20260301T1230Z", (16, 40), "coast"),
                                  ("nowcast-coast-20260301T1230Z-extrapolation", (16, 40), "coast")):
        record = ran[job_id]
        assert record.status == "successful", record.message
        assert record.domain == domain and record.slot == SLOT
        with xr.open_dataset(record.products["netcdf"]) as ds:
            assert ds.attrs["domain"] == domain and ds.attrs["job_id"] == job_id
            field = next(v for v in ds.data_vars.values() if v.ndim == 3)
            assert field.shape == (LEAD_STEPS, *shape)
    # The missing feed skips that domain's slot with the reason; the others were not held up.
    broken = ran["nowcast-broken-20260301T1230Z"]
    assert broken.status == "skipped" and broken.domain == "broken"
    assert "feed directory" in broken.message and "does not exist" in broken.message
    # The default domain's index is today's: /nowcasts lists only its slots; each domain has its own.
    r = stack["r"]
    default_ids = {rec.job_id for rec in jobs.list_jobs(r, kind="nowcast", limit=50)[0]}
    assert default_ids == {"nowcast-20260301T1230Z", "nowcast-20260301T1230Z-extrapolation"}
    assert {rec.job_id for rec in jobs.list_jobs(r, domain="coast", limit=50)[0]} == {
        "nowcast-coast-20260301T1230Z", "nowcast-coast-20260301T1230Z-extrapolation"}


def test_each_domain_is_verified_on_its_own(stack: dict, ran: dict[str, jobs.JobRecord]) -> None:
    r, settings = stack["r"], stack["settings"]
    now = skill_store.parse_iso(NOW)
    outcome = verification.sweep(settings, r, now=now)
    assert outcome["products"] == 4 and outcome["leads"]["scored"] == 4 * LEAD_STEPS, outcome
    window = (now - dt.timedelta(hours=1), now)
    for index, job_id in (("model", "nowcast-20260301T1230Z"), ("coast:model", "nowcast-coast-20260301T1230Z"),
                          ("coast:extrapolation", "nowcast-coast-20260301T1230Z-extrapolation")):
        records = skill_store.records_between(r, stream=index, since=window[0], until=window[1])
        assert [rec.job_id for rec in records] == [job_id]
        assert sorted(records[0].leads) == [6, 12, 18]
        assert all(entry["status"] == "scored" for entry in records[0].leads.values())
    assert skill_store.records_between(r, stream="broken:model", since=window[0], until=window[1]) == []
    assert verification.sweep(settings, r, now=now)["leads"]["scored"] == 0  # nothing settled twice


def test_the_api_lists_domains_and_serves_each(stack: dict, ran: dict[str, jobs.JobRecord],
                                               tiny_checkpoint: Path) -> None:
    from service.main import create_app as create_api
    from service.settings import ApiSettings

    verification.sweep(stack["settings"], stack["r"], now=skill_store.parse_iso(NOW))
    api = create_api(ApiSettings(redis_url=stack["url"], data_dir=stack["settings"].data_dir,
                                 checkpoint=tiny_checkpoint, domains=stack["file"], input_scans=INPUT_SCANS,
                                 lead_steps=LEAD_STEPS, clock_wall_start=time.time(), clock_sim_start=NOW,
                                 api_keys="k" * 24))
    with TestClient(api) as client:
        listing = client.get("/domains").json()
        assert listing["default"] == "national"
        by_id = {d["id"]: d for d in listing["domains"]}
        assert list(by_id) == ["national", "coast", "broken"]
        assert by_id["national"]["grid"] == [24, 32] and by_id["coast"]["grid"] == [16, 40]
        assert by_id["coast"]["projection"]["attributes"]["grid_mapping_name"] == "transverse_mercator"
        assert by_id["coast"]["newest_scan"] == "2026-03-01T12:48:00Z" and by_id["coast"]["health"]["ok"]
        assert by_id["coast"]["queues"] == {"model": "coastq", "extrapolation": "coastq"}
        assert by_id["broken"]["health"] == {"ok": False, "detail": "feed directory nowhere does not exist"}
        assert by_id["broken"]["grid"] is None and by_id["broken"]["newest_scan"] is None

        coast = client.get("/domains/coast/nowcasts").json()
        assert {j["jobID"] for j in coast["jobs"]} == {"nowcast-coast-20260301T1230Z",
                                                       "nowcast-coast-20260301T1230Z-extrapolation"}
        assert {j["domain"] for j in coast["jobs"]} == {"coast"}
        assert client.get("/jobs/nowcast-20260301T1230Z").json()["domain"] == "national"
        assert {j["jobID"] for j in client.get("/nowcasts").json()["jobs"]} == {
            "nowcast-20260301T1230Z", "nowcast-20260301T1230Z-extrapolation"}
        latest = client.get("/domains/coast/nowcasts/latest?f=json")
        assert latest.status_code == 200, latest.text
        assert latest.headers["Nowcast-Source"] == "model" and latest.headers["Nowcast-Domain"] == "coast"
        assert latest.headers["Content-Location"].endswith("/domains/coast/nowcasts/20260301T1230Z")
        one = client.get("/domains/coast/nowcasts/20260301T1230Z?source=extrapolation&f=json")
        assert one.status_code == 200, one.text
        assert client.get("/domains/broken/nowcasts/latest").status_code == 404
        missing = client.get("/domains/elsewhere/nowcasts")
        assert missing.status_code == 404 and "national, coast, broken" in missing.json()["detail"]

        report = client.get(f"/domains/coast/verification?since=2026-03-01T12:00:00Z&until={NOW}").json()
        assert report["sources"]["model"]["leads"][0]["slots"] == 1
        default = client.get(f"/verification?since=2026-03-01T12:00:00Z&until={NOW}").json()
        assert default["sources"]["model"]["leads"][0]["slots"] == 1  # national's slot only, not coast's
        assert client.get("/domains/broken/verification").json()["sources"]["model"]["leads"] == []

        ready = client.get("/readyz").json()
        assert ready["checks"]["domains"]["detail"] == (
            "unhealthy domains: broken: feed directory nowhere does not exist")
