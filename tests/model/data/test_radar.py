"""Radar scan directories as a sequence source: windows, gaps and the time-block split."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from model.data.radar import RadarDatasetError, RadarScans
from model.io.netcdf import write_scans
from model.io.units import dbz_to_model

START = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)  # a multiple of 72 minutes since the epoch


@pytest.fixture()
def scan_dir(tmp_path: Path) -> Path:
    """48 six-minute scans of 6 x 5 frames whose value is the scan number in dBZ; scan 20 missing."""
    numbers = [n for n in range(48) if n != 20]
    dbz = np.stack([np.full((6, 5), float(n), dtype=np.float32) for n in numbers])
    dbz[3, 0, 0] = np.nan  # no data becomes 0 in model space
    times = [START + dt.timedelta(minutes=6 * n) for n in numbers]
    write_scans(tmp_path, dbz, times, x=np.arange(5) * 1000.0, y=np.arange(6) * 1000.0)
    return tmp_path


def _scan_numbers(batch: np.ndarray) -> list[list[int]]:
    """Recover the scan numbers from model-space frames (value = scan number in dBZ)."""
    dbz = batch[:, :, 0, -1, -1].astype(np.float64) * 70.0 - 10.0
    return np.rint(dbz).astype(int).tolist()


def test_time_blocks_guards_and_gaps(scan_dir: Path) -> None:
    # Blocks of 12 scans: 0-11 train, 12-23 train, 24-35 valid, 36-47 test; windows of 4.
    source = RadarScans(root=scan_dir, input_length=2, output_length=2, block_scans=12,
                        split_pattern=("train", "train", "valid", "test"))
    assert (source.height, source.width, source.total_length) == (6, 5, 4)
    assert source.split_size("train") == 9 + 5  # 0..8, then 12..16 (scan 20 is missing)
    valid = np.concatenate(list(source.eval_batches("valid", 8)))
    test = np.concatenate(list(source.eval_batches("test", 1)))
    # The first 4 scans of a block after another split are dropped; eval windows do not overlap.
    assert _scan_numbers(valid) == [[28, 29, 30, 31], [32, 33, 34, 35]]
    assert _scan_numbers(test) == [[40, 41, 42, 43], [44, 45, 46, 47]]
    train = np.concatenate([source.train_batch(k, 7) for k in range(2)])
    starts = sorted(row[0] for row in _scan_numbers(train))
    assert starts == [*range(0, 9), *range(12, 17)]  # one epoch = every window once
    for row in _scan_numbers(train):
        assert row == list(range(row[0], row[0] + 4))  # never across the gap
    assert train.dtype == np.float32
    np.testing.assert_array_equal(source.train_batch(1, 7), train[7:])


def test_values_are_model_space_with_no_data_as_zero(scan_dir: Path) -> None:
    source = RadarScans(root=scan_dir, input_length=2, output_length=2, block_scans=12,
                        split_pattern=("train",), train_stride=4)
    # Indices into the sorted scans: scan 20 is missing, so scan 24 has index 23.
    assert source.window_starts("train") == [0, 4, 8, 12, 16, 23, 27, 31, 35, 39, 43]
    batch = source.train_batch(0, 11)
    first = batch[[row[0] for row in _scan_numbers(batch)].index(0)]
    np.testing.assert_allclose(first[:, 0, -1, -1], dbz_to_model(np.arange(4.0)), atol=2e-4)
    assert first[3, 0, 0, 0] == 0.0  # the NaN pixel of scan 3
    with pytest.raises(RadarDatasetError, match="no valid windows; add scans or lower block_scans"):
        next(source.eval_batches("valid", 2))


def test_bad_directories(tmp_path: Path) -> None:
    with pytest.raises(RadarDatasetError, match="no .nc scans found"):
        RadarScans(root=tmp_path)
    (tmp_path / "broken.nc").write_text("not netCDF")
    with pytest.raises(RadarDatasetError, match="none of the 1 files could be read"):
        RadarScans(root=tmp_path)
    with pytest.raises(ValueError, match="split_pattern may only name"):
        RadarScans(root=tmp_path, split_pattern=("train", "holdout"))
