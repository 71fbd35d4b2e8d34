"""The CF grid mapping of a product variable, as JSON clients and map libraries read it.

Interface
---------
grid_mapping_of(ds, field) -> {"name", "attributes", "proj4", "crs_wkt"} | None

``attributes`` are the CF grid-mapping attributes as the product stores them; ``proj4`` (for
proj4js in the viewer) and ``crs_wkt`` (for GIS tools) are pyproj's reading of them, None when
pyproj cannot make a CRS of them.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import xarray as xr


def _proj(attributes: dict[str, Any]) -> tuple[str, str] | None:
    """(PROJ string, WKT) of CF grid-mapping attributes, or None when pyproj cannot read them."""
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        crs = CRS.from_cf(attributes)
    except (CRSError, KeyError, ValueError):
        return None
    with warnings.catch_warnings():  # "PROJ strings lose information": we send the WKT as well
        warnings.simplefilter("ignore", UserWarning)
        proj4 = crs.to_proj4().replace(" +type=crs", "")
    # CF attributes give an unnamed CRS; when they are exactly a registered one (UTM 32N here),
    # its EPSG definition lets GIS tools name it (a GeoTIFF then carries EPSG:32632, not "undefined").
    registered = CRS.from_proj4(proj4).to_epsg()
    if registered is not None and CRS.from_epsg(registered).equals(crs, ignore_axis_order=True):
        crs = CRS.from_epsg(registered)
    return proj4, crs.to_wkt()


def grid_mapping_of(ds: xr.Dataset, field: xr.DataArray) -> dict[str, Any] | None:
    """The CF grid mapping ``field`` names, with its PROJ string and WKT; None without one."""
    name = str(field.attrs.get("grid_mapping") or field.encoding.get("grid_mapping") or "").split(":")[0].strip()
    if not name or name not in ds.variables:
        return None
    attributes = {key: plain_value(value) for key, value in ds[name].attrs.items()}
    proj = _proj(attributes)
    return {"name": name, "attributes": attributes, "proj4": proj[0] if proj else None,
            "crs_wkt": proj[1] if proj else None}


def plain_value(value: Any) -> Any:
    """netCDF attribute -> JSON-able value (numpy arrays and scalars to lists and numbers)."""
    if isinstance(value, np.ndarray):
        return [plain_value(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value
