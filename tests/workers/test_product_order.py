"""workers.products: the observed products written during the forecast (ObservedProducts) and the
netCDF beside the quicklooks give the same files as writing them one after the other, every named
file is complete when write_products returns, and an error on any thread reaches the caller."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from model.io import netcdf as radar_io
from tests.workers.conftest import FEED_START, blob_field, write_blob_feed
from workers import runtime
from workers.products import OBSERVED_NAME, ObservedProducts, write_products

LEADS = [6.0, 12.0]


def _inputs(tmp_path: Path) -> tuple[radar_io.RadarSequence, runtime.Forecast]:
    sequence = radar_io.read_scans(write_blob_feed(tmp_path / "feed", FEED_START, 4))
    return sequence, runtime.Forecast(blob_field(6)[4:], "predrnn", "PredRNN-v2", "abc", "abc", None, {})


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_observed_during_the_forecast_gives_the_same_products(tmp_path: Path) -> None:
    sequence, forecast = _inputs(tmp_path)
    inline = write_products(tmp_path / "inline", forecast, sequence, lead_minutes=LEADS, observed_scans=3)
    timings: dict[str, float] = {}
    with ObservedProducts(tmp_path / "early", sequence, count=3) as observed:
        early = write_products(tmp_path / "early", forecast, sequence, lead_minutes=LEADS, observed_scans=3,
                               observed=observed, timings=timings)
    a, b = str(tmp_path / "inline"), str(tmp_path / "early")
    assert early == {k: (v.replace(a, b) if isinstance(v, str) else {m: p.replace(a, b) for m, p in v.items()})
                     for k, v in inline.items()}
    named = [early["netcdf"], early["observed"], early["gif"], *early["png"].values(), *early["obs_png"].values()]
    assert sorted(Path(p).name for p in named) == sorted(_files(tmp_path / "early"))  # no file unnamed or missing
    inline_files, early_files = _files(tmp_path / "inline"), _files(tmp_path / "early")
    for name in inline_files:  # pictures byte for byte; netCDF by content (its history stamp has the time)
        if name.endswith((".png", ".gif")):
            assert early_files[name] == inline_files[name], name
    for name in ("forecast.nc", OBSERVED_NAME):
        with xr.open_dataset(tmp_path / "inline" / name) as a, xr.open_dataset(tmp_path / "early" / name) as b:
            np.testing.assert_array_equal(a["reflectivity"].values, b["reflectivity"].values)
    for key in ("write_forecast_nc", "write_observed_nc", "write_netcdf", "write_pngs", "write_gif",
                "write_observed", "write_observed_wait", "write_netcdf_wait"):
        assert timings[key] >= 0.0, key


def test_an_error_on_a_writer_thread_reaches_the_caller(tmp_path: Path) -> None:
    sequence, forecast = _inputs(tmp_path)
    blocked = tmp_path / "blocked"
    (blocked / OBSERVED_NAME).mkdir(parents=True)  # observed.nc cannot be renamed over a directory
    with ObservedProducts(blocked, sequence) as observed, pytest.raises(OSError):
        write_products(blocked, forecast, sequence, lead_minutes=LEADS, observed=observed)
    png_blocked = tmp_path / "png_blocked"
    (png_blocked / "lead_012.png").mkdir(parents=True)
    with pytest.raises(OSError):
        write_products(png_blocked, forecast, sequence, lead_minutes=LEADS)
    # Nothing was left writing: the netCDF thread finished before the error came back.
    assert not [p.name for p in png_blocked.iterdir() if p.name.endswith(".tmp")]
