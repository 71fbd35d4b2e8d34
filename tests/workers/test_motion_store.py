"""One Lucas-Kanade field per slot: the extrapolation forecast and the Lagrangian model's motion of the
same scans share the field through the store, bit for bit what each computes alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model.baselines import extrapolation, sharing_motion
from model.io.units import DEFAULT_SCALING
from model.network.lagrangian import motion_of
from tests.workers.conftest import blob_field
from workers.motion_store import FileMotionStore, shared_motion
from workers.settings import WorkerSettings

ZERO = DEFAULT_SCALING["dbz_min"]


def test_the_model_and_extrapolation_share_one_field(tmp_path: Path) -> None:
    scans = blob_field(6, (32, 48))
    alone_velocity = motion_of(scans, 3, zerovalue=ZERO).velocity
    alone_forecast = extrapolation(scans, 3, zerovalue=ZERO)
    store = FileMotionStore(tmp_path / "motion")  # no scope: named by the frames' bytes
    with sharing_motion(store):
        shared_forecast = extrapolation(scans, 3, zerovalue=ZERO)  # computes and writes the field
        shared_velocity = motion_of(scans, 3, zerovalue=ZERO).velocity  # reads it
    assert (store.misses, store.hits) == (1, 1)
    assert len(list((tmp_path / "motion").glob("*.npy"))) == 1
    assert not list((tmp_path / "motion").glob(".*"))  # no temporary left
    np.testing.assert_array_equal(shared_velocity, alone_velocity)
    np.testing.assert_array_equal(shared_forecast, alone_forecast)
    # Other scans are another field; outside the block nothing is stored.
    with sharing_motion(store):
        motion_of(blob_field(6, (32, 48), seed=1), 3, zerovalue=ZERO)
    motion_of(scans, 3, zerovalue=ZERO)
    assert (store.misses, store.hits) == (2, 1)


def test_an_unwritable_store_still_forecasts(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    scans = blob_field(4, (24, 32))
    with shared_motion(WorkerSettings(data_dir=blocked)) as store:
        forecast = extrapolation(scans, 2, zerovalue=ZERO)
    assert store.misses == 1 and forecast.shape == (2, 24, 32)


def test_a_slot_scope_shares_the_field_across_the_model_space_round_trip(tmp_path: Path) -> None:
    from model.io.units import dbz_to_model, model_to_dbz

    scans = blob_field(6, (32, 48))
    round_trip = model_to_dbz(dbz_to_model(scans, DEFAULT_SCALING), DEFAULT_SCALING)  # the model job's view
    assert not np.array_equal(round_trip, scans)
    store = FileMotionStore(tmp_path, scope="coast-20260301T1230Z")
    with sharing_motion(store):
        first = extrapolation(scans, 3, zerovalue=ZERO)
        velocity = motion_of(round_trip, 3, zerovalue=ZERO).velocity
    assert (store.misses, store.hits) == (1, 1)
    assert [p.name.split("-")[:2] for p in tmp_path.glob("*.npy")] == [["coast", "20260301T1230Z"]]
    np.testing.assert_array_equal(first, extrapolation(scans, 3, zerovalue=ZERO))
    # The shared field is the one of the scans as read; the round trip's own differs by rounding only.
    own = motion_of(round_trip, 3, zerovalue=ZERO).velocity
    np.testing.assert_allclose(velocity, own, atol=1e-3)
