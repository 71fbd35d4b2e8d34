"""CF netCDF radar scans in, CF-1.8 forecast products out (see docs/contracts.md). Never imports torch.

Interface
---------
read_scans(paths, *, timestep_minutes=6, min_scans=1, max_grid=None, max_scans=None) -> RadarSequence
    ``paths``: one file per scan, a directory of scans, or one file with a time dimension. Sizes are
    checked from each file's header before any data is decoded.
    ``RadarSequence.dbz`` (T, H, W) float32 dBZ, NaN = no data; ``times`` (T,) datetime64[s] UTC.
write_scans(directory, dbz (T, H, W), times, *, x, y, grid_mapping) -> list[Path]
    one CF file per scan, ``scan_YYYYmmddTHHMMZ.nc``, each written atomically.
write_forecast(path, dbz (L, H, W), *, reference_time, lead_minutes, grid, model, model_version,
               checkpoint_sha256, source, input_times) -> Path
    the forecast product: reflectivity (dBZ) + rainfall_rate (mm h-1) on valid times, atomic.
    ``dbz`` (M, L, H, W) with M > 1 (and ``ensemble_seed``, ``ensemble_perturbation``): the ensemble
    product, members on a ``realization`` axis plus their mean and exceedance probabilities.
write_ensemble_forecast(path, members (M, L, H, W), *, seed, perturbation, **write_forecast's) -> Path
write_observed(path, sequence, *, count) -> Path
    the last ``count`` input scans in the product's layout (lead_time <= 0 minutes), atomic.
file_sha256(path) -> str

Every problem with an input raises a subclass of :class:`RadarInputError` (a ``ValueError``) whose
message starts with the offending file's path.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import logging
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from model.io.atomic import atomic_path
from model.io.units import dbz_to_rainrate, rainrate_to_dbz

log = logging.getLogger(__name__)

ENGINE = "netcdf4"  # always explicit: xarray would otherwise pick whatever engine is installed
SCAN_NAME = "scan_{:%Y%m%dT%H%MZ}.nc"
SCAN_NAME_PATTERN = re.compile(r"^scan_(\d{8}T\d{4})Z\.nc$")
FILL_VALUE = np.float32(-9999.0)
# Zero rain has no finite dBZ; this floor (about 0.01 mm/h under Marshall-Palmer) is the default
# scaling's "no echo" value, so converted rain fields and dBZ feeds look alike to the model.
RAIN_FLOOR_DBZ = -10.0
PRODUCT_SOURCES = ("predrnn", "extrapolation", "persistence")

REFLECTIVITY_NAMES = ("reflectivity", "dbz", "dbzh", "refl", "equivalent_reflectivity_factor", "z", "th")
RAINRATE_NAMES = ("rainfall_rate", "rain_rate", "rainrate", "precipitation_rate", "precip_rate", "rr")
# Rain-rate units -> factor to mm/h (1 kg m-2 of water is 1 mm).
RAINRATE_UNITS = {
    "mm h-1": 1.0, "mm/h": 1.0, "mm hr-1": 1.0, "mm/hr": 1.0, "mm.h-1": 1.0, "mm h^-1": 1.0,
    "mm hour-1": 1.0, "kg m-2 h-1": 1.0, "mm s-1": 3600.0, "mm/s": 3600.0, "kg m-2 s-1": 3600.0,
    "m s-1": 3.6e6,
}
# Values outside these bounds are not weather but broken data (undeclared fill values, overflow).
DBZ_PLAUSIBLE = (-40.0, 90.0)
MAX_RAIN_RATE_MM_H = 1000.0
# Scan times outside these years are clock or encoding errors; lead times stay representable.
YEARS_PLAUSIBLE = (1900, 2200)
DISK_FULL_BYTES = 1 << 20  # a failed write with less free space than this is taken as a full disk
LAT_NAMES = ("lat", "latitude")
LON_NAMES = ("lon", "longitude")


class RadarInputError(ValueError):
    """A radar input cannot be used; the message names the file and the problem."""


class NotNetCDFError(RadarInputError):
    """The file is missing or is not a readable netCDF file."""


class MissingVariableError(RadarInputError):
    """No reflectivity / rain-rate variable, time or spatial coordinates where they should be."""


class UnitsError(RadarInputError):
    """Units missing, unknown, or values impossible for the declared units."""


class CadenceError(RadarInputError):
    """Scan times are not on the expected cadence."""


class DuplicateScanError(RadarInputError):
    """Two scans carry the same time."""


class MissingScanError(RadarInputError):
    """A gap of one or more whole cadence steps between scans."""


class GridMismatchError(RadarInputError):
    """Scans are on different grids (shape, coordinates or grid mapping)."""


class AllNaNScanError(RadarInputError):
    """A scan holds no valid data at all."""


class TooFewScansError(RadarInputError):
    """Fewer scans than the caller needs."""


class GridTooLargeError(RadarInputError):
    """The grid exceeds the configured maximum side length."""


class TooManyScansError(RadarInputError):
    """More scans than the caller accepts in one input."""


class ImplausibleValueError(RadarInputError):
    """Values no radar measures: infinite, or outside the plausible dBZ or rain-rate range."""


class GridAxisError(RadarInputError):
    """A 1-D grid axis is not finite and strictly monotonic."""


class TimeRangeError(RadarInputError):
    """Scan times outside the plausible years."""


@dataclass
class Grid:
    """Everything needed to write a field back on the input's grid (dims ``(y_name, x_name)``).

    ``x``/``y`` are the 1-D axis coordinates (projection metres, or degrees for a lat/lon grid), or
    None when the file has none; ``lat``/``lon`` are 2-D auxiliary coordinates (curvilinear grids).
    """

    y_name: str
    x_name: str
    shape: tuple[int, int]  # (H, W)
    y: np.ndarray | None = None
    x: np.ndarray | None = None
    y_attrs: dict[str, Any] = field(default_factory=dict)
    x_attrs: dict[str, Any] = field(default_factory=dict)
    lat: np.ndarray | None = None  # (H, W) degrees_north
    lon: np.ndarray | None = None  # (H, W) degrees_east
    lat_attrs: dict[str, Any] = field(default_factory=dict)
    lon_attrs: dict[str, Any] = field(default_factory=dict)
    grid_mapping_variable: str | None = None
    grid_mapping: dict[str, Any] = field(default_factory=dict)

    def same_as(self, other: Grid) -> str | None:
        """None when both describe the same grid, else a short description of the difference."""
        if self.shape != other.shape:
            return f"shape {other.shape} differs from {self.shape}"
        for name in ("y", "x", "lat", "lon"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if (mine is None) != (theirs is None):
                return f"coordinate {name} present in one scan only"
            if mine is not None and not np.allclose(mine, theirs, rtol=1e-6, atol=1e-6, equal_nan=True):
                return f"coordinate {name} values differ"
        if self.grid_mapping.get("grid_mapping_name") != other.grid_mapping.get("grid_mapping_name"):
            return (f"grid mapping {other.grid_mapping.get('grid_mapping_name')!r} differs from "
                    f"{self.grid_mapping.get('grid_mapping_name')!r}")
        return None


@dataclass
class RadarSequence:
    """Scans on one grid, sorted by time. ``dbz`` (T, H, W) float32, NaN = no data."""

    dbz: np.ndarray
    times: np.ndarray  # (T,) datetime64[s], UTC
    grid: Grid
    source_files: list[Path]  # (T,) the file each scan came from
    input_unit: str = "dBZ"  # what the files held: "dBZ" | "mm/h"

    @property
    def x(self) -> np.ndarray | None:
        return self.grid.x

    @property
    def y(self) -> np.ndarray | None:
        return self.grid.y

    @property
    def lat(self) -> np.ndarray | None:
        return self.grid.lat

    @property
    def lon(self) -> np.ndarray | None:
        return self.grid.lon

    @property
    def grid_mapping(self) -> dict[str, Any]:
        return self.grid.grid_mapping

    def tail(self, count: int) -> RadarSequence:
        """The last ``count`` scans (the context a model needs)."""
        return RadarSequence(self.dbz[-count:], self.times[-count:], self.grid,
                             self.source_files[-count:], self.input_unit)


# ----------------------------------------------------------------------------------------- reading


@dataclass
class _Block:
    path: Path
    dbz: np.ndarray  # (t, H, W)
    times: np.ndarray  # (t,) datetime64[s]
    grid: Grid
    unit: str


def _scan_files(paths: Sequence[Path | str] | Path | str) -> list[Path]:
    if isinstance(paths, (str, Path)):
        path = Path(paths)
        if path.is_dir():
            return sorted(p for p in path.iterdir() if p.suffix == ".nc" and not p.name.startswith("."))
        return [path]
    return [Path(p) for p in paths]


def normalise_units(units: str) -> str:
    """A units attribute compared loosely: case, spacing and ``**`` vs ``^`` do not matter."""
    return " ".join(units.strip().replace("**", "^").split()).lower()


def _find_variable(ds: xr.Dataset, path: Path) -> tuple[str, str]:
    """(variable name, "dBZ" | "mm/h"): by standard_name first, then by common names."""
    by_standard = {"equivalent_reflectivity_factor": "dBZ", "rainfall_rate": "mm/h"}
    for name, var in ds.data_vars.items():
        kind = by_standard.get(str(var.attrs.get("standard_name", "")).lower())
        if kind is not None and var.ndim >= 2:
            return str(name), kind
    lowered = {str(name).lower(): str(name) for name in ds.data_vars}
    for candidates, kind in ((REFLECTIVITY_NAMES, "dBZ"), (RAINRATE_NAMES, "mm/h")):
        for candidate in candidates:
            if candidate in lowered and ds[lowered[candidate]].ndim >= 2:
                return lowered[candidate], kind
    raise MissingVariableError(
        f"{path}: no radar variable (standard_name equivalent_reflectivity_factor or rainfall_rate, "
        f"or a name such as 'reflectivity' or 'rainfall_rate'); variables: {sorted(map(str, ds.data_vars))}"
    )


def _to_dbz(values: np.ndarray, units: str | None, kind: str, path: Path, name: str) -> np.ndarray:
    if units is None:
        raise UnitsError(f"{path}: variable {name!r} has no units attribute (expected dBZ or mm h-1)")
    normalised = normalise_units(units)
    if kind == "dBZ" or normalised == "dbz":
        if normalised != "dbz":
            raise UnitsError(f"{path}: reflectivity {name!r} has units {units!r}, not dBZ")
        check_plausible_dbz(values, f"{path}: {name!r}")
        return values.astype(np.float32)
    if normalised not in RAINRATE_UNITS:
        raise UnitsError(f"{path}: variable {name!r} has units {units!r}; rain rate needs one of "
                         f"{sorted(RAINRATE_UNITS)}")
    rate = values.astype(np.float64) * RAINRATE_UNITS[normalised]
    if np.nanmin(rate, initial=0.0) < 0:
        raise UnitsError(f"{path}: {name!r} has negative rain rates (min {np.nanmin(rate):.3g} mm/h)")
    check_plausible_rain_rate(rate, f"{path}: {name!r}")
    with np.errstate(invalid="ignore"):
        dbz = rainrate_to_dbz(rate)
    return np.where(np.isnan(rate), np.nan, np.maximum(dbz, RAIN_FLOOR_DBZ)).astype(np.float32)


def _count_and_first(bad: np.ndarray) -> str:
    first = [int(i) for i in np.argwhere(bad)[0]]
    return f"{int(bad.sum())} value(s), the first at index {first}"


def check_plausible_dbz(values: np.ndarray, where: str) -> None:
    """ImplausibleValueError for infinite values or dBZ outside :data:`DBZ_PLAUSIBLE` (NaN is no data)."""
    low, high = DBZ_PLAUSIBLE
    infinite = np.isinf(values)
    if infinite.any():
        raise ImplausibleValueError(f"{where} holds infinite values: {_count_and_first(infinite)}")
    with np.errstate(invalid="ignore"):
        outside = (values < low) | (values > high)
    if outside.any():
        raise ImplausibleValueError(
            f"{where} holds reflectivities outside {low:g}..{high:g} dBZ: {_count_and_first(outside)} "
            f"(range seen {np.nanmin(values):.3g}..{np.nanmax(values):.3g}); use NaN or the fill value for no data"
        )


def check_plausible_rain_rate(rate: np.ndarray, where: str) -> None:
    """ImplausibleValueError for infinite rain rates or rates above :data:`MAX_RAIN_RATE_MM_H`."""
    infinite = np.isinf(rate)
    if infinite.any():
        raise ImplausibleValueError(f"{where} holds infinite values: {_count_and_first(infinite)}")
    with np.errstate(invalid="ignore"):
        outside = rate > MAX_RAIN_RATE_MM_H
    if outside.any():
        raise ImplausibleValueError(
            f"{where} holds rain rates above {MAX_RAIN_RATE_MM_H:g} mm/h: {_count_and_first(outside)} "
            f"(max {np.nanmax(rate):.3g} mm/h)"
        )


def check_axis(values: np.ndarray, name: str, where: str) -> None:
    """GridAxisError unless a 1-D coordinate is finite and strictly increasing or decreasing."""
    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).all():
        raise GridAxisError(f"{where}: coordinate {name!r} holds NaN or infinite values")
    steps = np.diff(values)
    if steps.size and not ((steps > 0).all() or (steps < 0).all()):
        raise GridAxisError(f"{where}: coordinate {name!r} is not strictly monotonic")


def check_times(times: np.ndarray, where: str) -> None:
    """TimeRangeError for scan times outside :data:`YEARS_PLAUSIBLE`."""
    first, last = YEARS_PLAUSIBLE
    years = times.astype("datetime64[Y]").astype(np.int64) + 1970
    outside = (years < first) | (years > last)
    if outside.any():
        raise TimeRangeError(f"{where}: scan time year {int(years[outside][0])} is outside {first}..{last}")


def _is_lat(var: xr.DataArray, name: str) -> bool:
    return str(var.attrs.get("standard_name", "")) == "latitude" or name.lower() in LAT_NAMES


def _is_lon(var: xr.DataArray, name: str) -> bool:
    return str(var.attrs.get("standard_name", "")) == "longitude" or name.lower() in LON_NAMES


def _read_grid(ds: xr.Dataset, var: xr.DataArray, path: Path) -> Grid:
    y_name, x_name = (str(d) for d in var.dims[-2:])
    grid = Grid(y_name=y_name, x_name=x_name, shape=(int(var.shape[-2]), int(var.shape[-1])))
    if y_name in ds.coords and ds[y_name].ndim == 1:
        grid.y, grid.y_attrs = np.asarray(ds[y_name].values), dict(ds[y_name].attrs)
    if x_name in ds.coords and ds[x_name].ndim == 1:
        grid.x, grid.x_attrs = np.asarray(ds[x_name].values), dict(ds[x_name].attrs)
    for name in list(ds.coords) + list(ds.data_vars):
        candidate = ds[name]
        if tuple(map(str, candidate.dims)) != (y_name, x_name):
            continue
        if _is_lat(candidate, str(name)):
            grid.lat, grid.lat_attrs = np.asarray(candidate.values, dtype=np.float64), dict(candidate.attrs)
        elif _is_lon(candidate, str(name)):
            grid.lon, grid.lon_attrs = np.asarray(candidate.values, dtype=np.float64), dict(candidate.attrs)
    for axis_name, axis in ((y_name, grid.y), (x_name, grid.x)):
        if axis is not None and np.issubdtype(axis.dtype, np.number):
            check_axis(axis, axis_name, str(path))
    if (grid.x is None or grid.y is None) and (grid.lat is None or grid.lon is None):
        raise MissingVariableError(
            f"{path}: no spatial coordinates: need 1-D {y_name!r}/{x_name!r} coordinates or 2-D lat/lon"
        )
    mapping_name = var.attrs.get("grid_mapping") or var.encoding.get("grid_mapping")
    if mapping_name:
        # CF also allows "crs: x y" lists; the first token is the variable in every form we accept.
        mapping_name = str(mapping_name).split(":")[0].split()[0]
        if mapping_name not in ds.variables:
            raise MissingVariableError(f"{path}: grid_mapping variable {mapping_name!r} is absent")
        grid.grid_mapping_variable = mapping_name
        grid.grid_mapping = dict(ds[mapping_name].attrs)
    return grid


def _read_times(ds: xr.Dataset, var: xr.DataArray, path: Path) -> np.ndarray:
    if var.ndim == 3:
        time_dim = var.dims[0]
        if time_dim not in ds.coords:
            raise MissingVariableError(f"{path}: leading dimension {time_dim!r} has no time coordinate")
        times = np.asarray(ds[time_dim].values)
    elif "time" in ds.coords and ds["time"].ndim == 0:
        times = np.atleast_1d(ds["time"].values)
    else:
        raise MissingVariableError(f"{path}: no time coordinate (a 'time' dimension or scalar coordinate)")
    if not np.issubdtype(times.dtype, np.datetime64):
        raise MissingVariableError(f"{path}: time is not CF time (units like 'seconds since ...')")
    if np.isnat(times).any():
        raise MissingVariableError(f"{path}: time coordinate holds missing values")
    times = times.astype("datetime64[s]")
    check_times(times, str(path))
    return times


def _check_header_size(var: xr.DataArray, path: Path, name: str, *, max_grid: int | None,
                       scans_left: int | None) -> None:
    """Sizes from the header alone: a small compressed file may decode to gigabytes."""
    h, w = int(var.shape[-2]), int(var.shape[-1])
    if max_grid is not None and max(h, w) > max_grid:
        raise GridTooLargeError(f"{path}: grid {h}x{w} exceeds the maximum side {max_grid}")
    scans = int(var.shape[0]) if var.ndim == 3 else 1
    if scans_left is not None and scans > scans_left:
        raise TooManyScansError(f"{path}: {name!r} brings the input above the maximum of scans per request")


def _read_file(path: Path, *, max_grid: int | None = None, scans_left: int | None = None) -> _Block:
    if not path.is_file():
        raise NotNetCDFError(f"{path}: file not found")
    try:
        ds = xr.open_dataset(path, engine=ENGINE, mask_and_scale=True, decode_times=True)
    except Exception as exc:  # netCDF4 raises OSError, xarray ValueError; both mean "unreadable"
        raise NotNetCDFError(f"{path}: not a readable netCDF file ({exc.__class__.__name__}: {exc})") from exc
    with ds:
        name, kind = _find_variable(ds, path)
        var = ds[name]
        # Squeeze singleton extra axes (e.g. a height level of length 1) but keep time and the grid.
        extra = [d for d in var.dims[:-2] if var.sizes[d] == 1 and str(d) != "time"]
        if extra:
            var = var.isel(dict.fromkeys(extra, 0))
        if var.ndim not in (2, 3):
            raise MissingVariableError(f"{path}: {name!r} has dims {var.dims}; expected (time, y, x)")
        _check_header_size(var, path, name, max_grid=max_grid, scans_left=scans_left)
        grid = _read_grid(ds, var, path)
        times = _read_times(ds, var, path)
        try:
            values = np.asarray(var.values)
        except (OSError, RuntimeError) as exc:  # truncated file: header fine, data unreadable
            raise NotNetCDFError(f"{path}: data of {name!r} cannot be read ({exc})") from exc
        dbz = _to_dbz(values, var.attrs.get("units"), kind, path, name)
        if dbz.ndim == 2:
            dbz = dbz[None]
        if dbz.shape[0] != times.shape[0]:
            raise MissingVariableError(f"{path}: {dbz.shape[0]} fields but {times.shape[0]} times")
    return _Block(path, dbz, times, grid, kind)


def _iso(time: np.datetime64) -> str:
    return f"{np.datetime_as_string(time, unit='m')}Z"


def _validate_sequence(
    dbz: np.ndarray, times: np.ndarray, files: list[Path], timestep_minutes: float
) -> None:
    for index in range(times.size):
        if not np.isfinite(dbz[index]).any():
            raise AllNaNScanError(f"{files[index]}: scan at {_iso(times[index])} has no valid data (all NaN)")
    step = np.timedelta64(int(round(timestep_minutes * 60)), "s")
    for index in range(1, times.size):
        gap = times[index] - times[index - 1]
        if gap == np.timedelta64(0, "s"):
            raise DuplicateScanError(
                f"{files[index]}: scan at {_iso(times[index])} duplicates the one in {files[index - 1]}"
            )
        if gap % step != np.timedelta64(0, "s"):
            raise CadenceError(
                f"{files[index]}: scan at {_iso(times[index])} is {gap.astype(int) / 60:g} min after the "
                f"previous one ({_iso(times[index - 1])}); the cadence is {timestep_minutes:g} min"
            )
        if gap > step:
            missing = [_iso(times[index - 1] + k * step) for k in range(1, int(gap // step))]
            raise MissingScanError(
                f"{files[index]}: scans missing before {_iso(times[index])}: {', '.join(missing)}"
            )


def read_scans(
    paths: Sequence[Path | str] | Path | str,
    *,
    timestep_minutes: float = 6,
    min_scans: int = 1,
    max_grid: int | None = None,
    max_scans: int | None = None,
) -> RadarSequence:
    """Read and validate a radar sequence.

    Parameters
    ----------
    paths : a file, a directory of ``*.nc`` scans, or a list of files (any order).
    timestep_minutes : expected cadence; gaps must be exactly one step.
    min_scans : fewer scans raise :class:`TooFewScansError`.
    max_grid : largest allowed H or W in pixels (None: no limit).
    max_scans : most scans over all files (None: no limit); like ``max_grid``, checked from each
        file's header before its data is decoded.

    Returns
    -------
    RadarSequence with ``dbz`` (T, H, W) float32 in dBZ (rain rates converted with Marshall-Palmer),
    sorted by time.

    Raises
    ------
    RadarInputError subclasses, each naming the offending file.
    """
    files = _scan_files(paths)
    if not files:
        raise TooFewScansError(f"{paths}: no .nc scans found")
    if max_scans is not None and len(files) > max_scans:
        raise TooManyScansError(f"{files[max_scans]}: {len(files)} files, at most {max_scans} scans accepted")
    blocks: list[_Block] = []
    for path in files:
        left = None if max_scans is None else max_scans - sum(b.times.size for b in blocks)
        try:
            blocks.append(_read_file(path, max_grid=max_grid, scans_left=left))
        except TooManyScansError as exc:
            raise TooManyScansError(f"{exc}: at most {max_scans} scans accepted") from exc
    reference = blocks[0]
    for block in blocks[1:]:
        difference = reference.grid.same_as(block.grid)
        if difference:
            raise GridMismatchError(f"{block.path}: grid differs from {reference.path}: {difference}")
    h, w = reference.grid.shape
    if max_grid is not None and max(h, w) > max_grid:
        raise GridTooLargeError(f"{reference.path}: grid {h}x{w} exceeds the maximum side {max_grid}")
    dbz = np.concatenate([b.dbz for b in blocks], axis=0)
    times = np.concatenate([b.times for b in blocks])
    sources = [b.path for b in blocks for _ in range(b.times.size)]
    order = np.argsort(times, kind="stable")
    dbz, times, sources = dbz[order], times[order], [sources[i] for i in order]
    _validate_sequence(dbz, times, sources, timestep_minutes)
    if times.size < min_scans:
        raise TooFewScansError(f"{sources[-1]}: {times.size} scan(s), at least {min_scans} needed")
    units = {b.unit for b in blocks}
    return RadarSequence(dbz, times, reference.grid, sources, "mm/h" if units == {"mm/h"} else "dBZ")


def scan_time_from_name(path: Path) -> dt.datetime | None:
    """The scan time encoded in a ``scan_YYYYmmddTHHMMZ.nc`` name (UTC), or None for other names."""
    match = SCAN_NAME_PATTERN.match(path.name)
    if match is None:
        return None
    return dt.datetime.strptime(match.group(1), "%Y%m%dT%H%M").replace(tzinfo=dt.UTC)


# ----------------------------------------------------------------------------------------- writing


def _atomic_to_netcdf(ds: xr.Dataset, path: Path, encoding: dict[str, Any]) -> Path:
    """Write to a hidden temporary name in the same directory, fsync, then rename over ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:  # 0644: products are read by the API's user too
        try:
            ds.to_netcdf(tmp, engine=ENGINE, format="NETCDF4", encoding=encoding)
        except (RuntimeError, OSError) as exc:
            # HDF5 reports a full disk as a bare "HDF error", or as EACCES on the next file it
            # creates; say what it is, as the OSError it is.
            if shutil.disk_usage(path.parent).free < DISK_FULL_BYTES:
                raise OSError(errno.ENOSPC, f"No space left on device writing {path.name} ({exc})",
                              str(path.parent)) from exc
            raise
    return path


def _to_datetime64(times: Iterable[Any]) -> np.ndarray:
    values = []
    for t in times:
        if isinstance(t, dt.datetime) and t.tzinfo is not None:
            t = t.astimezone(dt.UTC).replace(tzinfo=None)
        values.append(np.datetime64(t, "s"))
    return np.array(values, dtype="datetime64[s]")


def _grid_variables(grid: Grid) -> tuple[dict[str, Any], dict[str, Any]]:
    """(coords, data_vars) that put a field on ``grid``."""
    coords: dict[str, Any] = {}
    data_vars: dict[str, Any] = {}
    if grid.y is not None:
        coords[grid.y_name] = (grid.y_name, grid.y, grid.y_attrs)
    if grid.x is not None:
        coords[grid.x_name] = (grid.x_name, grid.x, grid.x_attrs)
    if grid.lat is not None and grid.lon is not None:
        lat_attrs = {"standard_name": "latitude", "units": "degrees_north", **grid.lat_attrs}
        lon_attrs = {"standard_name": "longitude", "units": "degrees_east", **grid.lon_attrs}
        coords["lat"] = ((grid.y_name, grid.x_name), grid.lat, lat_attrs)
        coords["lon"] = ((grid.y_name, grid.x_name), grid.lon, lon_attrs)
    if grid.grid_mapping_variable:
        data_vars[grid.grid_mapping_variable] = ((), np.int32(0), dict(grid.grid_mapping))
    return coords, data_vars


def grid_from_xy(
    x: np.ndarray, y: np.ndarray, grid_mapping: dict[str, Any] | None = None, *, variable: str = "crs"
) -> Grid:
    """A :class:`Grid` from 1-D axes; ``grid_mapping_name = latitude_longitude`` means degrees."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    mapping = dict(grid_mapping or {})
    if mapping.get("grid_mapping_name") == "latitude_longitude":
        return Grid("lat", "lon", (y.size, x.size), y, x,
                    {"standard_name": "latitude", "units": "degrees_north", "axis": "Y"},
                    {"standard_name": "longitude", "units": "degrees_east", "axis": "X"},
                    grid_mapping_variable=variable, grid_mapping=mapping)
    return Grid("y", "x", (y.size, x.size), y, x,
                {"standard_name": "projection_y_coordinate", "units": "m", "axis": "Y"},
                {"standard_name": "projection_x_coordinate", "units": "m", "axis": "X"},
                grid_mapping_variable=variable if mapping else None, grid_mapping=mapping)


def _reflectivity_attrs(grid: Grid) -> dict[str, Any]:
    # No "coordinates" attribute here: xarray writes it from the auxiliary coordinates it finds.
    attrs: dict[str, Any] = {"standard_name": "equivalent_reflectivity_factor",
                             "long_name": "radar reflectivity", "units": "dBZ"}
    if grid.grid_mapping_variable:
        attrs["grid_mapping"] = grid.grid_mapping_variable
    return attrs


def write_scans(
    directory: Path | str,
    dbz: np.ndarray,
    times: Sequence[Any] | np.ndarray,
    *,
    x: np.ndarray,
    y: np.ndarray,
    grid_mapping: dict[str, Any] | None = None,
) -> list[Path]:
    """Write one CF-1.8 file per scan, ``scan_YYYYmmddTHHMMZ.nc``, each atomically.

    Parameters
    ----------
    dbz : (T, H, W) reflectivity in dBZ; NaN = no data.
    times : (T,) scan times (datetime, aware or naive UTC, or datetime64).
    x, y : (W,), (H,) projection coordinates in metres, or degrees when
        ``grid_mapping["grid_mapping_name"] == "latitude_longitude"``.
    grid_mapping : attributes of the CF grid-mapping variable (written as ``crs``).
    """
    dbz = np.asarray(dbz, dtype=np.float32)
    stamps = _to_datetime64(times)
    if dbz.ndim != 3 or dbz.shape[0] != stamps.size:
        raise ValueError(f"dbz must be (T, H, W) with T = len(times) = {stamps.size}, got {dbz.shape}")
    grid = grid_from_xy(x, y, grid_mapping)
    if grid.shape != dbz.shape[1:]:
        raise ValueError(f"x/y give a {grid.shape} grid but dbz frames are {dbz.shape[1:]}")
    coords, data_vars = _grid_variables(grid)
    written = []
    for index, stamp in enumerate(stamps):
        field_vars = dict(data_vars)
        field_vars["reflectivity"] = (("time", grid.y_name, grid.x_name), dbz[index : index + 1],
                                      _reflectivity_attrs(grid))
        ds = xr.Dataset(field_vars, coords={**coords, "time": ("time", [stamp], {"standard_name": "time"})},
                        attrs={"Conventions": "CF-1.8", "title": "radar reflectivity scan",
                               "source": "radar observation"})
        encoding = {
            "reflectivity": {"dtype": "float32", "zlib": True, "complevel": 4, "_FillValue": FILL_VALUE},
            "time": {"units": "seconds since 1970-01-01 00:00:00", "calendar": "standard", "dtype": "int64"},
        }
        name = SCAN_NAME.format(stamp.astype(dt.datetime))
        written.append(_atomic_to_netcdf(ds, Path(directory) / name, encoding))
    return written


# zlib level 1 with the byte shuffle: measured by benchmarks/bench_netcdf_encoding.py (docs/results.md,
# Worker speed) against levels 0-9 with and without shuffle on a 256 x 256 x 20 forecast.
PRODUCT_COMPRESSION: dict[str, Any] = {"zlib": True, "complevel": 1, "shuffle": True}
# The ensemble product's names (docs/contracts.md); the thresholds are the service's skill thresholds.
REALIZATION = "realization"
THRESHOLD = "threshold"
ENSEMBLE_MEAN = "reflectivity_ensemble_mean"
PROBABILITY = "probability_of_reflectivity_above_threshold"
ENSEMBLE_THRESHOLDS_DBZ: tuple[float, ...] = (20.0, 30.0, 40.0)


def write_forecast(
    path: Path | str,
    dbz: np.ndarray,
    *,
    reference_time: Any,
    lead_minutes: Sequence[float] | np.ndarray,
    grid: Grid | RadarSequence,
    model: str,
    model_version: str,
    checkpoint_sha256: str,
    source: str,
    input_times: Sequence[Any] | np.ndarray,
    extra_attrs: dict[str, Any] | None = None,
    compression: dict[str, Any] | None = None,
    ensemble_seed: int = 0,
    ensemble_perturbation: str = "",
) -> Path:
    """Write the CF-1.8 forecast product atomically and return its path.

    Parameters
    ----------
    dbz : (L, H, W) forecast reflectivity in dBZ (NaN = no data), or (M, L, H, W) ensemble members.
        M > 1 writes the ensemble product (docs/contracts.md): the members on a ``realization``
        axis, their mean and the probabilities of reaching :data:`ENSEMBLE_THRESHOLDS_DBZ`. M == 1
        writes exactly the deterministic product of ``dbz[0]``.
    reference_time : time of the newest input scan (the forecast reference time), UTC.
    lead_minutes : (L,) lead times in minutes; valid time = reference_time + lead.
    grid : the input's grid (or the input sequence itself); coordinates and grid mapping are copied.
    source : ``"predrnn"`` | ``"extrapolation"`` | ``"persistence"``: which method made the fields.
    compression : netCDF4 filter settings of the two fields (``zlib``, ``complevel``, ``shuffle``);
        default PRODUCT_COMPRESSION.
    ensemble_seed, ensemble_perturbation : the ensemble's seed and how its members were perturbed
        (global attributes ``ensemble_seed`` and ``ensemble_perturbation``); unused when M == 1.
    """
    if source not in PRODUCT_SOURCES:
        raise ValueError(f"source must be one of {PRODUCT_SOURCES}, not {source!r}")
    grid = grid.grid if isinstance(grid, RadarSequence) else grid
    dbz = np.asarray(dbz, dtype=np.float32)
    leads = np.asarray(lead_minutes, dtype=np.float64)
    if dbz.ndim == 4 and dbz.shape[0] == 1:
        dbz = dbz[0]  # one member is the deterministic forecast: today's product, no realization axis
    members = dbz.shape[0] if dbz.ndim == 4 else 0
    if dbz.ndim not in (3, 4) or dbz.shape[-3] != leads.size or dbz.shape[-2:] != grid.shape:
        raise ValueError(f"dbz must be (L={leads.size}, {grid.shape[0]}, {grid.shape[1]}) or (M, L, ...), "
                         f"got {dbz.shape}")
    reference = _to_datetime64([reference_time])[0]
    valid = reference + (leads * 60).astype("timedelta64[s]")
    inputs = _to_datetime64(input_times)
    coords, data_vars = _grid_variables(grid)
    dims = ("time", grid.y_name, grid.x_name)
    with np.errstate(invalid="ignore", over="ignore"):
        rain = dbz_to_rainrate(dbz)
    rain_attrs = {"standard_name": "rainfall_rate", "long_name": "rain rate (Marshall-Palmer Z = 200 R^1.6)",
                  "units": "mm h-1"}
    if grid.grid_mapping_variable:
        rain_attrs["grid_mapping"] = grid.grid_mapping_variable
    field_dims = (REALIZATION, *dims) if members else dims
    data_vars["reflectivity"] = (field_dims, dbz, _reflectivity_attrs(grid))
    data_vars["rainfall_rate"] = (field_dims, rain.astype(np.float32), rain_attrs)
    if members:
        _add_ensemble_variables(data_vars, coords, dbz, grid, dims)
    coords["time"] = ("time", valid, {"standard_name": "time", "long_name": "valid time"})
    lead_values = leads.astype(np.int32) if np.all(leads == np.round(leads)) else leads
    coords["lead_time"] = ("time", lead_values, {"standard_name": "forecast_period", "units": "minutes",
                                           "long_name": "lead time"})
    coords["forecast_reference_time"] = ((), reference, {"standard_name": "forecast_reference_time"})
    attrs = {
        "Conventions": "CF-1.8",
        "title": "precipitation nowcast",
        "institution": "nowcast service",
        "source": source,
        "model": model,
        "model_version": model_version,
        "checkpoint_sha256": checkpoint_sha256,
        "input_times": " ".join(_iso(t) for t in inputs),
        "history": f"{dt.datetime.now(dt.UTC):%Y-%m-%dT%H:%M:%SZ} created by the nowcast service",
        **(extra_attrs or {}),
    }
    if members:
        attrs.update({"ensemble_members": np.int32(members), "ensemble_seed": np.int64(ensemble_seed),
                      "ensemble_perturbation": ensemble_perturbation})
    ds = xr.Dataset(data_vars, coords=coords, attrs=attrs)
    chunks = (1, *grid.shape)  # one lead time per chunk: a reader of one lead decompresses only it
    field_chunks = (1, *chunks) if members else chunks  # and one (member, lead) per chunk for members
    filters = dict(PRODUCT_COMPRESSION if compression is None else compression)
    encoding = {
        "reflectivity": {"dtype": "float32", "_FillValue": FILL_VALUE, "chunksizes": field_chunks, **filters},
        "rainfall_rate": {"dtype": "float32", "_FillValue": FILL_VALUE, "chunksizes": field_chunks, **filters},
        "time": {"units": "seconds since 1970-01-01 00:00:00", "calendar": "standard", "dtype": "int64"},
        "forecast_reference_time": {"units": "seconds since 1970-01-01 00:00:00", "calendar": "standard",
                                    "dtype": "int64"},
    }
    if members:
        encoding[ENSEMBLE_MEAN] = {"dtype": "float32", "_FillValue": FILL_VALUE, "chunksizes": chunks, **filters}
        encoding[PROBABILITY] = {"dtype": "float32", "_FillValue": FILL_VALUE, "chunksizes": (1, *chunks),
                                 **filters}
        encoding[REALIZATION] = {"dtype": "int32"}
        encoding[THRESHOLD] = {"dtype": "float32", "_FillValue": None}
    return _atomic_to_netcdf(ds, Path(path), encoding)


def write_ensemble_forecast(path: Path | str, members_dbz: np.ndarray, *, seed: int, perturbation: str,
                            **kwargs: Any) -> Path:
    """:func:`write_forecast` of (M, L, H, W) members: the ensemble product, or for M == 1 today's product."""
    return write_forecast(path, members_dbz, ensemble_seed=seed, ensemble_perturbation=perturbation, **kwargs)


def _add_ensemble_variables(data_vars: dict[str, Any], coords: dict[str, Any], members_dbz: np.ndarray, grid: Grid,
                            dims: tuple[str, str, str]) -> None:
    """The realization and threshold axes, the members' mean and the exceedance probabilities.

    members_dbz : (M, L, H, W) dBZ, NaN = no data; ``dims`` = (time, y, x).
    """
    # model.members holds the one definition of the probability (torch-free, like this module).
    from model.members import ensemble_mean, exceedance_probability

    count = members_dbz.shape[0]
    coords[REALIZATION] = (REALIZATION, np.arange(count, dtype=np.int32),
                           {"standard_name": "realization", "units": "1", "long_name": "ensemble member"})
    coords[THRESHOLD] = (THRESHOLD, np.asarray(ENSEMBLE_THRESHOLDS_DBZ, dtype=np.float32),
                         {"standard_name": "equivalent_reflectivity_factor", "units": "dBZ",
                          "long_name": "reflectivity threshold",
                          "spp__relative_to_threshold": "greater_than_or_equal_to"})
    mean_attrs = {**_reflectivity_attrs(grid), "long_name": "ensemble mean radar reflectivity",
                  "cell_methods": "realization: mean"}
    data_vars[ENSEMBLE_MEAN] = (dims, ensemble_mean(members_dbz), mean_attrs)
    probability_attrs: dict[str, Any] = {
        "long_name": "probability of equivalent_reflectivity_factor at or above threshold", "units": "1",
        "valid_min": np.float32(0.0), "valid_max": np.float32(1.0)}
    if grid.grid_mapping_variable:
        probability_attrs["grid_mapping"] = grid.grid_mapping_variable
    probability = exceedance_probability(members_dbz, ENSEMBLE_THRESHOLDS_DBZ)
    data_vars[PROBABILITY] = ((THRESHOLD, *dims), probability, probability_attrs)


def write_observed(path: Path | str, sequence: RadarSequence, *, count: int) -> Path:
    """The last ``count`` scans of ``sequence`` beside a forecast, in the forecast's layout.

    ``reflectivity(time, y, x)`` in dBZ on the scans' own times, with ``lead_time`` in minutes from
    the newest scan (0, -6, ...) and the input's grid mapping, so that a reader of one lead time
    finds observed scans and forecasts the same way (the API's map field, ``lead`` <= 0).
    """
    grid = sequence.grid
    first = max(0, len(sequence.times) - count)
    dbz = np.asarray(sequence.dbz[first:], dtype=np.float32)
    times = sequence.times[first:].astype("datetime64[s]")
    leads = ((times - times[-1]) / np.timedelta64(60, "s")).astype(np.int32)
    coords, data_vars = _grid_variables(grid)
    data_vars["reflectivity"] = (("time", grid.y_name, grid.x_name), dbz, _reflectivity_attrs(grid))
    coords["time"] = ("time", times, {"standard_name": "time", "long_name": "scan time"})
    coords["lead_time"] = ("time", leads, {"standard_name": "forecast_period", "units": "minutes",
                                           "long_name": "minutes from the newest scan"})
    ds = xr.Dataset(data_vars, coords=coords, attrs={"Conventions": "CF-1.8", "title": "observed radar scans",
                                                    "source": "radar observation"})
    encoding = {
        "reflectivity": {"dtype": "float32", "_FillValue": FILL_VALUE, "chunksizes": (1, *grid.shape),
                         **PRODUCT_COMPRESSION},
        "time": {"units": "seconds since 1970-01-01 00:00:00", "calendar": "standard", "dtype": "int64"},
    }
    return _atomic_to_netcdf(ds, Path(path), encoding)


def file_sha256(path: Path | str) -> str:
    """Hex sha256 of a file's bytes (checkpoints, inputs)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
