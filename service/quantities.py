"""Which quantity of a product a result request asks for, and one lead time of it read lazily.

Query parameters (``/jobs/{id}/results``, ``/nowcasts...``, ``/domains/{id}/nowcasts...``)::

    quantity  = reflectivity (default) | mean | probability | member
    threshold = dBZ, one of the product's thresholds (required for, and only with, probability)
    member    = 0-based member index (required for, and only with, member)

A deterministic product has only ``reflectivity``; ``mean``, ``probability`` and ``member`` on it are
409 ``not-an-ensemble``. On an ensemble product (``reflectivity(realization, time, y, x)``, see
docs/contracts.md) the default ``reflectivity`` is the ensemble mean, what the worker's quicklooks
draw. An unknown threshold or member is 404 naming the available ones, like an unknown lead time.

Reads are lazy: :func:`read_slice` decodes one (member, lead) or (threshold, lead) chunk, never the
whole (M, L, H, W) array, so a 50-member product at the largest grid costs the API one frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
import xarray as xr
from fastapi import Depends, Query

from model.io.netcdf import ENSEMBLE_MEAN, PROBABILITY, REALIZATION, THRESHOLD
from model.members import MAX_MEMBERS
from service.problems import Problem

Quantity = Literal["reflectivity", "mean", "probability", "member"]
QUANTITIES: tuple[str, ...] = ("reflectivity", "mean", "probability", "member")


@dataclass(frozen=True)
class Selection:
    """What the client asked for; ``threshold`` in dBZ, ``member`` 0-based."""

    quantity: Quantity = "reflectivity"
    threshold: float | None = None
    member: int | None = None

    @property
    def is_default(self) -> bool:
        return self.quantity == "reflectivity"


@dataclass(frozen=True)
class Resolved:
    """A selection checked against one product.

    ``quantity`` is what is served: ``reflectivity`` (deterministic), ``mean``, ``probability`` or
    ``member``; ``units`` ``dBZ`` or ``1``; ``variable`` the netCDF variable; ``index`` the member or
    threshold position on its axis (None for a (time, y, x) variable).
    """

    quantity: str
    units: str
    variable: str
    index: int | None
    threshold: float | None
    member: int | None
    ensemble: dict[str, Any] | None

    @property
    def suffix(self) -> str:
        """A file-name part naming the quantity: ``""`` (deterministic), ``_mean``, ``_p30``, ``_m02``."""
        if self.quantity == "probability":
            return f"_p{self.threshold:g}"
        if self.quantity == "member":
            return f"_m{self.member:02d}"
        return "_mean" if self.quantity == "mean" else ""


def selection_query(
    quantity: Annotated[Quantity, Query(description=(
        "Which field: `reflectivity` (default; the ensemble mean for an ensemble product), `mean`, "
        "`probability` (with `threshold`) or `member` (with `member`); the last three need an ensemble "
        "product (409 `not-an-ensemble` otherwise). For `f=field`, `geotiff` and `json`"))] = "reflectivity",
    threshold: Annotated[float | None, Query(ge=-100, le=200, description=(
        "dBZ threshold of `quantity=probability`, one of the product's (statusInfo `ensemble.thresholds_dbz`)"
    ))] = None,
    member: Annotated[int | None, Query(ge=0, le=MAX_MEMBERS - 1, description=(
        "0-based member of `quantity=member`, below statusInfo `ensemble.members`"))] = None,
) -> Selection:
    """The ``quantity``/``threshold``/``member`` query parameters; 422 for a combination that means nothing."""
    if quantity == "probability" and threshold is None:
        raise Problem(422, "missing-threshold", "quantity=probability needs threshold (dBZ)", field="threshold")
    if quantity == "member" and member is None:
        raise Problem(422, "missing-member", "quantity=member needs member (0-based index)", field="member")
    if threshold is not None and quantity != "probability":
        raise Problem(422, "unexpected-threshold", f"threshold is only used with quantity=probability, "
                      f"not quantity={quantity}", field="threshold")
    if member is not None and quantity != "member":
        raise Problem(422, "unexpected-member", f"member is only used with quantity=member, not quantity={quantity}",
                      field="member")
    return Selection(quantity, threshold, member)


DEFAULT = Selection()
SelectionDep = Annotated[Selection, Depends(selection_query)]


def is_ensemble(ds: xr.Dataset) -> bool:
    return "reflectivity" in ds and REALIZATION in ds["reflectivity"].dims


def ensemble_info(ds: xr.Dataset) -> dict[str, Any] | None:
    """``{members, seed, thresholds_dbz}`` of an ensemble product, None for a deterministic one."""
    if not is_ensemble(ds):
        return None
    thresholds = [float(t) for t in np.atleast_1d(ds[THRESHOLD].values)] if THRESHOLD in ds.coords else []
    return {"members": int(ds.sizes[REALIZATION]), "seed": int(ds.attrs.get("ensemble_seed", 0)),
            "thresholds_dbz": thresholds}


def resolve(ds: xr.Dataset, selection: Selection, job_id: str) -> Resolved:
    """Check ``selection`` against the product in ``ds`` (opened lazily; nothing is decoded)."""
    info = ensemble_info(ds)
    if info is None:
        if not selection.is_default:
            raise Problem(409, "not-an-ensemble", f"job {job_id} is a deterministic forecast: it has no "
                          f"quantity={selection.quantity}, only reflectivity", field="quantity")
        return Resolved("reflectivity", "dBZ", "reflectivity", None, None, None, None)
    if selection.quantity in ("reflectivity", "mean"):
        return Resolved("mean", "dBZ", ENSEMBLE_MEAN, None, None, None, info)
    if selection.quantity == "member":
        count = info["members"]
        if selection.member is None or not 0 <= selection.member < count:
            raise Problem(404, "member-not-available", f"job {job_id} has members 0..{count - 1}, "
                          f"not member={selection.member}", field="member")
        return Resolved("member", "dBZ", "reflectivity", selection.member, None, selection.member, info)
    thresholds = info["thresholds_dbz"]
    matches = [i for i, t in enumerate(thresholds) if selection.threshold is not None
               and abs(t - selection.threshold) < 1e-6]
    if not matches:
        raise Problem(404, "threshold-not-available", f"job {job_id} has probabilities for thresholds "
                      f"{thresholds} dBZ, not threshold={selection.threshold:g}", field="threshold")
    return Resolved("probability", "1", PROBABILITY, matches[0], thresholds[matches[0]], None, info)


def lazy_variable(ds: xr.Dataset, resolved: Resolved) -> xr.DataArray:
    """The chosen quantity as a lazy (time, y, x) DataArray (member or threshold axis selected)."""
    variable = ds[resolved.variable]
    if resolved.quantity == "member":
        return variable.isel({REALIZATION: resolved.index})
    if resolved.quantity == "probability":
        return variable.isel({THRESHOLD: resolved.index})
    return variable


def read_slice(ds: xr.Dataset, resolved: Resolved, time_index: int) -> xr.DataArray:
    """One lead time of the chosen quantity, (y, x), decoded; only its own chunk is read."""
    variable = lazy_variable(ds, resolved)
    return variable.isel({variable.dims[0]: time_index}).load()


__all__ = ["DEFAULT", "QUANTITIES", "Quantity", "Resolved", "Selection", "SelectionDep", "ensemble_info", "is_ensemble",
           "lazy_variable", "read_slice", "resolve", "selection_query"]
