"""Synthetic radar storms: determinism, realism bounds, motion, the source and ``nowcast synth``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from cli import main as nowcast
from cli.synth import main
from model import InputError
from model.data.synthetic import (
    NO_ECHO_DBZ,
    StormGenerator,
    SyntheticRadar,
    bilinear,
    parse_grid,
    parse_start,
    power_law_noise,
)
from model.io.units import dbz_to_model


def test_same_seed_same_storm_and_other_seeds_differ() -> None:
    first = StormGenerator(np.random.default_rng(5), 48, 64).frames(6)
    again = StormGenerator(np.random.default_rng(5), 48, 64).frames(6)
    other = StormGenerator(np.random.default_rng(6), 48, 64).frames(6)
    assert first.shape == (6, 48, 64) and first.dtype == np.float32
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_storms_look_like_radar_echo() -> None:
    frames = np.stack([StormGenerator(np.random.default_rng(s), 64, 64).frames(12) for s in range(12)])
    assert np.all(np.isfinite(frames))
    assert frames.min() == NO_ECHO_DBZ and frames.max() <= 60.0
    echo = frames[frames > NO_ECHO_DBZ]
    assert echo.min() >= 12.0  # nothing between "no echo" and the detection level
    rain_fraction = (frames > 20).mean(axis=(1, 2, 3))  # per storm
    assert 0.04 <= np.median(rain_fraction) <= 0.20
    assert rain_fraction.max() < 0.45
    assert (frames > 40).any()  # convective cores exist
    # Consecutive scans are similar (advection), distant ones much less so.
    storm = frames[0]
    near = np.corrcoef(storm[5].ravel(), storm[6].ravel())[0, 1]
    far = np.corrcoef(storm[0].ravel(), storm[11].ravel())[0, 1]
    assert near > 0.6 and near > far


def test_long_feed_keeps_a_realistic_rain_fraction() -> None:
    frames = StormGenerator(np.random.default_rng(7), 64, 64).frames(150)
    fraction = (frames > 20).mean(axis=(1, 2))
    # Growth and decay move it around, but the storm neither dies nor floods the domain.
    assert 0.0 < fraction.min() and fraction.max() < 0.45
    assert 0.04 <= np.median(fraction) <= 0.20


def test_echo_moves_the_way_extrapolation_expects() -> None:
    from model.baselines import extrapolation, persistence

    frames = StormGenerator(np.random.default_rng(3), 96, 96).frames(10)
    forecast, stale = extrapolation(frames[:6], 4), persistence(frames[:6], 4)
    inner = (slice(None), slice(16, -16), slice(16, -16))
    error_extrapolation = np.abs(forecast - frames[6:])[inner].mean()
    error_persistence = np.abs(stale - frames[6:])[inner].mean()
    assert error_extrapolation < 0.8 * error_persistence


def test_noise_bands_and_bilinear_sampling() -> None:
    large, small = power_law_noise(np.random.default_rng(0), (64, 32), 1.5, 16.0)
    assert large.var() + small.var() == pytest.approx(1.0, rel=1e-4)
    assert abs(float(np.mean(large * small))) < 0.05  # disjoint spectra: uncorrelated
    fields = np.arange(12, dtype=np.float32).reshape(1, 3, 4)
    np.testing.assert_allclose(bilinear(fields, np.array([0.5]), np.array([1.25]), wrap=False), [[3.25]])
    # Wrapping: halfway between the last column (3) and the first (0) of row 0.
    np.testing.assert_allclose(bilinear(fields, np.array([0.0]), np.array([3.5]), wrap=True), [[1.5]])
    np.testing.assert_allclose(bilinear(fields, np.array([-3.0]), np.array([9.0]), wrap=False), [[3.0]])


def test_source_is_deterministic_and_splits_are_distinct_storms() -> None:
    source = SyntheticRadar(seed=1, height=32, width=40, input_length=3, output_length=2,
                            valid_sequences=3, test_sequences=2)
    assert (source.total_length, source.channels, source.height, source.width) == (5, 1, 32, 40)
    batch = source.train_batch(4, 2)
    assert batch.shape == (2, 5, 1, 32, 40) and batch.dtype == np.float32
    assert batch.min() >= 0.0 and batch.max() <= 1.0
    np.testing.assert_array_equal(batch, SyntheticRadar(seed=1, height=32, width=40, input_length=3,
                                                        output_length=2).train_batch(4, 2))
    np.testing.assert_array_equal(batch[0, :, 0], dbz_to_model(source.sequence_dbz("train", 4, 0)))
    valid = np.concatenate(list(source.eval_batches("valid", 2)))
    test = np.concatenate(list(source.eval_batches("test", 2)))
    assert valid.shape[0] == 3 and test.shape[0] == 2
    assert not np.array_equal(valid[0], test[0]) and not np.array_equal(valid[0], batch[0])
    np.testing.assert_array_equal(np.concatenate(list(source.eval_batches("valid", 1))), valid)


def test_grid_and_start_parsing() -> None:
    assert parse_grid("256x128") == (256, 128)
    with pytest.raises(ValueError, match="256x256"):
        parse_grid("256")
    with pytest.raises(ValueError, match="within 8..4096"):
        parse_grid("4x4")
    assert parse_start("2024-06-01T12:00Z", 3) == dt.datetime(2024, 6, 1, 12, tzinfo=dt.UTC)
    now = dt.datetime(2024, 6, 1, 12, 9, 30, tzinfo=dt.UTC)
    assert parse_start(None, 3, now=now) == dt.datetime(2024, 6, 1, 11, 54, tzinfo=dt.UTC)
    with pytest.raises(ValueError, match="ISO-8601"):
        parse_start("yesterday", 3)


def test_synth_cli_writes_cf_scans(tmp_path: Path) -> None:
    from model.io.netcdf import read_scans

    out = tmp_path / "feed"
    assert main(["--out", str(out), "--scans", "3", "--grid", "24x40", "--seed", "2",
                 "--start", "2024-06-01T12:00Z"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["scan_20240601T1200Z.nc", "scan_20240601T1206Z.nc", "scan_20240601T1212Z.nc"]
    sequence = read_scans(out)
    expected = StormGenerator(np.random.default_rng(2), 24, 40).frames(3)
    np.testing.assert_array_equal(sequence.dbz, expected)
    assert str(sequence.times[0]) == "2024-06-01T12:00:00"
    assert sequence.x.shape == (40,) and sequence.y.shape == (24,)
    assert sequence.x[1] - sequence.x[0] == 1000.0 and sequence.y[0] > sequence.y[1]  # north up
    assert sequence.grid_mapping["grid_mapping_name"] == "azimuthal_equidistant"


def test_synth_cli_reports_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(InputError, match="--scans must be at least 1"):
        main(["--out", str(tmp_path), "--scans", "0"])
    assert nowcast(["synth", "--out", str(tmp_path), "--scans", "2", "--grid", "big"]) == 2
    assert "nowcast synth: error: grid must look like 256x256" in capsys.readouterr().err
