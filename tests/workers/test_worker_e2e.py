"""End to end through a real prefork ``celery worker`` and a real redis-server (no eager mode).

One worker for the module (tiny random checkpoint, 4 scans in, 3 out) serves every test here;
the tests send tasks by name exactly as beat and the API do.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
import xarray as xr
from PIL import Image

from model.forecast import forecast_dbz
from model.io import netcdf as radar_io
from tests.utils.redis_server import RedisServer
from tests.utils.worker_process import WorkerProcess
from tests.workers.conftest import FEED_START, GRID, blob_field, write_blob_feed
from workers import jobs
from workers.celery_app import create_app
from workers.schedule import slot_for
from workers.settings import WorkerSettings

pytestmark = pytest.mark.integration

INPUT_SCANS, LEAD_STEPS = 4, 3
DB = 5  # this module's Redis database


def wait_for(r: redis.Redis, job_id: str, statuses: tuple[str, ...], timeout: float = 90.0) -> jobs.JobRecord:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = jobs.get_job(r, job_id=job_id)
        if record is not None and record.status in statuses:
            return record
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} not in {statuses} after {timeout} s: {jobs.get_job(r, job_id=job_id)}")


@pytest.fixture(scope="module")
def stack(redis_server: RedisServer, tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        dict]:
    data_dir = tmp_path_factory.mktemp("worker-data")
    url = redis_server.url.replace("/0", f"/{DB}")
    r = redis.Redis.from_url(url)
    r.flushdb()
    feed = data_dir / "feed"
    write_blob_feed(feed, FEED_START, 6)  # 12:00 .. 12:30
    settings = WorkerSettings(redis_url=url, data_dir=data_dir, checkpoint=tiny_checkpoint,
                              input_scans=INPUT_SCANS, lead_steps=LEAD_STEPS)
    worker = WorkerProcess(redis_url=url, data_dir=data_dir, env={
        "NOWCAST_CHECKPOINT": str(tiny_checkpoint), "NOWCAST_INPUT_SCANS": str(INPUT_SCANS),
        "NOWCAST_LEAD_STEPS": str(LEAD_STEPS), "NOWCAST_PRECISION": "fp32", "NOWCAST_RETRY_BACKOFF_S": "0.2",
    }).start()
    app = create_app(settings)
    try:
        yield {"r": r, "app": app, "settings": settings, "worker": worker, "feed": feed, "data_dir": data_dir}
    finally:
        worker.stop()
        app.close()
        r.flushdb()
        r.close()


def send_nowcast(stack: dict, slot: str) -> None:
    stack["app"].send_task("workers.tasks.nowcast", args=[slot], queue="gpu")


def test_scheduled_slot_yields_the_cf_product(stack: dict, tiny_checkpoint: Path) -> None:
    send_nowcast(stack, "2026-03-01T12:30:00Z")
    record = wait_for(stack["r"], "nowcast-20260301T1230Z", ("successful", "failed", "skipped"))
    assert record.status == "successful", record.message
    assert record.kind == "nowcast" and record.slot == "2026-03-01T12:30:00Z" and record.progress == 100
    assert record.source == "predrnn" and record.attempts == 1
    assert record.model_version == radar_io.file_sha256(tiny_checkpoint)
    assert set(record.timings) >= {"read", "inference", "write", "total"}
    product_dir = stack["settings"].product_dir("nowcast-20260301T1230Z")
    assert record.products["netcdf"] == str(product_dir / "forecast.nc")
    assert record.products["png"] == {str(m): str(product_dir / f"lead_{m:03d}.png") for m in (6, 12, 18)}
    assert record.products["gif"] == str(product_dir / "animation.gif")
    # The four input scans (12:12 .. 12:30) as observed quicklooks, minutes before the reference time.
    assert record.products["obs_png"] == {str(m): str(product_dir / f"obs_{m:03d}.png") for m in (18, 12, 6, 0)}
    assert sorted(p.name for p in product_dir.iterdir()) == ["animation.gif", "forecast.nc", "lead_006.png",
                                                             "lead_012.png", "lead_018.png", "obs_000.png",
                                                             "obs_006.png", "obs_012.png", "obs_018.png", "observed.nc"]
    assert record.reference_time == "2026-03-01T12:30:00Z" and record.timestep_minutes == 6
    assert record.model == "PredRNN-v2"
    with xr.open_dataset(record.products["netcdf"], engine="netcdf4") as ds:
        assert ds["reflectivity"].shape == (LEAD_STEPS, *GRID)
        assert [f"{t}"[:16] for t in ds["time"].values] == ["2026-03-01T12:36", "2026-03-01T12:42",
                                                           "2026-03-01T12:48"]
        assert ds["lead_time"].values.tolist() == [6, 12, 18]
        assert str(ds["forecast_reference_time"].values)[:16] == "2026-03-01T12:30"
        assert ds.attrs["Conventions"] == "CF-1.8" and ds.attrs["source"] == "predrnn"
        assert ds.attrs["checkpoint_sha256"] == record.model_version
        assert ds.attrs["input_times"] == ("2026-03-01T12:12Z 2026-03-01T12:18Z 2026-03-01T12:24Z "
                                           "2026-03-01T12:30Z")
        assert ds["reflectivity"].attrs["units"] == "dBZ"
        assert ds["crs"].attrs["grid_mapping_name"] == "transverse_mercator"
        np.testing.assert_array_equal(ds["x"].values, 500_000.0 + 1000.0 * np.arange(GRID[1]))
        values = ds["reflectivity"].values
    # The same numbers as the model run here on the same four scans (scaling from the checkpoint).
    import torch

    from model.checkpoint import load_checkpoint

    torch.set_num_threads(1)
    model, meta = load_checkpoint(tiny_checkpoint)
    expected = forecast_dbz(model, blob_field(6)[2:], LEAD_STEPS, scaling=meta["scaling"])
    np.testing.assert_allclose(values, expected, atol=1e-4)
    assert values.min() >= -10.0 and values.max() <= 60.0  # decoded dBZ stays in the scaling's range
    with Image.open(record.products["gif"]) as gif:
        assert gif.n_frames == LEAD_STEPS
    with Image.open(record.products["png"]["6"]) as png:
        assert png.format == "PNG" and png.size[0] > 200


def test_the_slot_also_gets_its_extrapolation_product_exactly_once(stack: dict) -> None:
    """Both streams per slot: ``nowcast-<slot>-extrapolation`` on the cpu queue, delivered twice, runs once."""
    from workers.runtime import extrapolate

    for _ in range(2):
        stack["app"].send_task("workers.tasks.nowcast_extrapolation", args=["2026-03-01T12:24:00Z"], queue="cpu")
    job_id = "nowcast-20260301T1224Z-extrapolation"
    record = wait_for(stack["r"], job_id, ("successful", "failed", "skipped"))
    assert record.status == "successful", record.message
    assert record.source == "extrapolation" and record.slot == "2026-03-01T12:24:00Z"
    assert record.model_version == "extrapolation" and jobs.nowcast_stream(job_id) == "extrapolation"
    deadline = time.monotonic() + 30
    while stack["worker"].log_text().count(f"job {job_id} already successful") < 1:
        assert time.monotonic() < deadline, stack["worker"].log_text()[-3000:]
        time.sleep(0.1)
    assert stack["worker"].log_text().count(f"job {job_id} successful") == 1
    with xr.open_dataset(record.products["netcdf"], engine="netcdf4") as ds:
        assert ds.attrs["source"] == "extrapolation"
        values = ds["reflectivity"].values
    np.testing.assert_allclose(values, extrapolate(blob_field(5)[1:], LEAD_STEPS, 6), atol=1e-4)


def test_stale_feed_is_skipped_with_the_reason(stack: dict) -> None:
    send_nowcast(stack, "2026-03-01T14:00:00Z")  # newest scan 12:30: 90 minutes old
    record = wait_for(stack["r"], "nowcast-20260301T1400Z", ("successful", "failed", "skipped"))
    assert record.status == "skipped"
    assert record.message == ("feed stale: newest scan 2026-03-01T12:30Z is 90 min older than the slot "
                              "2026-03-01T14:00Z (limit 30 min)")
    assert not stack["settings"].product_dir("nowcast-20260301T1400Z").exists()


def test_corrupt_scan_fails_naming_the_file(stack: dict) -> None:
    later = FEED_START + dt.timedelta(hours=3)  # 15:00 .. 15:18, the 15:12 scan truncated to garbage
    paths = write_blob_feed(stack["feed"], later, 4)
    paths[2].write_bytes(b"\x89HDF\r\n\x1a\n truncated")
    send_nowcast(stack, "2026-03-01T15:18:00Z")
    record = wait_for(stack["r"], "nowcast-20260301T1518Z", ("successful", "failed", "skipped"))
    assert record.status == "failed"
    # The file by its name; the server's directories stay out of a message every reader sees.
    assert record.message.startswith(f"{paths[2].name}: not a readable netCDF file")
    assert str(paths[2].parent) not in record.message
    assert record.attempts == 1  # bad input is not retried


def test_on_demand_forecast_and_duplicate_delivery_runs_once(stack: dict) -> None:
    r, app, settings = stack["r"], stack["app"], stack["settings"]
    input_dir = settings.input_dir("forecast-test")
    write_blob_feed(input_dir, FEED_START, INPUT_SCANS, seed=3)
    job_id = jobs.forecast_job_id("a" * 64, jobs.model_version(settings.checkpoint), 2)
    jobs.create_job(r, job_id=job_id, kind="forecast", steps=2, input_path=str(input_dir),
                    model_version=jobs.model_version(settings.checkpoint))
    # The same message twice (a client retry, or a redelivery): the second must not run the job again.
    for _ in range(2):
        app.send_task("workers.tasks.forecast", args=[job_id, str(input_dir), 2], task_id=job_id, queue="gpu")
    first = wait_for(r, job_id, ("successful", "failed"))
    assert first.status == "successful", first.message
    product = Path(first.products["netcdf"])
    stamp = product.stat().st_mtime_ns
    deadline = time.monotonic() + 30
    while stack["worker"].log_text().count(f"job {job_id} already successful") < 1:
        assert time.monotonic() < deadline, stack["worker"].log_text()[-3000:]
        time.sleep(0.1)
    final = jobs.get_job(r, job_id=job_id)
    assert final.attempts == 1 and final.finished == first.finished
    assert product.stat().st_mtime_ns == stamp
    assert stack["worker"].log_text().count(f"job {job_id} successful") == 1
    with xr.open_dataset(product, engine="netcdf4") as ds:
        assert ds["reflectivity"].shape == (2, *GRID)
    # And a third delivery much later returns the stored result as the task's value.
    result = app.send_task("workers.tasks.forecast", args=[job_id, str(input_dir), 2], queue="gpu").get(timeout=60)
    assert result["status"] == "successful" and result["duplicate"] is True
    assert result["output"] == str(product) and result["sha256"] == radar_io.file_sha256(product)


def test_bad_on_demand_input_fails_at_once(stack: dict) -> None:
    r, app = stack["r"], stack["app"]
    missing = stack["data_dir"] / "inputs" / "nothing-here"
    app.send_task("workers.tasks.forecast", args=["forecast-bad", str(missing), 3], task_id="forecast-bad",
                  queue="gpu")
    record = wait_for(r, "forecast-bad", ("successful", "failed"))
    assert record.status == "failed"
    assert record.message == "the uploaded scans of this job are no longer on the server; submit them again"
    assert record.attempts == 1


def test_beat_style_trigger_without_a_slot_serves_the_current_slot(stack: dict) -> None:
    """Beat sends no argument: the task derives the slot from the clock (here the feed is months old)."""
    before = slot_for(dt.datetime.now(dt.UTC), timestep_minutes=6, latency_offset_minutes=2)
    stack["app"].send_task("workers.tasks.nowcast", queue="gpu")
    after = slot_for(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30), timestep_minutes=6,
                     latency_offset_minutes=2)
    candidates = {jobs.nowcast_job_id(before), jobs.nowcast_job_id(after)}
    deadline = time.monotonic() + 60
    found = []
    while not found and time.monotonic() < deadline:
        found = [j for j in candidates if (rec := jobs.get_job(stack["r"], job_id=j)) and rec.status == "skipped"]
        time.sleep(0.1)
    assert len(found) == 1, candidates
    record = jobs.get_job(stack["r"], job_id=found[0])
    assert record.message.startswith("feed stale: newest scan 2026-03-01T") and record.slot is not None


def test_transient_errors_are_retried_then_fail_with_the_reason(stack: dict) -> None:
    """A storage error (here: a file where the product directory should go) is retried, boundedly."""
    r, app, settings = stack["r"], stack["app"], stack["settings"]
    input_dir = settings.input_dir("forecast-transient")
    write_blob_feed(input_dir, FEED_START, INPUT_SCANS, seed=4)
    blocker = settings.product_dir("forecast-transient")
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a directory")
    app.send_task("workers.tasks.forecast", args=["forecast-transient", str(input_dir), 2],
                  task_id="forecast-transient", queue="gpu")
    record = wait_for(r, "forecast-transient", ("successful", "failed"))
    assert record.status == "failed"
    assert record.attempts == settings.max_attempts == 3
    assert record.message.startswith("FileExistsError") and record.message.endswith("(after 3 attempts)")
    log = stack["worker"].log_text()
    assert log.count("job forecast-transient attempt") == 2  # attempts 1 and 2 were retried
