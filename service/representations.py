"""Representations of a forecast product: netCDF (default), JSON, one PNG per lead time; the map
field and the GeoTIFF of one lead time are service/fields.py (dispatched by service/results.py).

Interface
---------
choose_media_type(accept, f)            -> NETCDF | JSON | PNG   (406 Problem when none fits)
product_response(media_type, job, ...)  -> a Starlette Response for the chosen representation

``?f=netcdf|json|png`` wins over ``Accept``. ``Accept`` is parsed with its q-values; ``*/*`` and
``application/*`` mean the default netCDF and ``image/*`` means PNG, so browsers and curl get the
netCDF file. The API never renders: PNGs are the quicklooks the worker wrote
(``products/<job_id>/lead_<MMM>.png``; ``?lead=0``, ``-6``, ... are the observed input scans,
``obs_<MMM>.png``), and JSON is read from the netCDF product with xarray,
refused with 406 above ``json_max_values`` cells so a 1024 x 1024 x 20 product does not become
a 200 MB JSON document.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from starlette.responses import FileResponse, JSONResponse, Response

from model.io.netcdf import PROBABILITY
from model.io.units import dbz_to_rainrate
from service.gridmap import grid_mapping_of, plain_value
from service.problems import Problem
from service.quantities import DEFAULT, Resolved, Selection, lazy_variable, resolve

# netCDF-C and HDF5 are not thread-safe, and the API reads and writes netCDF from its threadpool:
# without this lock, concurrent uploads crash the process (SIGBUS seen under the load test).
NETCDF_LOCK = threading.RLock()

NETCDF = "application/x-netcdf"
JSON = "application/json"
PNG = "image/png"
FIELD = "application/vnd.nowcast.field+json"
GEOTIFF = "image/tiff; application=geotiff"
FORMATS: dict[str, str] = {"netcdf": NETCDF, "json": JSON, "png": PNG, "field": FIELD, "geotiff": GEOTIFF}
# Media types we accept in Accept, mapped to the one we answer with.
_ACCEPTABLE: dict[str, str] = {
    NETCDF: NETCDF,
    "application/netcdf": NETCDF,
    "application/x-netcdf4": NETCDF,
    JSON: JSON,
    PNG: PNG,
    FIELD: FIELD,
    "image/tiff": GEOTIFF,
    "*/*": NETCDF,
    "application/*": NETCDF,
    "image/*": PNG,
}


def _parse_accept(accept: str) -> list[tuple[str, float, int]]:
    """``"image/png;q=0.5, */*;q=0.1"`` -> [(media type, q, position)], malformed q counts as 0."""
    entries = []
    for position, item in enumerate(accept.split(",")):
        parts = [p.strip() for p in item.split(";")]
        media = parts[0].lower()
        if not media:
            continue
        q = 1.0
        for param in parts[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
                q = q if math.isfinite(q) else 0.0
        entries.append((media, q, position))
    return entries


def choose_media_type(accept: str | None, f: str | None) -> str:
    """The representation to answer with.

    Parameters
    ----------
    accept : str or None
        The request's ``Accept`` header.
    f : str or None
        The ``?f=`` query parameter (``netcdf``, ``json``, ``png``, ``field``, ``geotiff``); wins over ``Accept``.

    Raises
    ------
    Problem
        406 ``not-acceptable`` naming the supported media types.
    """
    if f is not None:
        return FORMATS[f]
    if not accept or not accept.strip():
        return NETCDF
    candidates = [
        (q, -position, _ACCEPTABLE[media])
        for media, q, position in _parse_accept(accept)
        if media in _ACCEPTABLE and q > 0
    ]
    if not candidates:
        raise Problem(
            406,
            "not-acceptable",
            f"none of the media types in Accept ({accept!r}) is available; "
            f"use {NETCDF}, {JSON}, {PNG}, {FIELD} or image/tiff, or ?f=netcdf|json|png|field|geotiff",
            field="Accept",
        )
    # Highest q first; among equal q the earlier entry wins.
    return max(candidates)[2]


def _iso(value: Any) -> str:
    stamp = np.datetime64(value, "s").astype("datetime64[s]").astype(object)
    assert isinstance(stamp, dt.datetime)
    return stamp.replace(tzinfo=dt.UTC).isoformat().replace("+00:00", "Z")


def _reflectivity(ds: xr.Dataset, path: Path) -> xr.DataArray:
    for name, var in ds.data_vars.items():
        if var.attrs.get("standard_name") == "equivalent_reflectivity_factor":
            return ds[name]
    if "reflectivity" in ds:
        return ds["reflectivity"]
    raise Problem(500, "product-unreadable", f"{path.name}: no reflectivity variable in the product")


def _json_size(ds: xr.Dataset, field: xr.DataArray, resolved: Resolved) -> int:
    """Cells the JSON document would carry, from the shapes alone (nothing decoded)."""
    cells = int(np.prod(field.shape[-3:]))
    if resolved.quantity == "member":
        return cells
    if resolved.quantity == "mean":  # the mean and every threshold's probability
        return cells * (1 + len(resolved.ensemble["thresholds_dbz"]))
    if resolved.quantity == "probability":  # the mean and one probability
        return cells * 2
    return int(np.prod(field.shape))


def _nested(values: np.ndarray) -> list[Any]:
    """(L, H, W) -> nested lists rounded to two decimals, NaN as null (two decimals of a dBZ are far
    below radar precision, 0.01 mm/h is finer than the drizzle of 5 dBZ)."""
    return [[[None if math.isnan(v) else v for v in row] for row in frame] for frame in np.round(values, 2).tolist()]


def _lazy_frames(variable: xr.DataArray) -> np.ndarray:
    """(L, H, W) float64 read one lead time at a time: a slice of the members' array is never held whole."""
    return np.stack([np.asarray(variable.isel({variable.dims[0]: k}).values, dtype=np.float64)
                     for k in range(variable.shape[0])])


def product_json(path: Path, *, job_id: str, max_values: int, selection: Selection | None = None) -> dict[str, Any]:
    """The forecast product as a JSON document (see ``schemas.ForecastJSONResult``).

    Parameters
    ----------
    path : Path
        The CF netCDF product with ``reflectivity(time, y, x)`` in dBZ, or an ensemble product
        (``reflectivity(realization, time, y, x)``, its mean and probabilities).
    job_id : str
        Echoed in the document.
    max_values : int
        Largest number of cells served as JSON (L*H*W, times 1 + thresholds for an ensemble's mean
        and probabilities); above it, 406 ``json-too-large``, decided from the shapes before any read.
    selection : service.quantities.Selection, optional
        ``quantity=member`` serves that member as ``reflectivity``; ``probability`` one threshold;
        the default (or ``mean``) of an ensemble the mean plus every threshold's probability.
    """
    selection = DEFAULT if selection is None else selection
    with NETCDF_LOCK, xr.open_dataset(path, engine="netcdf4", decode_timedelta=False) as ds:
        resolved = resolve(ds, selection, job_id)
        field = lazy_variable(ds, resolved) if resolved.ensemble is not None else _reflectivity(ds, path)
        if field.ndim != 3:
            raise Problem(500, "product-unreadable", f"{path.name}: reflectivity is not (time, y, x)")
        # The limit counts cells; the document carries two numbers per cell (dBZ and mm/h).
        size = _json_size(ds, field, resolved)
        if size > max_values:
            raise Problem(
                406,
                "json-too-large",
                f"the product has {size} values (shape {list(ds['reflectivity'].shape)}), above the JSON limit "
                f"of {max_values}; fetch it as {NETCDF} or one lead time as {PNG}",
                field="Accept",
            )
        values = _lazy_frames(field)
        time_dim = field.dims[0]
        valid_times = [_iso(t) for t in ds[time_dim].values] if time_dim in ds.coords else []
        reference = _iso(ds["forecast_reference_time"].values) if "forecast_reference_time" in ds else None
        if "lead_time" in ds:
            leads = [int(round(float(v))) for v in np.atleast_1d(ds["lead_time"].values)]
        else:
            leads = []
        y_dim, x_dim = field.dims[1], field.dims[2]
        x = [float(v) for v in ds[x_dim].values] if x_dim in ds.coords else None
        y = [float(v) for v in ds[y_dim].values] if y_dim in ds.coords else None
        attributes = {k: plain_value(v) for k, v in ds.attrs.items()}
        grid_mapping = grid_mapping_of(ds, field)
        probability = _probabilities(ds, resolved)
        if resolved.quantity == "member":
            rain = _lazy_frames(ds["rainfall_rate"].isel(realization=resolved.index))
        elif "rainfall_rate" in ds and resolved.ensemble is None:
            rain = ds["rainfall_rate"].values.astype(np.float64)
        else:  # the ensemble mean's rain rate: Marshall-Palmer of the mean reflectivity
            with np.errstate(invalid="ignore", over="ignore"):
                rain = dbz_to_rainrate(values)
    document: dict[str, Any] = {
        "jobID": job_id,
        "quantity": resolved.quantity,
        "reference_time": reference,
        "lead_time_minutes": leads,
        "valid_times": valid_times,
        "units": "dBZ",
        "shape": list(values.shape),
        "x": x,
        "y": y,
        "attributes": attributes,
        "grid_mapping": grid_mapping,
        "reflectivity": _nested(values),
        "rainfall_rate_units": "mm h-1",
        "rainfall_rate": _nested(rain),
    }
    if resolved.ensemble is not None:
        document["ensemble"] = resolved.ensemble
        if resolved.member is not None:
            document["member"] = resolved.member
        if probability is not None:
            document["probability_units"] = "1"
            document["probability"] = probability
    return document


def _probabilities(ds: xr.Dataset, resolved: Resolved) -> dict[str, list[Any]] | None:
    """``{"<threshold dBZ>": (L, H, W)}`` of the ensemble's mean document, or of the one threshold asked."""
    if resolved.ensemble is None or resolved.quantity == "member":
        return None
    thresholds = resolved.ensemble["thresholds_dbz"]
    wanted = [resolved.index] if resolved.quantity == "probability" else range(len(thresholds))
    return {f"{thresholds[i]:g}": _nested(_lazy_frames(ds[PROBABILITY].isel(threshold=i))) for i in wanted}


def png_path(products: dict[str, Any], product_dir: Path, lead: int) -> Path | None:
    """The quicklook PNG for ``lead`` minutes, from the job record or the products directory.

    ``lead`` > 0 is a forecast frame (``products.png``, ``lead_<MMM>.png``); ``lead`` <= 0 is the
    observed scan ``-lead`` minutes before the reference time (``products.obs_png``, ``obs_<MMM>.png``).
    """
    key, name = ("png", f"lead_{lead:03d}.png") if lead > 0 else ("obs_png", f"obs_{-lead:03d}.png")
    recorded = (products.get(key) or {}) if isinstance(products, dict) else {}
    candidate = recorded.get(str(abs(lead)))
    if candidate and Path(candidate).is_file():
        return Path(candidate)
    fallback = product_dir / name
    return fallback if fallback.is_file() else None


def _minutes(names: Any) -> set[int]:
    return {int(k) for k in names if str(k).isdigit()}


def available_png_leads(products: dict[str, Any], product_dir: Path) -> list[int]:
    """Lead times (minutes) that have a quicklook, ascending: observed scans <= 0, forecasts > 0."""
    products = products if isinstance(products, dict) else {}
    forecast = _minutes(products.get("png") or {})
    forecast |= _minutes(p.stem.removeprefix("lead_") for p in product_dir.glob("lead_*.png"))
    observed = _minutes(products.get("obs_png") or {})
    observed |= _minutes(p.stem.removeprefix("obs_") for p in product_dir.glob("obs_*.png"))
    return sorted({-m for m in observed} | {m for m in forecast if m > 0})


def product_response(
    media_type: str,
    *,
    job_id: str,
    netcdf_path: Path,
    products: dict[str, Any],
    lead: int | None,
    json_max_values: int,
    selection: Selection | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """Serve the product of a successful job in ``media_type``.

    Raises
    ------
    Problem
        404 ``result-missing`` when the product file is gone, 404 ``lead-not-available`` for a PNG
        lead time without a quicklook (naming the available ones), 406 ``json-too-large``.
    """
    headers = dict(headers or {})
    if not netcdf_path.is_file():
        raise Problem(404, "result-missing", f"the product of job {job_id} is no longer on disk")
    if media_type == NETCDF:
        return FileResponse(netcdf_path, media_type=NETCDF, filename=f"{job_id}.nc", headers=headers)
    if media_type == JSON:
        document = product_json(netcdf_path, job_id=job_id, max_values=json_max_values, selection=selection)
        return JSONResponse(document, headers=headers)
    product_dir = netcdf_path.parent
    leads = available_png_leads(products, product_dir)
    # Without ?lead= the first forecast frame, as before observed scans were served.
    forecast_leads = [m for m in leads if m > 0]
    chosen = lead if lead is not None else (forecast_leads[0] if forecast_leads else None)
    found = png_path(products, product_dir, chosen) if chosen is not None else None
    if found is None:
        raise Problem(
            404,
            "lead-not-available",
            f"no PNG for lead={chosen} minutes in job {job_id}; available lead times: {leads}",
            field="lead",
        )
    return FileResponse(
        found,
        media_type=PNG,
        filename=f"{job_id}_lead_{chosen:03d}.png" if chosen > 0 else f"{job_id}_obs_{-chosen:03d}.png",
        headers=headers,
        content_disposition_type="inline",
    )
