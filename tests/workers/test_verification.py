"""The verification sweep called directly against a real redis-server and real netCDF files."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from model.io import netcdf as radar_io
from tests.utils.redis_server import RedisServer
from tests.workers.conftest import FEED_START, blob_field, write_blob_feed
from tests.workers.verification_builders import direct_skill, make_product, shifted, verification_setup
from workers import jobs, skill_store, verification
from workers.settings import WorkerSettings

DB = 6  # this module's Redis database
SLOT = FEED_START + dt.timedelta(minutes=30)  # 12:30; leads 6, 12, 18 min valid 12:36 .. 12:48
LEADS = 3


@pytest.fixture()
def setup(redis_server: RedisServer, tmp_path: Path) -> Iterator[tuple[WorkerSettings, redis.Redis]]:
    yield from verification_setup(redis_server, tmp_path, DB)


def products(settings: WorkerSettings, r: redis.Redis, slot: dt.datetime = SLOT) -> dict[str, jobs.JobRecord]:
    """The slot's two products: the truth shifted by 1 pixel ("model") and by 3 ("extrapolation")."""
    index = int((slot - FEED_START) / dt.timedelta(minutes=6))
    truth = blob_field(index + 1 + LEADS)[index + 1:]
    return {
        "model": make_product(settings, r, slot=slot, stream="model", dbz=shifted(truth, 1), source="predrnn"),
        "extrapolation": make_product(settings, r, slot=slot, stream="extrapolation", dbz=shifted(truth, 3),
                                      source="extrapolation"),
    }


def after(minutes: float) -> dt.datetime:
    return SLOT + dt.timedelta(minutes=minutes)


def test_sweep_stores_the_sums_skillscores_gives_on_the_files(setup: tuple[WorkerSettings, redis.Redis]) -> None:
    settings, r = setup
    made = products(settings, r)
    summary = verification.sweep(settings, r, now=after(20))
    assert summary["leads"]["scored"] == 2 * LEADS and summary["products"] == 2
    for stream, record in made.items():
        stored = skill_store.read_record(r, job_id=record.job_id)
        assert stored is not None and stored.complete and stored.meta["stream"] == stream
        merged = None
        for entry in stored.leads.values():
            one = skill_store.skill_of(entry, verification.THRESHOLDS, verification.SCALES)
            merged = one if merged is None else merged.merge(one)
        expected = direct_skill(Path(record.products["netcdf"]), settings.feed_dir, [6, 12, 18]).compute()
        got = merged.compute()
        assert got["contingency"] == expected["contingency"]
        assert got["fss"] == expected["fss"] and got["csi"] == expected["csi"]
    # Once complete, a sweep does nothing.
    assert verification.sweep(settings, r, now=after(25))["products"] == 0


def test_a_gap_in_the_feed_is_missing_not_a_miss(setup: tuple[WorkerSettings, redis.Redis]) -> None:
    settings, r = setup
    (settings.feed_dir / "scan_20260301T1242Z.nc").unlink()  # lead 12 of the 12:30 slot
    record = products(settings, r)["model"]
    verification.sweep(settings, r, now=after(20))
    stored = skill_store.read_record(r, job_id=record.job_id)
    assert stored is not None and sorted(stored.leads) == [6, 18] and not stored.complete  # 12 still awaited
    verification.sweep(settings, r, now=after(12 + 30))  # the grace has passed
    stored = skill_store.read_record(r, job_id=record.job_id)
    assert stored is not None and stored.complete
    assert stored.leads[12]["status"] == "missing" and "12:42" in stored.leads[12]["reason"].replace("T", " ")
    assert "sums" not in stored.leads[12]
    assert stored.leads[6]["status"] == stored.leads[18]["status"] == "scored"


def test_a_sweep_with_no_new_scan_does_not_read_the_product(setup: tuple[WorkerSettings, redis.Redis]) -> None:
    settings, r = setup
    for name in ("scan_20260301T1242Z.nc", "scan_20260301T1248Z.nc"):  # leads 12 and 18 of the 12:30 slot
        (settings.feed_dir / name).unlink()
    made = products(settings, r)
    first = verification.sweep(settings, r, now=after(20))
    assert first["leads"] == {"scored": 2, "missing": 0, "fallback": 0, "waiting": 4}
    # The model's product becomes unreadable. A sweep with no new scan answers from the stored
    # description: both open leads of each product wait (a read would have said "unreadable", one wait).
    Path(made["model"].products["netcdf"]).write_bytes(b"not netCDF")
    assert verification.sweep(settings, r, now=after(21))["leads"]["waiting"] == 4
    # Once a scan for an open lead lands, the product is read again: the damaged one waits, the other scores.
    write_blob_feed(settings.feed_dir, FEED_START, 9)
    third = verification.sweep(settings, r, now=after(22))
    assert third["leads"] == {"scored": 2, "missing": 0, "fallback": 0, "waiting": 1}
    assert skill_store.completed(r, [made["model"].job_id, made["extrapolation"].job_id]) == [False, True]


def test_an_interrupted_sweep_resumes_without_losing_or_duplicating(
        setup: tuple[WorkerSettings, redis.Redis], monkeypatch: pytest.MonkeyPatch) -> None:
    settings, r = setup
    made = products(settings, r)
    real_write = skill_store.write_leads
    writes = {"n": 0}

    def dying_write(*args: object, **kwargs: object) -> dict[int, bool]:
        if writes["n"] == 1:
            raise redis.ConnectionError("worker lost mid-sweep")  # as if the process died here
        writes["n"] += 1
        return real_write(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(skill_store, "write_leads", dying_write)
    with pytest.raises(redis.ConnectionError):
        verification.sweep(settings, r, now=after(20))
    monkeypatch.setattr(skill_store, "write_leads", real_write)
    written = sum(len(rec.leads) for job_id in [m.job_id for m in made.values()]
                  if (rec := skill_store.read_record(r, job_id=job_id)))
    assert written == LEADS  # the first product's leads, in one pipeline
    resumed = verification.sweep(settings, r, now=after(20))
    assert resumed["leads"]["scored"] == LEADS  # only what was left
    assert verification.sweep(settings, r, now=after(21))["leads"]["scored"] == 0
    for record in made.values():
        stored = skill_store.read_record(r, job_id=record.job_id)
        assert stored is not None and sorted(stored.leads) == [6, 12, 18]
        expected = direct_skill(Path(record.products["netcdf"]), settings.feed_dir, [6, 12, 18]).compute()
        merged = None
        for entry in stored.leads.values():
            one = skill_store.skill_of(entry, verification.THRESHOLDS, verification.SCALES)
            merged = one if merged is None else merged.merge(one)
        assert merged.compute()["contingency"] == expected["contingency"]


def test_a_fallback_product_is_not_scored_as_the_model(setup: tuple[WorkerSettings, redis.Redis]) -> None:
    settings, r = setup
    truth = blob_field(7 + LEADS)[6:6 + LEADS]
    record = make_product(settings, r, slot=SLOT, stream="model", dbz=truth, source="extrapolation")
    verification.sweep(settings, r, now=after(20))
    stored = skill_store.read_record(r, job_id=record.job_id)
    assert stored is not None and stored.complete
    assert {entry["status"] for entry in stored.leads.values()} == {"fallback"}


def test_records_older_than_the_retention_are_pruned(setup: tuple[WorkerSettings, redis.Redis]) -> None:
    settings, r = setup
    made = products(settings, r)
    verification.sweep(settings, r, now=after(20))
    assert skill_store.read_record(r, job_id=made["model"].job_id) is not None
    later = after(20) + dt.timedelta(days=settings.verification_retention_days, minutes=1)
    assert verification.sweep(settings, r, now=later)["pruned"] == 2
    assert skill_store.read_record(r, job_id=made["model"].job_id) is None
    assert not any(skill_store.completed(r, [m.job_id for m in made.values()]))
    assert radar_io.read_scans(Path(made["model"].products["netcdf"])).dbz.shape[0] == LEADS  # products untouched
