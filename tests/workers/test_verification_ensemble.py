"""Live verification of ensemble products: real redis-server, real ensemble netCDF products and scans."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
import xarray as xr

from model.io import netcdf as radar_io
from model.verification.metrics import SkillScores
from model.verification.probabilistic import EnsembleScores
from tests.utils.redis_server import RedisServer
from tests.workers.conftest import FEED_START, blob_field
from tests.workers.verification_builders import make_product, shifted, verification_setup
from workers import skill_store, skill_summary, verification
from workers.settings import WorkerSettings

DB = 9  # this module's Redis database
SLOT = FEED_START + dt.timedelta(minutes=30)  # leads 6, 12, 18 min valid 12:36 .. 12:48
LEADS = 3
SHIFTS = (0, 1, 2, 4)  # four members: the truth moved 0, 1, 2 and 4 pixels east


@pytest.fixture()
def setup(redis_server: RedisServer, tmp_path: Path) -> Iterator[tuple[WorkerSettings, redis.Redis]]:
    yield from verification_setup(redis_server, tmp_path, DB)


def truth() -> np.ndarray:
    index = int((SLOT - FEED_START) / dt.timedelta(minutes=6))
    return blob_field(index + 1 + LEADS)[index + 1:]


def observed(feed: Path) -> np.ndarray:
    """(L, H, W) dBZ: the scans at the slot's valid times, as the files hold them."""
    valid = [SLOT + dt.timedelta(minutes=6 * (k + 1)) for k in range(LEADS)]
    return np.stack([radar_io.read_scans(feed / f"scan_{t:%Y%m%dT%H%M}Z.nc").dbz[0] for t in valid])


def test_an_ensemble_slot_stores_probabilistic_sums_equal_to_ensemblescores_on_the_files(
        setup: tuple[WorkerSettings, redis.Redis]) -> None:
    settings, r = setup
    members = np.stack([shifted(truth(), s) for s in SHIFTS])  # (4, L, H, W)
    model = make_product(settings, r, slot=SLOT, stream="model", dbz=members, source="predrnn")
    baseline = make_product(settings, r, slot=SLOT, stream="extrapolation", dbz=shifted(truth(), 3),
                            source="extrapolation")
    summary = verification.sweep(settings, r, now=SLOT + dt.timedelta(minutes=20))
    assert summary["leads"]["scored"] == 2 * LEADS

    stored = skill_store.read_record(r, job_id=model.job_id)
    assert stored is not None and stored.complete and stored.meta["members"] == 4
    with xr.open_dataset(model.products["netcdf"]) as product:
        file_members = product["reflectivity"].values  # (M, L, H, W)
        file_mean = product["reflectivity_ensemble_mean"].values
    scans = observed(settings.feed_dir)
    expected = EnsembleScores.init(LEADS, 4)
    expected.accum(scans[None], file_members[None])
    want = expected.compute()
    deterministic = SkillScores.init(LEADS, verification.THRESHOLDS, verification.SCALES)
    deterministic.accum(scans[None], file_mean[None])
    for row, lead in enumerate((6, 12, 18)):
        entry = stored.leads[lead]
        assert entry["status"] == "scored" and entry["ensemble"]["members"] == 4
        got = skill_store.ensemble_of(entry).compute()
        assert got["crps_dbz"] == [want["crps_dbz"][row]]
        assert got["pixels"] == [want["pixels"][row]] == [members.shape[-1] * members.shape[-2]]
        for name in ("20dBZ", "30dBZ", "40dBZ"):
            assert got["brier"][name] == [want["brier"][name][row]]
            assert got["reliability"][name]["forecasts"] == [want["reliability"][name]["forecasts"][row]]
            assert got["reliability"][name]["observed"] == [want["reliability"][name]["observed"][row]]
        # The deterministic sums of an ensemble slot are those of its ensemble mean.
        assert entry["sums"] == skill_store.sums_of(deterministic, row)
    assert want["crps_dbz"][0] > 0  # the shifted members are not perfect
    # A member at the truth's place and three beside it: CRPS below the mean error of one shifted forecast.
    one = EnsembleScores.init(LEADS, 1)
    one.accum(scans[None], shifted(truth(), 2)[None, None])
    assert all(c < d for c, d in zip(want["crps_dbz"], one.compute()["crps_dbz"], strict=True))

    # The deterministic stream has no ensemble sums; the summary reports them per lead for the model only.
    plain = skill_store.read_record(r, job_id=baseline.job_id)
    assert plain is not None and all("ensemble" not in e for e in plain.leads.values())
    assert "members" not in plain.meta
    report = skill_summary.summarize([stored])
    for row, item in enumerate(report["leads"]):
        ensemble = item["ensemble"]
        assert ensemble["members"] == 4 and ensemble["slots"] == 1
        assert ensemble["crps_dbz"] == pytest.approx(want["crps_dbz"][row], rel=0, abs=0)
        assert ensemble["brier"] == {name: want["brier"][name][row] for name in ("20dBZ", "30dBZ", "40dBZ")}
        assert 0 <= min(ensemble["brier"].values()) and max(ensemble["brier"].values()) <= 1
        assert sum(ensemble["reliability"]["30dBZ"]["forecasts"]) == ensemble["pixels"]
        assert ensemble["reliability"]["30dBZ"]["probability"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert all("ensemble" not in item for item in skill_summary.summarize([plain])["leads"])


def test_two_ensemble_slots_merge_their_sums_and_a_rerun_settles_nothing_twice(
        setup: tuple[WorkerSettings, redis.Redis]) -> None:
    settings, r = setup
    records = []
    for k, slot in enumerate((SLOT - dt.timedelta(minutes=6), SLOT)):
        index = int((slot - FEED_START) / dt.timedelta(minutes=6))
        field = blob_field(index + 1 + LEADS)[index + 1:]
        records.append(make_product(settings, r, slot=slot, stream="model", source="predrnn",
                                    dbz=np.stack([shifted(field, s + k) for s in SHIFTS])))
    verification.sweep(settings, r, now=SLOT + dt.timedelta(minutes=20))
    assert verification.sweep(settings, r, now=SLOT + dt.timedelta(minutes=25))["products"] == 0
    stored = [skill_store.read_record(r, job_id=rec.job_id) for rec in records]
    report = skill_summary.summarize(stored)  # type: ignore[arg-type]
    lead6 = report["leads"][0]
    assert lead6["lead_minutes"] == 6 and lead6["ensemble"]["slots"] == 2
    merged = skill_store.ensemble_of(stored[0].leads[6]).merge(skill_store.ensemble_of(stored[1].leads[6]))
    assert lead6["ensemble"]["crps_dbz"] == merged.compute()["crps_dbz"][0]
    assert lead6["ensemble"]["pixels"] == 2 * stored[0].leads[6]["ensemble"]["pixels"]
