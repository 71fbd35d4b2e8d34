"""ODIM_H5 (OPERA) Cartesian composites -> our CF form (a ``model.io.netcdf.RadarSequence``).

Interface
---------
read_odim(path, *, dataset=1, data=1) -> RadarSequence     dbz (1, H, W) float32, NaN = no data
odim_to_cf(path, directory) -> list[Path]                  one CF scan via netcdf.write_scans

What is read (ODIM_H5 2.x, ``/what``, ``/where``, ``/datasetN/dataM/{data,what}``):
- Values are ``raw * gain + offset``; ``nodata`` becomes NaN, ``undetect`` becomes "no echo"
  (``netcdf.RAIN_FLOOR_DBZ``). ``what`` attributes are inherited: dataM/what, then datasetN/what,
  then the root what, as the ODIM specification says.
- Quantities: reflectivity (DBZH, DBZV, TH, TV, DBZ) in dBZ, or rain rate (RATE, mm/h), which is
  converted with Marshall-Palmer like any other rain-rate input.
- Time: the root ``what/date`` + ``what/time`` (the nominal time of the product), UTC.
- Grid: ``where/projdef`` (PROJ.4) and the corner longitudes/latitudes give projected x/y in
  metres (pyproj, the ``baselines`` extra). The ODIM specification puts corners at the outer pixel
  edges, but some producers (MeteoSwiss among them) give the centres of the corner pixels and
  ``xscale`` in km; the declared ``xscale``/``yscale`` (in m or km) decide which, else the
  specification's edges are used. Row 0 is the north edge (``y`` decreasing).
"""

from __future__ import annotations

import datetime as dt
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from model.io.netcdf import RAIN_FLOOR_DBZ, RadarInputError, RadarSequence, grid_from_xy, write_scans
from model.io.units import rainrate_to_dbz

log = logging.getLogger(__name__)

REFLECTIVITY_QUANTITIES = ("DBZH", "DBZV", "TH", "TV", "DBZ")
RAINRATE_QUANTITIES = ("RATE",)


class OdimFormatError(RadarInputError):
    """The file is not an ODIM_H5 Cartesian product we can read; the message names the file."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _inherited(handle: Any, groups: list[str], name: str, path: Path) -> Any:
    """An attribute from the first of ``groups`` that has it (ODIM's what/where inheritance)."""
    for group in groups:
        if group in handle and name in handle[group].attrs:
            return handle[group].attrs[name]
    raise OdimFormatError(f"{path}: attribute {name!r} not found in {groups}")


def _nominal_time(handle: Any, path: Path) -> np.datetime64:
    date = _text(_inherited(handle, ["what"], "date", path))
    time = _text(_inherited(handle, ["what"], "time", path))
    try:
        stamp = dt.datetime.strptime(date + time, "%Y%m%d%H%M%S")
    except ValueError as exc:
        raise OdimFormatError(f"{path}: what/date {date!r} and what/time {time!r} are not YYYYMMDD HHMMSS") from exc
    return np.datetime64(stamp, "s")


def _axes(where: Any, shape: tuple[int, int], path: Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Projected pixel-centre x (W,) and y (H,) in metres, north first, and CF grid-mapping attrs."""
    try:
        import pyproj
    except ImportError as exc:
        raise ImportError("reading ODIM grids needs pyproj: pip install -e '.[baselines]'") from exc
    attrs = where.attrs
    try:
        projdef = _text(attrs["projdef"])
        corners = {c: (float(attrs[f"{c}_lon"]), float(attrs[f"{c}_lat"])) for c in ("LL", "UR")}
    except KeyError as exc:
        raise OdimFormatError(f"{path}: where/{exc.args[0]} is missing") from exc
    try:
        crs = pyproj.CRS.from_proj4(projdef)
    except pyproj.exceptions.CRSError as exc:
        raise OdimFormatError(f"{path}: where/projdef {projdef!r} is not a valid PROJ string ({exc})") from exc
    to_grid = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    (x_ll, y_ll), (x_ur, y_ur) = (to_grid.transform(*corners[c]) for c in ("LL", "UR"))
    rows, cols = shape
    declared = (float(attrs.get("xscale", 0.0)), float(attrs.get("yscale", 0.0)))

    def centres(low: float, high: float, count: int, scale: float) -> np.ndarray:
        as_centres = (high - low) / (count - 1)
        if any(scale > 0 and abs(scale * unit - as_centres) < 0.005 * as_centres for unit in (1.0, 1000.0)):
            return low + np.arange(count) * as_centres  # the corners are pixel centres
        step = (high - low) / count
        return low + (np.arange(count) + 0.5) * step  # the specification: outer corners

    # Millimetres are plenty; this drops the sub-millimetre round-off of the datum shift.
    x = np.round(centres(x_ll, x_ur, cols, declared[0]), 3)
    y = np.round(centres(y_ll, y_ur, rows, declared[1])[::-1], 3)  # row 0 is the north edge
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pyproj: "parameter lost in conversion to CF"
        mapping = {k: v for k, v in crs.to_cf().items() if v is not None}
    mapping["proj4_params"] = projdef
    return x, y, mapping


def read_odim(path: str | Path, *, dataset: int = 1, data: int = 1) -> RadarSequence:
    """Read one Cartesian field of an ODIM_H5 file as a one-scan radar sequence in dBZ.

    Parameters
    ----------
    path : an ODIM_H5 file (``Conventions`` = ``ODIM_H5/V2_x``).
    dataset, data : which ``/datasetN/dataM`` to read.

    Returns
    -------
    RadarSequence
        ``dbz`` (1, H, W) float32 (NaN = no data), ``times`` (1,), projected ``x``/``y`` in
        metres with the file's projection as the grid mapping; ``input_unit`` "dBZ" or "mm/h".
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise OdimFormatError(f"{path}: file not found")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise OdimFormatError(f"{path}: not an HDF5 file ({exc})") from exc
    with handle:
        conventions = _text(handle.attrs.get("Conventions", ""))
        if not conventions.startswith("ODIM_H5"):
            raise OdimFormatError(f"{path}: Conventions is {conventions!r}, not ODIM_H5")
        group = f"dataset{dataset}/data{data}"
        if f"{group}/data" not in handle:
            raise OdimFormatError(f"{path}: no {group}/data array")
        obj = _text(_inherited(handle, ["what"], "object", path))
        if obj not in ("COMP", "IMAGE", "CVOL"):
            raise OdimFormatError(f"{path}: what/object {obj!r} is not a Cartesian product (COMP, IMAGE)")
        raw = np.asarray(handle[f"{group}/data"][()], dtype=np.float64)
        if raw.ndim != 2:
            raise OdimFormatError(f"{path}: {group}/data has shape {raw.shape}, expected (rows, cols)")
        inheritance = [f"{group}/what", f"dataset{dataset}/what", "what"]
        quantity = _text(_inherited(handle, inheritance, "quantity", path)).upper()
        gain = float(_inherited(handle, inheritance, "gain", path))
        offset = float(_inherited(handle, inheritance, "offset", path))
        nodata = float(_inherited(handle, inheritance, "nodata", path))
        undetect = float(_inherited(handle, inheritance, "undetect", path))
        where = next((handle[g] for g in (f"dataset{dataset}/where", "where") if g in handle
                      and "projdef" in handle[g].attrs), None)
        if where is None:
            raise OdimFormatError(f"{path}: no where group with a projdef")
        x, y, mapping = _axes(where, raw.shape, path)
        when = _nominal_time(handle, path)

    missing = np.isnan(raw) if np.isnan(nodata) else raw == nodata
    no_echo = np.isnan(raw) if np.isnan(undetect) else raw == undetect
    physical = raw * gain + offset
    if quantity in REFLECTIVITY_QUANTITIES:
        dbz, unit = physical, "dBZ"
    elif quantity in RAINRATE_QUANTITIES:
        if np.nanmin(np.where(missing | no_echo, 0.0, physical), initial=0.0) < 0:
            raise OdimFormatError(f"{path}: {group} holds negative rain rates")
        with np.errstate(divide="ignore", invalid="ignore"):
            dbz = np.maximum(rainrate_to_dbz(np.maximum(physical, 0.0)), RAIN_FLOOR_DBZ)
        unit = "mm/h"
    else:
        raise OdimFormatError(f"{path}: quantity {quantity!r} is neither reflectivity "
                              f"{REFLECTIVITY_QUANTITIES} nor rain rate {RAINRATE_QUANTITIES}")
    dbz = np.where(no_echo, RAIN_FLOOR_DBZ, dbz)
    dbz = np.where(missing, np.nan, dbz).astype(np.float32)
    log.debug("%s: %s %s at %s", path, quantity, raw.shape, when)
    grid = grid_from_xy(x, y, mapping)
    return RadarSequence(dbz[None], np.array([when]), grid, [path], unit)


def odim_to_cf(path: str | Path, directory: str | Path, **options: Any) -> list[Path]:
    """Convert an ODIM_H5 file to one CF scan file (``scan_YYYYmmddTHHMMZ.nc``) in ``directory``."""
    sequence = read_odim(path, **options)
    return write_scans(directory, sequence.dbz, sequence.times, x=sequence.grid.x, y=sequence.grid.y,
                       grid_mapping=sequence.grid.grid_mapping)
