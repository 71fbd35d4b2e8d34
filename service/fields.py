"""One lead time of a product as data for a map: the viewer's field, a Cloud-Optimized GeoTIFF, the grid mapping.

Interface
---------
field_document(product_dir, lead, job_id, selection)  -> the ``?f=field`` JSON (values as base64 uint8)
geotiff_path(product_dir, lead, job_id, selection)    -> ``lead_<MMM>[_<quantity>].tif`` (rendered once, cached)

Forecast lead times (> 0) come from ``forecast.nc``, observed scans (``lead`` <= 0, minutes from the
newest scan) from ``observed.nc``, both written by the workers. The field travels as one byte per
cell (``dBZ = code / 2 - 32``, 255 = no data): half a dBZ is below radar precision, and a 512 x 512
frame is 256 KiB before base64 instead of several MB of JSON numbers. The browser colours it.
An ensemble product's quantities (service/quantities.py) travel the same way: the mean and a member
in dBZ codes, a probability as ``code = round(100 p)`` (0..100, step 0.01, 255 = no data).
The projection is the product's own CF grid mapping, given as a PROJ string the page hands to
proj4js, so the map is drawn in the radar's projection and nothing is resampled.
"""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from model.io.atomic import atomic_path
from service.gridmap import grid_mapping_of
from service.problems import Problem
from service.quantities import DEFAULT, Resolved, Selection, read_slice, resolve
from service.representations import NETCDF_LOCK

FORECAST_NAME = "forecast.nc"
OBSERVED_NAME = "observed.nc"
DBZ_OFFSET = -32.0  # code 0 is -32 dBZ
DBZ_STEP = 0.5
NODATA_CODE = 255
PROBABILITY_STEP = 0.01  # code 100 is probability 1


def _source(product_dir: Path, lead: int, job_id: str, selection: Selection = DEFAULT) -> tuple[Path, str]:
    if lead <= 0 and not selection.is_default:
        raise Problem(404, "quantity-not-available", f"lead={lead} is an observed scan: it has only "
                      f"reflectivity, not quantity={selection.quantity}; ask for a lead time > 0", field="quantity")
    return _product_file(product_dir, lead, job_id)


def _product_file(product_dir: Path, lead: int, job_id: str) -> tuple[Path, str]:
    path = product_dir / (FORECAST_NAME if lead > 0 else OBSERVED_NAME)
    if not path.is_file():
        what = "forecast" if lead > 0 else "observed scans (products made before they were kept as data)"
        raise Problem(404, "lead-not-available", f"job {job_id} has no {what} for lead={lead}", field="lead")
    return path, "forecast" if lead > 0 else "observed"


def _select(ds: xr.Dataset, lead: int, job_id: str, selection: Selection) -> tuple[Resolved, int]:
    """(the selection checked against the product, the index of ``lead`` on the time axis)."""
    leads = [int(round(float(v))) for v in np.atleast_1d(ds["lead_time"].values)]
    if lead not in leads:
        raise Problem(404, "lead-not-available",
                      f"no lead={lead} minutes in job {job_id}; available lead times: {leads}", field="lead")
    return resolve(ds, selection, job_id), leads.index(lead)


def _encode(values: np.ndarray, resolved: Resolved) -> tuple[np.ndarray, dict[str, Any]]:
    """(H, W) dBZ or probability -> uint8 codes and the ``encoding`` members that decode them."""
    codes = np.full(values.shape, NODATA_CODE, dtype=np.uint8)
    finite = np.isfinite(values)
    if resolved.units == "1":
        codes[finite] = np.clip(np.round(values[finite] / PROBABILITY_STEP), 0, 100).astype(np.uint8)
        return codes, {"offset": 0.0, "step": PROBABILITY_STEP}
    codes[finite] = np.clip(np.round((values[finite] - DBZ_OFFSET) / DBZ_STEP), 0, NODATA_CODE - 1).astype(np.uint8)
    return codes, {"offset": DBZ_OFFSET, "step": DBZ_STEP, "offset_dbz": DBZ_OFFSET, "step_dbz": DBZ_STEP}


def _edges(axis: np.ndarray) -> tuple[float, float]:
    """(first edge, last edge) of cell-centre coordinates, half a cell beyond each end."""
    step = float(axis[1] - axis[0]) if axis.size > 1 else 1.0
    return float(axis[0]) - step / 2, float(axis[-1]) + step / 2


def _lonlat_bounds(proj4: str | None, extent: list[float]) -> list[float] | None:
    """[west, south, east, north] in degrees of the grid's outline (sampled along its edges)."""
    if proj4 is None:
        return None
    from pyproj import CRS, Transformer

    x0, y0, x1, y1 = extent
    t = np.linspace(0.0, 1.0, 17)
    xs = np.concatenate([x0 + (x1 - x0) * t, np.full_like(t, x1), x1 - (x1 - x0) * t, np.full_like(t, x0)])
    ys = np.concatenate([np.full_like(t, y0), y0 + (y1 - y0) * t, np.full_like(t, y1), y1 - (y1 - y0) * t])
    transformer = Transformer.from_crs(CRS.from_proj4(proj4), "EPSG:4326", always_xy=True)
    lon, lat = transformer.transform(xs, ys)
    return [float(np.min(lon)), float(np.min(lat)), float(np.max(lon)), float(np.max(lat))]


def field_document(product_dir: Path, lead: int, job_id: str, selection: Selection = DEFAULT) -> dict[str, Any]:
    """One lead time of one quantity as the viewer draws it (see ``schemas.FieldResult``)."""
    path, kind = _source(product_dir, lead, job_id, selection)
    with NETCDF_LOCK, xr.open_dataset(path, engine="netcdf4", decode_timedelta=False) as ds:
        resolved, index = _select(ds, lead, job_id, selection)
        frame = read_slice(ds, resolved, index)
        variable = ds[resolved.variable]
        dbz = np.asarray(frame.values, dtype=np.float32)  # (H, W): dBZ, or a probability in [0, 1]
        y_dim, x_dim = str(frame.dims[0]), str(frame.dims[1])
        x = np.asarray(ds[x_dim].values, dtype=np.float64) if x_dim in ds.coords else np.arange(dbz.shape[1])
        y = np.asarray(ds[y_dim].values, dtype=np.float64) if y_dim in ds.coords else np.arange(dbz.shape[0])
        valid = np.datetime64(ds["time"].values[index], "s").astype(dt.datetime).replace(tzinfo=dt.UTC)
        mapping = grid_mapping_of(ds, variable)
    # Rows north first and columns west first, as a canvas draws them.
    if y.size > 1 and y[1] > y[0]:
        dbz, y = dbz[::-1], y[::-1]
    if x.size > 1 and x[1] < x[0]:
        dbz, x = dbz[:, ::-1], x[::-1]
    west, east = _edges(x)
    north, south = _edges(y)
    extent = [west, south, east, north]
    codes, scale = _encode(dbz, resolved)
    proj4 = mapping["proj4"] if mapping else None
    document: dict[str, Any] = {
        "jobID": job_id,
        "kind": kind,
        "quantity": resolved.quantity,
        "units": resolved.units,
        "lead_minutes": lead,
        "valid_time": valid.isoformat().replace("+00:00", "Z"),
        "width": int(dbz.shape[1]),
        "height": int(dbz.shape[0]),
        "extent": extent,
        "grid_mapping": mapping,
        "lonlat_bounds": _lonlat_bounds(proj4, extent),
        "encoding": {"dtype": "uint8", **scale, "nodata": NODATA_CODE,
                     "rows": "north to south", "columns": "west to east"},
        "values": base64.b64encode(codes.tobytes()).decode("ascii"),
    }
    if resolved.threshold is not None:
        document["threshold_dbz"] = resolved.threshold
    if resolved.member is not None:
        document["member"] = resolved.member
    if resolved.ensemble is not None:
        document["ensemble"] = resolved.ensemble
    return document


def geotiff_path(product_dir: Path, lead: int, job_id: str, selection: Selection = DEFAULT) -> Path:
    """``lead_<MMM>.tif`` (``obs_<MMM>.tif`` for observed scans): a COG of dBZ, EPSG from the grid mapping.

    An ensemble product's quantities are cached under their own names: ``lead_<MMM>_mean.tif`` (also
    the default ``reflectivity``), ``lead_<MMM>_m<KK>.tif`` for member KK and ``lead_<MMM>_p<T>.tif``
    for the probability of reaching T dBZ (float32 0..1).

    Rendered on the first request and kept beside the netCDF (written under a temporary name and
    renamed, so a concurrent reader sees a whole file or none; two first requests at once write the
    same bytes twice, harmlessly). Products nobody asks for as GeoTIFF cost the workers nothing.
    """
    path, _ = _source(product_dir, lead, job_id, selection)
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    with NETCDF_LOCK, xr.open_dataset(path, engine="netcdf4", decode_timedelta=False) as ds:
        # The cache name depends on the product (an ensemble's default is its mean): resolve first.
        resolved, index = _select(ds, lead, job_id, selection)
        name = f"lead_{lead:03d}{resolved.suffix}.tif" if lead > 0 else f"obs_{-lead:03d}.tif"
        target = product_dir / name
        if target.is_file():
            return target
        field = read_slice(ds, resolved, index)
        mapping = grid_mapping_of(ds, ds[resolved.variable])
    if mapping is None or mapping["crs_wkt"] is None:
        raise Problem(409, "no-grid-mapping", f"job {job_id} has no usable grid mapping: a GeoTIFF needs one")
    field = field.drop_vars([c for c in field.coords if c not in field.dims])
    # North-up (negative y step), as GIS tools and the COG tiling expect; the feed's y runs south-north.
    field = field.sortby(str(field.dims[0]), ascending=False).sortby(str(field.dims[1]))
    field = field.rio.set_spatial_dims(x_dim=str(field.dims[1]), y_dim=str(field.dims[0]))
    field.encoding = {}  # the netCDF's _FillValue would otherwise replace NaN, the GeoTIFF's nodata
    field = field.rio.write_crs(mapping["crs_wkt"]).rio.write_nodata(np.nan, encoded=False)
    field.attrs = _tiff_attrs(resolved, lead)
    with atomic_path(target, fsync=False) as tmp:  # a cache: lost in a crash, it is rendered again
        field.rio.to_raster(tmp, driver="COG", dtype="float32", compress="DEFLATE")
    return target


def _tiff_attrs(resolved: Resolved, lead: int) -> dict[str, Any]:
    """The GeoTIFF band's metadata: units and a name that says which quantity it is."""
    if resolved.quantity == "probability":
        name = f"probability of reflectivity at or above {resolved.threshold:g} dBZ"
    elif resolved.quantity == "member":
        name = f"radar reflectivity of ensemble member {resolved.member}"
    else:
        name = "ensemble mean radar reflectivity" if resolved.quantity == "mean" else "radar reflectivity"
    return {"units": resolved.units, "long_name": name, "valid_lead_minutes": lead}
