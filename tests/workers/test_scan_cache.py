"""workers.scan_cache: the sequence read_scans gives, each feed file decoded once, and read_scans' own
error for anything that is not one sequence."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import numpy as np
import pytest

from model.io import netcdf as radar_io
from tests.workers.conftest import FEED_START, write_blob_feed
from workers import scan_cache


def _same(a: radar_io.RadarSequence, b: radar_io.RadarSequence) -> None:
    np.testing.assert_array_equal(a.dbz, b.dbz)
    np.testing.assert_array_equal(a.times, b.times)
    assert a.source_files == b.source_files and a.input_unit == b.input_unit
    assert a.grid.same_as(b.grid) is None


def test_sliding_windows_match_read_scans_and_decode_each_file_once(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    files = sorted(write_blob_feed(tmp_path, FEED_START, 6))
    decoded: list[Path] = []
    real = scan_cache.read_scans

    def counting(paths, **kwargs):  # type: ignore[no-untyped-def]
        decoded.extend(Path(p) for p in paths)
        return real(paths, **kwargs)

    monkeypatch.setattr(scan_cache, "read_scans", counting)
    monkeypatch.setattr(scan_cache, "_KEPT", type(scan_cache._KEPT)())
    for start in range(3):
        window = files[start:start + 4]
        got = scan_cache.read_feed_scans(list(reversed(window)), timestep_minutes=6, min_scans=4)
        _same(got, radar_io.read_scans(window, timestep_minutes=6, min_scans=4))
        got.dbz[:] = 0.0  # the caller's array is its own: the kept scans do not change
    assert sorted(decoded) == files  # six files, each decoded once over three windows
    again = scan_cache.read_feed_scans(files[2:], timestep_minutes=6, min_scans=4)
    _same(again, radar_io.read_scans(files[2:], timestep_minutes=6, min_scans=4))


def test_a_rewritten_scan_is_read_again(tmp_path: Path) -> None:
    files = sorted(write_blob_feed(tmp_path, FEED_START, 3))
    first = scan_cache.read_feed_scans(files, timestep_minutes=6)
    replacement = tmp_path / "new"
    (new,) = write_blob_feed(replacement, FEED_START + dt.timedelta(minutes=12), 1, seed=5)
    os.replace(new, files[-1])  # as a feed does: a whole new file renamed over the old name
    second = scan_cache.read_feed_scans(files, timestep_minutes=6)
    assert not np.array_equal(first.dbz[-1], second.dbz[-1])
    _same(second, radar_io.read_scans(files, timestep_minutes=6))


def test_not_one_sequence_raises_what_read_scans_raises(tmp_path: Path) -> None:
    files = sorted(write_blob_feed(tmp_path, FEED_START, 4))
    gap = [files[0], files[1], files[3]]
    with pytest.raises(radar_io.MissingScanError) as plain:
        radar_io.read_scans(gap, timestep_minutes=6)
    with pytest.raises(radar_io.MissingScanError) as cached:
        scan_cache.read_feed_scans(gap, timestep_minutes=6)
    assert str(cached.value) == str(plain.value)
    with pytest.raises(radar_io.TooFewScansError):
        scan_cache.read_feed_scans(files, timestep_minutes=6, min_scans=5)
    files[0].write_bytes(b"not netcdf")
    with pytest.raises(radar_io.NotNetCDFError, match=files[0].name):
        scan_cache.read_feed_scans(files, timestep_minutes=6)
