"""ODIM_H5 reader on MeteoSwiss's example composite (shipped in pyart-mch) and on crafted files."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from model.io.netcdf import RAIN_FLOOR_DBZ, RadarInputError, read_scans
from model.io.odim import OdimFormatError, odim_to_cf, read_odim
from model.io.units import rainrate_to_dbz

EXAMPLE = Path(__file__).parents[2] / "data" / "RFO_example_h5_grid.h5"
SWISS_GRID = ("+proj=somerc +lat_0=46.95240555555556 +lon_0=7.439583333333333 +k_0=1.0 +x_0=600000.0 "
              "+y_0=200000.0 +ellps=bessel +towgs84=674.4,15.1,405.3,0,0,0,0 +units=m +no_defs")


def test_meteoswiss_composite() -> None:
    sequence = read_odim(EXAMPLE)
    with h5py.File(EXAMPLE) as handle:
        rate = handle["dataset1/data1/data"][()]
    assert sequence.dbz.shape == (1, 640, 710) and sequence.dbz.dtype == np.float32
    assert sequence.input_unit == "mm/h"
    assert [str(t) for t in sequence.times] == ["2024-02-27T09:50:00"]
    # nodata (NaN) stays NaN, undetect (0 mm/h) is "no echo", rain goes through Marshall-Palmer.
    np.testing.assert_array_equal(np.isnan(sequence.dbz[0]), np.isnan(rate))
    assert np.all(sequence.dbz[0][rate == 0] == RAIN_FLOOR_DBZ)
    wet = np.isfinite(rate) & (rate > 0)
    np.testing.assert_allclose(sequence.dbz[0][wet], np.maximum(rainrate_to_dbz(rate[wet]), RAIN_FLOOR_DBZ),
                               rtol=1e-6)
    # The Swiss LV03 grid at 1 km: pixel centres 255.5..964.5 km east, 479.5..-159.5 km north.
    np.testing.assert_allclose(sequence.x[[0, -1]], [255500.0, 964500.0], atol=0.01)
    np.testing.assert_allclose(sequence.y[[0, -1]], [479500.0, -159500.0], atol=0.01)
    np.testing.assert_allclose(np.diff(sequence.x), 1000.0, atol=1e-3)
    assert sequence.grid_mapping["grid_mapping_name"] == "oblique_mercator"
    assert sequence.grid_mapping["false_easting"] == 600000.0


def test_composite_converts_to_a_cf_scan(tmp_path: Path) -> None:
    written = odim_to_cf(EXAMPLE, tmp_path)
    assert [p.name for p in written] == ["scan_20240227T0950Z.nc"]
    again = read_scans(written[0])
    original = read_odim(EXAMPLE)
    np.testing.assert_array_equal(again.dbz, original.dbz)
    np.testing.assert_array_equal(again.x, original.x)


def _write_odim(path: Path, data: np.ndarray, *, quantity: str = "DBZH", gain: float = 0.5,
                offset: float = -32.0, conventions: str = "ODIM_H5/V2_2") -> None:
    """A minimal ODIM_H5 composite with outer-corner coordinates (the specification's convention)."""
    with h5py.File(path, "w") as handle:
        handle.attrs["Conventions"] = conventions
        what = handle.create_group("what")
        what.attrs.update({"object": "COMP", "date": "20240601", "time": "120500"})
        where = handle.create_group("where")
        where.attrs.update({"projdef": SWISS_GRID, "xsize": data.shape[1], "ysize": data.shape[0],
                            "xscale": 2000.0, "yscale": 2000.0,
                            "LL_lon": 7.439583333333333, "LL_lat": 46.95240555555556,
                            "UR_lon": 7.5, "UR_lat": 47.0})
        handle.create_dataset("dataset1/data1/data", data=data)
        handle["dataset1"].create_group("what").attrs.update(
            {"quantity": quantity, "gain": gain, "offset": offset, "nodata": 255.0, "undetect": 0.0}
        )


def test_scaled_reflectivity_with_specification_corners(tmp_path: Path) -> None:
    raw = np.array([[0, 100, 255], [104, 255, 0]], dtype=np.uint8)
    _write_odim(tmp_path / "comp.h5", raw)
    sequence = read_odim(tmp_path / "comp.h5")
    expected = np.array([[RAIN_FLOOR_DBZ, 18.0, np.nan], [20.0, np.nan, RAIN_FLOOR_DBZ]], dtype=np.float32)
    np.testing.assert_array_equal(sequence.dbz[0], expected)
    assert sequence.input_unit == "dBZ" and str(sequence.times[0]) == "2024-06-01T12:05:00"
    # The declared 2 km does not fit the corners as centres, so they are outer corners (the
    # specification): centres sit half a pixel inside.
    import pyproj

    to_grid = pyproj.Transformer.from_crs("EPSG:4326", pyproj.CRS.from_proj4(SWISS_GRID), always_xy=True)
    (x_ll, y_ll), (x_ur, y_ur) = to_grid.transform(7.439583333333333, 46.95240555555556), to_grid.transform(7.5, 47.0)
    np.testing.assert_allclose(sequence.x, x_ll + (np.arange(3) + 0.5) * (x_ur - x_ll) / 3, atol=1e-3)
    np.testing.assert_allclose(sequence.y, y_ur - (np.arange(2) + 0.5) * (y_ur - y_ll) / 2, atol=1e-3)


def test_bad_files_name_the_file_and_problem(tmp_path: Path) -> None:
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(OdimFormatError, match="text.h5: not an HDF5 file"):
        read_odim(tmp_path / "text.h5")
    _write_odim(tmp_path / "other.h5", np.zeros((2, 2), dtype=np.uint8), conventions="CF-1.8")
    with pytest.raises(OdimFormatError, match="other.h5: Conventions is 'CF-1.8', not ODIM_H5"):
        read_odim(tmp_path / "other.h5")
    _write_odim(tmp_path / "acrr.h5", np.zeros((2, 2), dtype=np.uint8), quantity="ACRR")
    with pytest.raises(RadarInputError, match="acrr.h5: quantity 'ACRR' is neither"):
        read_odim(tmp_path / "acrr.h5")
    with pytest.raises(OdimFormatError, match="no dataset2/data1/data array"):
        read_odim(tmp_path / "acrr.h5", dataset=2)
