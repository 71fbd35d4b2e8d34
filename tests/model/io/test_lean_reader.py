"""The lean reader gives read_scans' arrays bit for bit on the project's own files, and its errors otherwise."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import xarray as xr

from model.io import lean_reader
from model.io import netcdf as rio

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
MAPPING = {"grid_mapping_name": "transverse_mercator", "longitude_of_central_meridian": 9.0,
           "latitude_of_projection_origin": 0.0, "scale_factor_at_central_meridian": 0.9996,
           "false_easting": 500000.0, "false_northing": 0.0}


def times(count: int) -> list[dt.datetime]:
    return [T0 + dt.timedelta(minutes=6 * k) for k in range(count)]


def field(count: int, h: int = 12, w: int = 17, seed: int = 0) -> np.ndarray:
    """(count, H, W) dBZ with missing values: one corner pixel per frame and a missing block in frame 1."""
    dbz = np.random.default_rng(seed).uniform(-10, 60, (count, h, w)).astype(np.float32)
    dbz[:, 0, 0] = np.nan
    if count > 1:
        dbz[1, 3:6, 4:9] = np.nan
    return dbz


def write_feed(directory: Path, dbz: np.ndarray, mapping: dict | None = None) -> list[Path]:
    h, w = dbz.shape[1:]
    return rio.write_scans(directory, dbz, times(dbz.shape[0]), x=500_000.0 + 1000.0 * np.arange(w),
                           y=5_000_000.0 - 1000.0 * np.arange(h), grid_mapping=MAPPING if mapping is None else mapping)


def write_product(path: Path, dbz: np.ndarray, grid: rio.Grid) -> Path:
    return rio.write_forecast(path, dbz, reference_time=T0, lead_minutes=[6.0 * (k + 1) for k in range(dbz.shape[0])],
                              grid=grid, model="test", model_version="test", checkpoint_sha256="",
                              source="predrnn", input_times=[T0])


def assert_same_bits(lean: np.ndarray, reference: np.ndarray) -> None:
    """Same dtype, shape and bytes: NaN where the other has NaN, and every value to the last bit."""
    assert lean.dtype == reference.dtype == np.float32 and lean.shape == reference.shape
    assert lean.tobytes() == reference.tobytes()


def assert_same_grid(lean: rio.Grid, reference: rio.Grid) -> None:
    for name in ("y_name", "x_name", "shape", "y_attrs", "x_attrs", "grid_mapping_variable", "lat", "lon"):
        assert getattr(lean, name) == getattr(reference, name), name
    assert lean.y.dtype == reference.y.dtype and lean.y.tobytes() == reference.y.tobytes()
    assert lean.x.dtype == reference.x.dtype and lean.x.tobytes() == reference.x.tobytes()
    assert lean.grid_mapping.keys() == reference.grid_mapping.keys()
    for key, value in reference.grid_mapping.items():  # some attributes are arrays (towgs84)
        assert np.array_equal(lean.grid_mapping[key], value), key
    assert reference.same_as(lean) is None


def test_scans_with_missing_values_read_bit_for_bit(tmp_path: Path) -> None:
    dbz = field(3)
    for path, expected in zip(write_feed(tmp_path, dbz), dbz, strict=True):
        frame, grid = lean_reader.read_scan_frame(path)
        reference = rio.read_scans(path)
        assert_same_bits(frame, reference.dbz[0])
        assert np.isnan(frame[0, 0]) and np.array_equal(frame, expected, equal_nan=True)
        assert_same_grid(grid, reference.grid)
        with lean_reader.open_frames(path) as frames:
            assert frames.lean and np.array_equal(frames.times, reference.times)


def test_a_latitude_longitude_feed_is_read_lean_and_the_same(tmp_path: Path) -> None:
    dbz = field(1)
    h, w = dbz.shape[1:]
    path = rio.write_scans(tmp_path, dbz, times(1), x=8.0 + 0.01 * np.arange(w), y=47.0 + 0.01 * np.arange(h),
                           grid_mapping={"grid_mapping_name": "latitude_longitude"})[0]
    frame, grid = lean_reader.read_scan_frame(path)
    reference = rio.read_scans(path)
    assert_same_bits(frame, reference.dbz[0])
    assert_same_grid(grid, reference.grid)
    with lean_reader.open_frames(path) as frames:
        assert frames.lean and grid.y_name == "lat"


def test_product_leads_read_alone_equal_the_whole_product(tmp_path: Path) -> None:
    feed = write_feed(tmp_path / "feed", field(1))
    dbz = field(8, seed=1)
    product = write_product(tmp_path / "forecast.nc", dbz, rio.read_scans(feed[0]).grid)
    reference = rio.read_scans(product)
    with lean_reader.open_frames(product) as frames:
        assert frames.lean
        assert np.array_equal(frames.times, reference.times) and frames.times.dtype == reference.times.dtype
        assert_same_grid(frames.grid, reference.grid)
        assert_same_bits(frames.read(list(range(8))), reference.dbz)
        for indices in ([1], [2, 3, 4], [0, 5, 7], [7, 1]):
            assert_same_bits(frames.read(indices), reference.dbz[indices])
        assert frames.read([]).shape == (0, *dbz.shape[1:])
    assert np.isnan(reference.dbz[1, 3:6, 4:9]).all()


def test_rain_rates_and_packed_data_are_left_to_read_scans(tmp_path: Path) -> None:
    """Layouts outside the project's writers fall back to read_scans and give exactly its arrays."""
    dbz = field(2)
    h, w = dbz.shape[1:]
    coords = {"time": np.array([np.datetime64(t.replace(tzinfo=None), "ns") for t in times(2)]),
              "y": np.arange(h) * 1000.0, "x": np.arange(w) * 1000.0}
    rain = xr.Dataset({"rainfall_rate": (("time", "y", "x"), np.where(np.isnan(dbz), np.nan, 2.5).astype(np.float32),
                                         {"units": "mm h-1", "standard_name": "rainfall_rate"})}, coords=coords)
    rain.to_netcdf(tmp_path / "rain.nc", engine="netcdf4")
    packed = xr.Dataset({"reflectivity": (("time", "y", "x"), dbz, {"units": "dBZ"})}, coords=coords)
    packed.to_netcdf(tmp_path / "packed.nc", engine="netcdf4",
                     encoding={"reflectivity": {"dtype": "int16", "scale_factor": 0.01, "add_offset": 0.0,
                                                "_FillValue": -32768}})
    for name in ("rain.nc", "packed.nc"):
        reference = rio.read_scans(tmp_path / name)
        with lean_reader.open_frames(tmp_path / name) as frames:
            assert not frames.lean
            assert_same_bits(frames.read([0, 1]), reference.dbz)
            assert np.array_equal(frames.times, reference.times)
        frame, _ = lean_reader.read_scan_frame(tmp_path / name)
        assert_same_bits(frame, reference.dbz[0])
    assert reference.input_unit == "dBZ" and rio.read_scans(tmp_path / "rain.nc").input_unit == "mm/h"


def same_error(path: Path, error: type[rio.RadarInputError], **kwargs: object) -> None:
    """The lean reader raises read_scans' own error for ``path``: same class, same message."""
    with pytest.raises(error) as expected:
        rio.read_scans(path, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(error) as lean:
        with lean_reader.open_frames(path, **kwargs) as frames:  # type: ignore[arg-type]
            frames.read(list(range(frames.times.size)))
    assert type(lean.value) is type(expected.value) and str(lean.value) == str(expected.value)
    assert str(path) in str(lean.value)
    with pytest.raises(error) as scan:
        lean_reader.read_scan_frame(path, **kwargs)  # type: ignore[arg-type]
    assert str(scan.value) == str(expected.value)


def edit(path: Path, variable: str, **attrs: object) -> Path:
    with netCDF4.Dataset(path, "a") as ds:
        for name, value in attrs.items():
            ds.variables[variable].setncattr(name, value)
    return path


def test_unreadable_files_give_read_scans_errors(tmp_path: Path) -> None:
    (tmp_path / "text.nc").write_bytes(b"this is not netCDF")
    same_error(tmp_path / "text.nc", rio.NotNetCDFError)
    same_error(tmp_path / "absent.nc", rio.NotNetCDFError)
    truncated = write_feed(tmp_path / "truncated", field(1, 64, 64))[0]
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    same_error(truncated, rio.NotNetCDFError)


def test_unexpected_contents_give_read_scans_errors(tmp_path: Path) -> None:
    def one_scan(name: str, dbz: np.ndarray | None = None) -> Path:
        return write_feed(tmp_path / name, field(1) if dbz is None else dbz)[0]

    same_error(edit(one_scan("units"), "reflectivity", units="dB"), rio.UnitsError)
    same_error(edit(one_scan("time"), "time", units="seconds since 1770-01-01"), rio.TimeRangeError)
    loud = field(1)
    loud[0, 2, 2] = 120.0
    same_error(one_scan("loud", loud), rio.ImplausibleValueError)
    same_error(one_scan("empty", np.full((1, 4, 5), np.nan, dtype=np.float32)), rio.AllNaNScanError)
    with netCDF4.Dataset(one_scan("axis"), "a") as ds:
        ds.variables["x"][3] = ds.variables["x"][1]
    same_error(tmp_path / "axis" / "scan_20260301T1200Z.nc", rio.GridAxisError)


def test_a_product_off_its_cadence_gives_read_scans_error(tmp_path: Path) -> None:
    feed = write_feed(tmp_path / "feed", field(1))
    grid = rio.read_scans(feed[0]).grid
    product = rio.write_forecast(tmp_path / "forecast.nc", field(3), reference_time=T0, lead_minutes=[6.0, 12.0, 21.0],
                                 grid=grid, model="test", model_version="test", checkpoint_sha256="",
                                 source="predrnn", input_times=[T0])
    same_error(product, rio.CadenceError)
    # A gap of whole steps is read_scans' MissingScanError, on any cadence the caller expects.
    gapped = write_product(tmp_path / "gapped.nc", field(3), grid)
    same_error(gapped, rio.MissingScanError, timestep_minutes=3)


def test_a_grid_with_its_grid_mapping_variable_missing(tmp_path: Path) -> None:
    path = edit(write_feed(tmp_path, field(1))[0], "reflectivity", grid_mapping="absent_crs")
    same_error(path, rio.MissingVariableError)


def test_a_real_composite_converted_to_a_cf_scan_reads_bit_for_bit(tmp_path: Path) -> None:
    """The MeteoSwiss composite (rain rates with nodata) as ``nowcast`` converts it: the feed's real layout."""
    from model.io.odim import odim_to_cf

    path = odim_to_cf(Path(__file__).parents[2] / "data" / "RFO_example_h5_grid.h5", tmp_path)[0]
    reference = rio.read_scans(path)
    frame, grid = lean_reader.read_scan_frame(path)
    assert np.isnan(reference.dbz).any() and np.isfinite(reference.dbz).any()
    assert_same_bits(frame, reference.dbz[0])
    assert_same_grid(grid, reference.grid)
    with lean_reader.open_frames(path) as frames:
        assert frames.lean and np.array_equal(frames.times, reference.times)
