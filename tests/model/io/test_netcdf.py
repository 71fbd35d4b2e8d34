"""model/io/netcdf.py on real netCDF files: round trips, every input problem, the CF product, predict."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import xarray as xr

from model.io import netcdf as rio
from model.io.units import dbz_to_rainrate, rainrate_to_dbz

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
MAPPING = {"grid_mapping_name": "transverse_mercator", "longitude_of_central_meridian": 9.0,
           "latitude_of_projection_origin": 0.0, "scale_factor_at_central_meridian": 0.9996,
           "false_easting": 500000.0, "false_northing": 0.0}


def times(count: int, start: dt.datetime = T0, step_minutes: int = 6) -> list[dt.datetime]:
    return [start + dt.timedelta(minutes=step_minutes * k) for k in range(count)]


def field(count: int = 4, h: int = 5, w: int = 7, seed: int = 0) -> np.ndarray:
    dbz = np.random.default_rng(seed).uniform(-10, 55, (count, h, w)).astype(np.float32)
    dbz[0, 0, 0] = np.nan
    return dbz


def write_feed(directory: Path, dbz: np.ndarray, stamps: list[dt.datetime]) -> list[Path]:
    h, w = dbz.shape[1:]
    return rio.write_scans(directory, dbz, stamps, x=np.arange(w) * 1000.0, y=np.arange(h) * 1000.0,
                           grid_mapping=MAPPING)


def write_raw(path: Path, variables: dict, coords: dict, attrs: dict | None = None) -> Path:
    xr.Dataset(variables, coords=coords, attrs=attrs or {}).to_netcdf(path, engine="netcdf4")
    return path


def test_write_then_read_scans_round_trips_values_times_and_grid(tmp_path: Path) -> None:
    dbz = field()
    paths = write_feed(tmp_path, dbz, times(4))
    assert [p.name for p in paths] == ["scan_20260301T1200Z.nc", "scan_20260301T1206Z.nc",
                                       "scan_20260301T1212Z.nc", "scan_20260301T1218Z.nc"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in paths]  # no temp files left
    sequence = rio.read_scans(tmp_path)
    np.testing.assert_array_equal(sequence.dbz, dbz)  # NaN in the same place, exact float32 values
    assert sequence.dbz.dtype == np.float32
    assert sequence.times.dtype == np.dtype("datetime64[s]")
    assert [str(t) for t in sequence.times] == ["2026-03-01T12:00:00", "2026-03-01T12:06:00",
                                                "2026-03-01T12:12:00", "2026-03-01T12:18:00"]
    np.testing.assert_array_equal(sequence.x, np.arange(7) * 1000.0)
    np.testing.assert_array_equal(sequence.y, np.arange(5) * 1000.0)
    assert sequence.grid_mapping["grid_mapping_name"] == "transverse_mercator"
    assert sequence.grid.grid_mapping_variable == "crs"
    assert sequence.source_files == paths
    with xr.open_dataset(paths[0], engine="netcdf4") as ds:
        assert ds.attrs["Conventions"] == "CF-1.8"
        assert ds["reflectivity"].attrs["standard_name"] == "equivalent_reflectivity_factor"
        assert ds["reflectivity"].attrs["units"] == "dBZ"
        assert ds["reflectivity"].encoding["zlib"] is True


def test_files_in_any_order_and_an_explicit_list_are_sorted_by_time(tmp_path: Path) -> None:
    paths = write_feed(tmp_path, field(), times(4))
    sequence = rio.read_scans([paths[2], paths[0], paths[3], paths[1]])
    assert sequence.source_files == paths


def test_one_file_with_a_time_dimension_and_rain_rate_in_mm_per_hour(tmp_path: Path) -> None:
    rate = np.array([[[0.0, 1.0], [5.0, np.nan]], [[10.0, 0.5], [0.0, 2.0]]], dtype=np.float32)
    path = write_raw(
        tmp_path / "rain.nc",
        {"precip": (("time", "lat", "lon"), rate, {"standard_name": "rainfall_rate", "units": "mm/h"})},
        {"time": [np.datetime64("2026-03-01T12:00"), np.datetime64("2026-03-01T12:06")],
         "lat": ("lat", [50.0, 50.1], {"standard_name": "latitude", "units": "degrees_north"}),
         "lon": ("lon", [8.0, 8.1], {"standard_name": "longitude", "units": "degrees_east"})},
    )
    sequence = rio.read_scans(path)
    assert sequence.input_unit == "mm/h"
    expected = np.maximum(rainrate_to_dbz(np.nan_to_num(rate)), rio.RAIN_FLOOR_DBZ)
    expected[np.isnan(rate)] = np.nan
    np.testing.assert_allclose(sequence.dbz, expected, rtol=1e-6)
    assert sequence.dbz[0, 0, 0] == rio.RAIN_FLOOR_DBZ  # zero rain -> the no-echo floor, not -inf
    np.testing.assert_allclose(dbz_to_rainrate(sequence.dbz[0, 0, 1]), 1.0, rtol=1e-5)
    assert sequence.grid.y_name == "lat" and sequence.grid.x_name == "lon"


def test_variable_found_by_common_name_and_scalar_time(tmp_path: Path) -> None:
    path = write_raw(tmp_path / "one.nc",
                     {"DBZH": (("y", "x"), np.full((3, 4), 20.0, np.float32), {"units": "dBZ"})},
                     {"time": np.datetime64("2026-03-01T12:00"), "y": np.arange(3.0), "x": np.arange(4.0)})
    sequence = rio.read_scans(path)
    assert sequence.dbz.shape == (1, 3, 4)
    assert str(sequence.times[0]) == "2026-03-01T12:00:00"


def test_curvilinear_grid_with_2d_lat_lon(tmp_path: Path) -> None:
    lat, lon = np.meshgrid(np.linspace(50, 51, 3), np.linspace(8, 9, 4), indexing="ij")
    path = write_raw(
        tmp_path / "curv.nc",
        {"reflectivity": (("time", "row", "col"), np.full((1, 3, 4), 30.0, np.float32), {"units": "dBZ"})},
        {"time": [np.datetime64("2026-03-01T12:00")],
         "lat": (("row", "col"), lat, {"standard_name": "latitude"}),
         "lon": (("row", "col"), lon, {"standard_name": "longitude"})},
    )
    sequence = rio.read_scans(path)
    assert sequence.x is None and sequence.y is None
    np.testing.assert_array_equal(sequence.lat, lat)
    product = rio.write_forecast(tmp_path / "p.nc", np.zeros((1, 3, 4), np.float32), reference_time=T0,
                                 lead_minutes=[6], grid=sequence, model="m", model_version="v",
                                 checkpoint_sha256="c", source="persistence", input_times=sequence.times)
    with xr.open_dataset(product, engine="netcdf4") as ds:
        np.testing.assert_array_equal(ds["lon"].values, lon)
        assert ds["reflectivity"].dims == ("time", "row", "col")


def expect_error(error: type[rio.RadarInputError], target, file_name: str, words: str, **kwargs) -> None:
    with pytest.raises(error) as info:
        rio.read_scans(target, **kwargs)
    message = str(info.value)
    assert file_name in message, message
    assert words in message, message


def test_not_netcdf_and_missing_file_name_the_file(tmp_path: Path) -> None:
    write_feed(tmp_path, field(3), times(3))
    (tmp_path / "scan_20260301T1218Z.nc").write_bytes(b"this is not netCDF")
    expect_error(rio.NotNetCDFError, tmp_path, "scan_20260301T1218Z.nc", "not a readable netCDF file")
    expect_error(rio.NotNetCDFError, [tmp_path / "absent.nc"], "absent.nc", "file not found")


def test_truncated_file_is_reported(tmp_path: Path) -> None:
    path = write_feed(tmp_path, field(1, 64, 64), times(1))[0]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    expect_error(rio.NotNetCDFError, path, "scan_20260301T1200Z.nc", "")


def test_missing_variable_units_and_time(tmp_path: Path) -> None:
    coords = {"time": [np.datetime64("2026-03-01T12:00")], "y": np.arange(2.0), "x": np.arange(2.0)}
    other = write_raw(tmp_path / "other.nc", {"temperature": (("time", "y", "x"), np.zeros((1, 2, 2)))},
                      coords)
    expect_error(rio.MissingVariableError, other, "other.nc", "no radar variable")
    no_units = write_raw(tmp_path / "nounits.nc", {"reflectivity": (("time", "y", "x"), np.zeros((1, 2, 2)))},
                         coords)
    expect_error(rio.UnitsError, no_units, "nounits.nc", "no units")
    wrong = write_raw(tmp_path / "wrong.nc", {"reflectivity": (("time", "y", "x"), np.zeros((1, 2, 2)),
                                                               {"units": "K"})}, coords)
    expect_error(rio.UnitsError, wrong, "wrong.nc", "'K'")
    negative = write_raw(tmp_path / "neg.nc", {"rainfall_rate": (("time", "y", "x"), -np.ones((1, 2, 2)),
                                                                 {"units": "mm h-1"})}, coords)
    expect_error(rio.UnitsError, negative, "neg.nc", "negative rain rates")
    no_time = write_raw(tmp_path / "notime.nc", {"reflectivity": (("y", "x"), np.zeros((2, 2)),
                                                                  {"units": "dBZ"})},
                        {"y": np.arange(2.0), "x": np.arange(2.0)})
    expect_error(rio.MissingVariableError, no_time, "notime.nc", "no time coordinate")
    no_xy = write_raw(tmp_path / "noxy.nc", {"reflectivity": (("time", "y", "x"), np.zeros((1, 2, 2)),
                                                              {"units": "dBZ"})},
                      {"time": [np.datetime64("2026-03-01T12:00")]})
    expect_error(rio.MissingVariableError, no_xy, "noxy.nc", "no spatial coordinates")


def test_cadence_gaps_duplicates(tmp_path: Path) -> None:
    gap = tmp_path / "gap"
    write_feed(gap, field(3), [T0, T0 + dt.timedelta(minutes=6), T0 + dt.timedelta(minutes=24)])
    expect_error(rio.MissingScanError, gap, "scan_20260301T1224Z.nc", "2026-03-01T12:12Z, 2026-03-01T12:18Z")
    off = tmp_path / "off"
    write_feed(off, field(2), [T0, T0 + dt.timedelta(minutes=5)])
    expect_error(rio.CadenceError, off, "scan_20260301T1205Z.nc", "5 min after")
    # A 5-minute feed is fine when the caller says so.
    assert rio.read_scans(off, timestep_minutes=5).times.size == 2
    dup = tmp_path / "dup"
    first = write_feed(dup / "a", field(2), times(2))
    second = write_feed(dup / "b", field(1), [T0 + dt.timedelta(minutes=6)])
    expect_error(rio.DuplicateScanError, [*first, *second], "scan_20260301T1206Z.nc", "duplicates")


def test_grid_changes_all_nan_too_few_too_large(tmp_path: Path) -> None:
    a = write_feed(tmp_path / "a", field(1, 5, 7), times(1))
    b = write_feed(tmp_path / "b", field(1, 5, 8), times(1, T0 + dt.timedelta(minutes=6)))
    expect_error(rio.GridMismatchError, [*a, *b], str(b[0]), "shape")
    nan = field(2)
    nan[1] = np.nan
    paths = write_feed(tmp_path / "nan", nan, times(2))
    expect_error(rio.AllNaNScanError, tmp_path / "nan", paths[1].name, "all NaN")
    expect_error(rio.TooFewScansError, tmp_path / "a", "scan_20260301T1200Z.nc", "at least 3", min_scans=3)
    (tmp_path / "empty").mkdir()
    expect_error(rio.TooFewScansError, tmp_path / "empty", "empty", "no .nc scans")
    expect_error(rio.GridTooLargeError, tmp_path / "a", "scan_20260301T1200Z.nc", "maximum side 6",
                 max_grid=6)
    assert issubclass(rio.GridTooLargeError, ValueError)


def test_forecast_product_is_cf_and_atomic(tmp_path: Path) -> None:
    sequence = rio.read_scans(write_feed(tmp_path / "feed", field(3), times(3)))
    forecast = np.linspace(-10, 60, 2 * 5 * 7, dtype=np.float32).reshape(2, 5, 7)
    out = tmp_path / "products" / "job" / "forecast.nc"
    rio.write_forecast(out, forecast, reference_time=sequence.times[-1], lead_minutes=[6, 12], grid=sequence,
                       model="PredRNN-v2", model_version="abc", checkpoint_sha256="abc", source="predrnn",
                       input_times=sequence.times)
    assert [p.name for p in out.parent.iterdir()] == ["forecast.nc"]
    with xr.open_dataset(out, engine="netcdf4") as ds:
        np.testing.assert_array_equal(ds["reflectivity"].values, forecast)
        np.testing.assert_allclose(ds["rainfall_rate"].values, dbz_to_rainrate(forecast), rtol=1e-6)
        assert [str(t)[:16] for t in ds["time"].values] == ["2026-03-01T12:18", "2026-03-01T12:24"]
        assert ds["lead_time"].values.tolist() == [6, 12]
        assert ds["lead_time"].attrs == {"standard_name": "forecast_period", "units": "minutes",
                                         "long_name": "lead time"}
        assert str(ds["forecast_reference_time"].values)[:16] == "2026-03-01T12:12"
        assert ds["rainfall_rate"].attrs["units"] == "mm h-1"
        assert ds["reflectivity"].attrs["grid_mapping"] == "crs"
        assert ds["crs"].attrs["grid_mapping_name"] == "transverse_mercator"
        assert ds.attrs["input_times"] == "2026-03-01T12:00Z 2026-03-01T12:06Z 2026-03-01T12:12Z"
        assert {k: ds.attrs[k] for k in ("Conventions", "source", "model", "model_version",
                                         "checkpoint_sha256")} == {
            "Conventions": "CF-1.8", "source": "predrnn", "model": "PredRNN-v2", "model_version": "abc",
            "checkpoint_sha256": "abc"}
    with netCDF4.Dataset(out) as raw:
        assert raw["reflectivity"].filters()["zlib"] is True
        assert raw["reflectivity"].dtype == np.float32
        assert raw["time"].units.startswith("seconds since 1970-01-01")
    with pytest.raises(ValueError, match="source must be one of"):
        rio.write_forecast(out, forecast, reference_time=T0, lead_minutes=[6, 12], grid=sequence, model="m",
                           model_version="v", checkpoint_sha256="c", source="magic", input_times=[])


def test_nowcast_predict_reads_and_writes_netcdf(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    from cli import main as cli_main
    from model.checkpoint import load_checkpoint, save_checkpoint
    from model.io.units import dbz_to_model, model_to_dbz
    from model.network.predrnn import PredRNN, PredRNNConfig

    torch.manual_seed(0)
    config = PredRNNConfig(num_hidden=[8, 8], patch_size=4, filter_size=3, input_length=3, output_length=2)
    checkpoint = tmp_path / "tiny.pt"
    save_checkpoint(checkpoint, PredRNN(config))
    write_feed(tmp_path / "feed", field(4, 10, 13), times(4))  # 4 scans: the last 3 are the context
    out = tmp_path / "fc.nc"
    status = cli_main(["predict", "--checkpoint", str(checkpoint), "--input", str(tmp_path / "feed"),
                       "--steps", "2", "--output", str(out)])
    assert status == 0
    model, meta = load_checkpoint(checkpoint)
    context = dbz_to_model(field(4, 10, 13)[1:], meta["scaling"])[None, :, None]
    expected = model_to_dbz(model.forecast(torch.from_numpy(context), 2).numpy()[0, :, 0], meta["scaling"])
    with xr.open_dataset(out, engine="netcdf4") as ds:
        np.testing.assert_allclose(ds["reflectivity"].values, expected, atol=1e-5)
        assert ds["lead_time"].values.tolist() == [6, 12]
        assert ds.attrs["input_times"] == "2026-03-01T12:06Z 2026-03-01T12:12Z 2026-03-01T12:18Z"
        assert ds.attrs["checkpoint_sha256"] == rio.file_sha256(checkpoint)
    # --fused / --channels-last reach netCDF input too: bf16 with and without them rounds differently.
    outputs = {}
    for name, flags in (("fast", []), ("autocast_only", ["--no-fused", "--no-channels-last"])):
        outputs[name] = tmp_path / f"{name}.nc"
        assert cli_main(["predict", "--checkpoint", str(checkpoint), "--input", str(tmp_path / "feed"), "--steps",
                         "2", "--precision", "bf16", *flags, "--output", str(outputs[name])]) == 0
    with xr.open_dataset(outputs["fast"], engine="netcdf4") as fast, \
            xr.open_dataset(outputs["autocast_only"], engine="netcdf4") as plain:
        assert not np.array_equal(fast["reflectivity"].values, plain["reflectivity"].values)
        for ds in (fast, plain):
            np.testing.assert_allclose(ds["reflectivity"].values, expected, atol=1.0)  # dBZ
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "scan_20260301T1200Z.nc").write_text("garbage")
    assert cli_main(["predict", "--checkpoint", str(checkpoint), "--input", str(bad), "--steps", "2",
                     "--output", str(tmp_path / "x.nc")]) == 2


def _write_product(path: Path, fields: np.ndarray, sequence: rio.RadarSequence, **kwargs) -> Path:
    return rio.write_forecast(path, fields, reference_time=sequence.times[-1], lead_minutes=[6, 12], grid=sequence,
                              model="PredRNN-v2", model_version="abc", checkpoint_sha256="abc", source="predrnn",
                              input_times=sequence.times, **kwargs)


def test_ensemble_product_layout_cf_attributes_and_round_trip(tmp_path: Path) -> None:
    sequence = rio.read_scans(write_feed(tmp_path / "feed", field(3), times(3)))
    members = np.random.default_rng(5).uniform(-10, 60, (4, 2, 5, 7)).astype(np.float32)
    members[:, 0, 0, 0] = [19.9, 20.0, 35.0, 45.0]  # probabilities 3/4, 2/4, 1/4 at 20/30/40 dBZ
    members[2, 1, 4, 6] = np.nan  # one member without data: that pixel's mean and probabilities are NaN
    out = _write_product(tmp_path / "ens.nc", members, sequence, ensemble_seed=7, ensemble_perturbation="x: both")
    with xr.open_dataset(out, engine="netcdf4") as ds:
        assert ds["reflectivity"].dims == ("realization", "time", "y", "x")
        assert ds["rainfall_rate"].dims == ("realization", "time", "y", "x")
        np.testing.assert_array_equal(ds["reflectivity"].values, members)
        np.testing.assert_allclose(ds["rainfall_rate"].values, dbz_to_rainrate(members), rtol=1e-6)
        assert ds["realization"].values.tolist() == [0, 1, 2, 3]
        assert ds["realization"].dtype == np.int32
        assert {k: ds["realization"].attrs[k] for k in ("standard_name", "units")} == {
            "standard_name": "realization", "units": "1"}
        assert ds["reflectivity"].attrs["standard_name"] == "equivalent_reflectivity_factor"
        mean = ds["reflectivity_ensemble_mean"]
        assert mean.dims == ("time", "y", "x") and mean.dtype == np.float32
        assert mean.attrs["cell_methods"] == "realization: mean" and mean.attrs["units"] == "dBZ"
        np.testing.assert_allclose(mean.values, members.mean(axis=0), rtol=1e-6)
        assert np.isnan(mean.values[1, 4, 6])
        threshold = ds["threshold"]
        assert threshold.values.tolist() == [20.0, 30.0, 40.0] and threshold.dtype == np.float32
        assert threshold.attrs == {"standard_name": "equivalent_reflectivity_factor", "units": "dBZ",
                                   "long_name": "reflectivity threshold",
                                   "spp__relative_to_threshold": "greater_than_or_equal_to"}
        probability = ds["probability_of_reflectivity_above_threshold"]
        assert probability.dims == ("threshold", "time", "y", "x") and probability.dtype == np.float32
        assert probability.attrs["units"] == "1"
        assert probability.attrs["long_name"] == "probability of equivalent_reflectivity_factor at or above threshold"
        assert probability.values[:, 0, 0, 0].tolist() == [0.75, 0.5, 0.25]
        expected = np.stack([(members >= t).mean(axis=0) for t in (20, 30, 40)])
        finite = ~np.isnan(probability.values)
        np.testing.assert_array_equal(probability.values[finite], expected[finite])
        assert finite.sum() == expected.size - 3  # NaN only at the member-less pixel, at every threshold
        assert np.all(probability.values[1:][finite[1:]] <= probability.values[:-1][finite[1:]])
        assert (ds.attrs["ensemble_members"], ds.attrs["ensemble_seed"], ds.attrs["ensemble_perturbation"]) == (
            4, 7, "x: both")
        assert ds.attrs["Conventions"] == "CF-1.8" and ds.attrs["source"] == "predrnn"
    with netCDF4.Dataset(out) as raw:
        assert raw["reflectivity"].chunking() == [1, 1, 5, 7]  # one (member, lead) per chunk
        assert raw["rainfall_rate"].chunking() == [1, 1, 5, 7]
        assert raw["reflectivity_ensemble_mean"].chunking() == [1, 5, 7]
        assert raw["probability_of_reflectivity_above_threshold"].chunking() == [1, 1, 5, 7]
        assert raw["realization"].dtype == np.int32


def test_one_member_writes_exactly_the_deterministic_product(tmp_path: Path) -> None:
    sequence = rio.read_scans(write_feed(tmp_path / "feed", field(3), times(3)))
    forecast = np.linspace(-10, 60, 2 * 5 * 7, dtype=np.float32).reshape(2, 5, 7)
    today = _write_product(tmp_path / "today.nc", forecast, sequence)
    one = rio.write_ensemble_forecast(tmp_path / "one.nc", forecast[None], seed=3, perturbation="p",
                                      reference_time=sequence.times[-1], lead_minutes=[6, 12], grid=sequence,
                                      model="PredRNN-v2", model_version="abc", checkpoint_sha256="abc",
                                      source="predrnn", input_times=sequence.times)
    with xr.open_dataset(today, engine="netcdf4") as a, xr.open_dataset(one, engine="netcdf4") as b:
        assert set(a.variables) == set(b.variables) and set(a.dims) == set(b.dims)
        assert "realization" not in b.dims and "ensemble_members" not in b.attrs
        for name in a.variables:
            assert a[name].dims == b[name].dims and a[name].attrs == b[name].attrs
            np.testing.assert_array_equal(a[name].values, b[name].values)
        assert {k: v for k, v in a.attrs.items() if k != "history"} == {
            k: v for k, v in b.attrs.items() if k != "history"}
    # The readers of deterministic products read it as before: the lean reader takes it lean.
    from model.io.lean_reader import open_frames

    with open_frames(one) as frames:
        assert frames.lean
        np.testing.assert_array_equal(frames.read([0, 1]), forecast)
    with pytest.raises(ValueError, match=r"or \(M, L"):
        _write_product(tmp_path / "bad.nc", forecast[None, None], sequence)
