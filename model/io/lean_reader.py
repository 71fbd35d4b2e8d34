"""A lean netCDF reader for the verification sweep: netCDF4 alone, and only the lead frames asked for.

Interface
---------
open_frames(path, *, timestep_minutes=6) -> Frames     ``with`` block; ``times``, ``grid``, ``read(indices)``
read_scan_frame(path, *, timestep_minutes=6) -> tuple[np.ndarray, Grid]   one scan's (H, W) dBZ and its grid

An ensemble product (a ``realization`` dimension, docs/contracts.md) is read lean too: ``read``
gives its ``reflectivity_ensemble_mean`` frames, ``members`` says how many members it has and
``read_members(indices)`` gives their (M, n, H, W) frames. read_scans has no ensemble layout, so
an ensemble file outside the lean layout is an error rather than a fallback.

Opening a file through xarray costs about three times what netCDF4 alone costs, and the sweep
opens some 40 files a minute. This reader takes the layout :func:`model.io.netcdf.write_scans` and
:func:`model.io.netcdf.write_forecast` write (float32 ``reflectivity`` in dBZ with a ``_FillValue``,
1-D axes, integer ``seconds since 1970-01-01`` times on the cadence) and gives exactly the arrays
:func:`model.io.netcdf.read_scans` gives: the same dBZ values, NaN where the fill value is, the
same times and the same :class:`Grid`. Anything else (rain rates, packed or masked-by-range data,
curvilinear grids, a file netCDF4 cannot open, values read_scans would reject) is handed to
``read_scans`` itself, which reads it with its full semantics or raises its own error, so a
malformed file fails with the same message as before.

Only the frames read are checked for implausible values and for being all NaN (read_scans checks
every frame of a file): a product is now read one lead at a time, as its scans arrive.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

import netCDF4
import numpy as np

from model.io.netcdf import (
    ENSEMBLE_MEAN,
    REALIZATION,
    Grid,
    RadarInputError,
    RadarSequence,
    check_axis,
    check_plausible_dbz,
    check_times,
    normalise_units,
    read_scans,
)

# Attributes xarray moves out of ``attrs`` when it decodes a variable; the grid carries the rest.
_ENCODING_ATTRS = frozenset({"_FillValue", "missing_value", "scale_factor", "add_offset", "coordinates",
                             "_Unsigned", "valid_min", "valid_max", "valid_range"})
# Attributes that make netCDF4 or xarray mask or scale differently from a plain fill value.
_PACKING_ATTRS = frozenset({"missing_value", "scale_factor", "add_offset", "_Unsigned", "valid_min", "valid_max",
                            "valid_range"})
_TIME_UNITS = frozenset({"seconds since 1970-01-01", "seconds since 1970-01-01 00:00:00"})
_CALENDARS = frozenset({"standard", "gregorian", "proleptic_gregorian"})
_RADAR_STANDARD_NAMES = frozenset({"equivalent_reflectivity_factor", "rainfall_rate"})


class _NotLean(Exception):
    """The file is outside the layout this reader handles; read_scans reads it instead."""


def _attrs(var: Any) -> dict[str, Any]:
    return {name: var.getncattr(name) for name in var.ncattrs() if name not in _ENCODING_ATTRS}


def _coordinate_names(ds: netCDF4.Dataset) -> set[str]:
    """The names xarray takes as coordinates: dimension variables and those a ``coordinates`` attribute lists."""
    names = {name for name, var in ds.variables.items() if var.dimensions == (name,)}
    for var in ds.variables.values():
        if "coordinates" in var.ncattrs():
            names.update(str(var.getncattr("coordinates")).split())
    return names


def _radar_variable(ds: netCDF4.Dataset) -> Any:
    """The variable read_scans picks when it is a dBZ reflectivity of (time, y, x); otherwise _NotLean."""
    coordinates = _coordinate_names(ds)
    variables = ds.variables
    if REALIZATION in ds.dimensions and ENSEMBLE_MEAN in variables:
        variables = {ENSEMBLE_MEAN: variables[ENSEMBLE_MEAN]}  # the members' mean is the (time, y, x) field
    for name, var in variables.items():
        standard = str(var.getncattr("standard_name")).lower() if "standard_name" in var.ncattrs() else ""
        if name in coordinates or standard not in _RADAR_STANDARD_NAMES or var.ndim < 2:
            continue
        # read_scans takes the first data variable with a radar standard name; only a dBZ one is lean.
        if standard != "equivalent_reflectivity_factor" or var.ndim != 3 or var.dtype != np.float32:
            raise _NotLean
        if _PACKING_ATTRS & set(var.ncattrs()) or "units" not in var.ncattrs():
            raise _NotLean
        if normalise_units(str(var.getncattr("units"))) != "dbz":
            raise _NotLean
        return var
    raise _NotLean


def _axis(ds: netCDF4.Dataset, name: str) -> tuple[np.ndarray, dict[str, Any]]:
    if name not in ds.variables or ds.variables[name].dimensions != (name,):
        raise _NotLean
    var = ds.variables[name]
    if _PACKING_ATTRS & set(var.ncattrs()) or not np.issubdtype(var.dtype, np.floating):
        raise _NotLean
    var.set_auto_maskandscale(False)
    values = np.asarray(var[:])
    fill = var.getncattr("_FillValue") if "_FillValue" in var.ncattrs() else None
    if fill is not None and not np.isnan(fill):
        values = np.where(values == fill, np.nan, values)
    try:
        check_axis(values, name, ds.filepath())
    except RadarInputError as exc:
        raise _NotLean from exc
    return values, _attrs(var)


def _grid(ds: netCDF4.Dataset, var: Any) -> Grid:
    y_name, x_name = var.dimensions[-2:]
    # 2-D auxiliary coordinates (a curvilinear grid) are read_scans' business.
    if any(other.dimensions == (y_name, x_name) for other in ds.variables.values()):
        raise _NotLean
    y, y_attrs = _axis(ds, y_name)
    x, x_attrs = _axis(ds, x_name)
    grid = Grid(y_name=y_name, x_name=x_name, shape=(int(var.shape[-2]), int(var.shape[-1])), y=y, x=x,
                y_attrs=y_attrs, x_attrs=x_attrs)
    if "grid_mapping" in var.ncattrs():
        mapping_name = str(var.getncattr("grid_mapping")).split(":")[0].split()[0]
        if mapping_name not in ds.variables:
            raise _NotLean
        grid.grid_mapping_variable = mapping_name
        grid.grid_mapping = _attrs(ds.variables[mapping_name])
    return grid


def _times(ds: netCDF4.Dataset, var: Any, timestep_minutes: float) -> np.ndarray:
    name = var.dimensions[0]
    if name not in ds.variables or ds.variables[name].dimensions != (name,):
        raise _NotLean
    time = ds.variables[name]
    attrs = set(time.ncattrs())
    if not np.issubdtype(time.dtype, np.integer) or {"_FillValue", "missing_value"} & attrs or "units" not in attrs:
        raise _NotLean
    if str(time.getncattr("units")).strip() not in _TIME_UNITS:
        raise _NotLean
    if "calendar" in attrs and str(time.getncattr("calendar")).lower() not in _CALENDARS:
        raise _NotLean
    time.set_auto_maskandscale(False)
    times = np.asarray(time[:]).astype(np.int64).astype("datetime64[s]")
    try:
        check_times(times, ds.filepath())
    except RadarInputError as exc:
        raise _NotLean from exc
    # read_scans sorts by time and checks the cadence; on the cadence already, the order is the same.
    step = np.timedelta64(int(round(timestep_minutes * 60)), "s")
    if times.size == 0 or (times.size > 1 and not np.all(np.diff(times) == step)):
        raise _NotLean
    return times


class Frames:
    """An open radar file: ``times`` (T,) datetime64[s], ``grid``, and ``read(indices)`` for some frames.

    ``lean`` says which reader serves it: netCDF4 (True) or read_scans, which then holds the whole file.
    """

    def __init__(self, path: Path | str, *, timestep_minutes: float = 6) -> None:
        self.path = Path(path)
        self.timestep_minutes = timestep_minutes
        self._dataset: netCDF4.Dataset | None = None
        self._whole: RadarSequence | None = None
        self.members = 1  # an ensemble product's member count
        try:
            self._dataset = netCDF4.Dataset(self.path, "r")
            if REALIZATION in self._dataset.dimensions:
                self.members = len(self._dataset.dimensions[REALIZATION])
            self._var = _radar_variable(self._dataset)
            self.grid = _grid(self._dataset, self._var)
            self.times = _times(self._dataset, self._var, timestep_minutes)
            if self._var.shape[0] != self.times.size:
                raise _NotLean
        except (_NotLean, OSError, RuntimeError, ValueError, KeyError) as exc:
            if self.members > 1:
                self.close()
                raise RadarInputError(f"{self.path}: not an ensemble product in the service's layout") from exc
            self.read_whole()

    @property
    def lean(self) -> bool:
        return self._whole is None

    def read_whole(self) -> None:
        """Read the whole file through read_scans; raises its RadarInputError for a file it rejects."""
        self.close()
        self._whole = read_scans(self.path, timestep_minutes=self.timestep_minutes)
        self.times, self.grid = self._whole.times, self._whole.grid

    def read(self, indices: list[int]) -> np.ndarray:
        """(len(indices), H, W) float32 dBZ of these frames (indices into ``times``), NaN = no data."""
        if self._whole is None:
            try:
                return self._read_lean(indices)
            except (_NotLean, OSError, RuntimeError):  # a truncated file's data fails only when read
                self.read_whole()
        assert self._whole is not None
        return self._whole.dbz[indices]

    def _read_lean(self, indices: list[int]) -> np.ndarray:
        assert self._dataset is not None
        var = self._var
        var.set_auto_maskandscale(False)
        if not indices:
            return np.empty((0, *self.grid.shape), dtype=np.float32)
        if indices == list(range(indices[0], indices[-1] + 1)):
            raw = var[indices[0] : indices[-1] + 1]  # one contiguous read
        else:
            raw = np.stack([var[index] for index in indices])
        values = np.asarray(raw, dtype=np.float32)
        if "_FillValue" in var.ncattrs():
            fill = np.float32(var.getncattr("_FillValue"))
            if not np.isnan(fill):
                values = np.where(values == fill, np.float32(np.nan), values)
        try:
            check_plausible_dbz(values, str(self.path))
        except RadarInputError as exc:
            raise _NotLean from exc
        if not np.isfinite(values.reshape(len(indices), -1)).any(axis=1).all():
            raise _NotLean  # an all-NaN frame: read_scans raises its AllNaNScanError
        return values

    def read_members(self, indices: list[int]) -> np.ndarray:
        """(M, len(indices), H, W) float32 dBZ: an ensemble product's members at these frames, NaN = no data."""
        if self._dataset is None or self.members < 2:
            raise RadarInputError(f"{self.path}: not an ensemble product")
        var = self._dataset.variables["reflectivity"]
        if var.dimensions[:2] != (REALIZATION, self._var.dimensions[0]) or var.dtype != np.float32:
            raise RadarInputError(f"{self.path}: ensemble reflectivity is not (realization, time, y, x) float32")
        var.set_auto_maskandscale(False)
        if not indices:
            return np.empty((self.members, 0, *self.grid.shape), dtype=np.float32)
        values = np.stack([np.asarray(var[:, index], dtype=np.float32) for index in indices], axis=1)
        if "_FillValue" in var.ncattrs():
            fill = np.float32(var.getncattr("_FillValue"))
            if not np.isnan(fill):
                values = np.where(values == fill, np.float32(np.nan), values)
        check_plausible_dbz(values, f"{self.path}: ensemble members")
        return values

    def close(self) -> None:
        if self._dataset is not None:
            self._dataset.close()
            self._dataset = None

    def __enter__(self) -> Frames:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


def open_frames(path: Path | str, *, timestep_minutes: float = 6) -> Frames:
    """Open ``path`` for reading some of its frames; raises what read_scans raises for a file it rejects."""
    return Frames(path, timestep_minutes=timestep_minutes)


def read_scan_frame(path: Path | str, *, timestep_minutes: float = 6) -> tuple[np.ndarray, Grid]:
    """One scan's (H, W) dBZ and grid, equal to ``read_scans(path).dbz[0]`` and ``.grid``."""
    with open_frames(path, timestep_minutes=timestep_minutes) as frames:
        if frames.lean and frames.times.size != 1:
            frames.read_whole()  # a file of several scans: read_scans checks every one of them
        return frames.read([0])[0], frames.grid
