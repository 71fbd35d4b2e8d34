"""The results of one job in the representation the client asked for, or why there are none.

Shared by ``GET /jobs/{jobID}/results`` and the ``/nowcasts`` routes. The answer depends on the
job's status: ``successful`` serves the product; ``accepted``/``running`` give 404
``result-not-ready`` with ``Retry-After``; ``failed``, ``skipped`` and ``dismissed`` give 409 with
the recorded reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr
from starlette.responses import FileResponse, JSONResponse, Response

from service.fields import field_document, geotiff_path
from service.problems import PROBLEM_MEDIA_TYPE, Problem, problem_openapi
from service.quantities import DEFAULT, Selection
from service.representations import (
    FIELD,
    GEOTIFF,
    JSON,
    NETCDF,
    NETCDF_LOCK,
    PNG,
    choose_media_type,
    product_response,
)
from service.settings import ApiSettings

Format = Literal["netcdf", "json", "png", "field", "geotiff"]

RESULT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The forecast product: CF netCDF (default), JSON (dBZ, mm/h, grid mapping), or one "
        "lead time (`lead`, default the first forecast; `lead` <= 0: an observed input scan) as PNG, as the "
        "map field the viewer draws (`f=field`) or as a Cloud-Optimized GeoTIFF of dBZ (`f=geotiff`)",
        "content": {
            NETCDF: {"schema": {"type": "string", "format": "binary"}},
            JSON: {"schema": {"$ref": "#/components/schemas/ForecastJSONResult"}},
            PNG: {"schema": {"type": "string", "format": "binary"}},
            FIELD: {"schema": {"$ref": "#/components/schemas/FieldResult"}},
            GEOTIFF: {"schema": {"type": "string", "format": "binary"}},
        },
    },
    404: problem_openapi(
        "Unknown job, result not ready yet, no PNG for that lead, or no such member or threshold (`detail` "
        "names the available ones)", "result-not-ready", 404
    ),
    406: problem_openapi(
        "No acceptable representation, or the product is too large for JSON", "not-acceptable", 406
    ),
    409: problem_openapi("The job failed, was dismissed or skipped, or `quantity` needs an ensemble product "
                         "(`not-an-ensemble`); `detail` says why", "job-failed", 409),
    422: problem_openapi("A query parameter is invalid, or `quantity` does not go with this representation",
                         "invalid-request", 422),
}

_NO_RESULT = {
    "failed": ("job-failed", "failed"),
    "skipped": ("nowcast-skipped", "was skipped"),
    "dismissed": ("job-dismissed", "was dismissed"),
}


def result_response(
    record: Any,
    settings: ApiSettings,
    *,
    accept: str | None,
    f: Format | None,
    lead: int | None,
    selection: Selection = DEFAULT,
    extra_headers: dict[str, str] | None = None,
) -> Response:
    """The product of ``record`` (a ``workers.jobs.JobRecord``) as chosen by ``Accept``/``?f=``, of the
    quantity ``selection`` names (service/quantities.py)."""
    media_type = choose_media_type(accept, f)
    if not selection.is_default and media_type in (NETCDF, PNG):
        what = "the whole product file" if media_type == NETCDF else "the quicklook of the ensemble mean"
        raise Problem(422, "quantity-not-available", f"quantity={selection.quantity} is served as f=field, "
                      f"f=geotiff or f=json; {media_type} is {what}", field="quantity")
    data = record.to_dict()
    job_id, status = data["job_id"], data["status"]
    if status in ("accepted", "running"):
        raise Problem(
            404,
            "result-not-ready",
            f"job {job_id} is {status} ({data.get('progress') or 0}% done); poll /jobs/{job_id}",
            headers={"Retry-After": str(settings.retry_after_seconds)},
        )
    if status in _NO_RESULT:
        code, verb = _NO_RESULT[status]
        reason = data.get("message") or "no reason recorded"
        raise Problem(409, code, f"job {job_id} {verb}: {reason}", extra={"job_status": status})
    products = data.get("products") or {}
    netcdf = (
        Path(products["netcdf"]) if products.get("netcdf") else settings.product_dir(job_id) / "forecast.nc"
    )
    if media_type in (FIELD, GEOTIFF):
        return _lead_response(media_type, job_id=job_id, netcdf=netcdf, lead=lead, selection=selection,
                              headers={"Vary": "Accept", **(extra_headers or {})})
    return product_response(
        media_type,
        job_id=job_id,
        netcdf_path=netcdf,
        products=products,
        lead=lead,
        json_max_values=settings.json_max_values,
        selection=selection,
        headers={"Vary": "Accept", **(extra_headers or {})},
    )


def _lead_response(media_type: str, *, job_id: str, netcdf: Path, lead: int | None, selection: Selection,
                   headers: dict[str, str]) -> Response:
    """One lead time as the viewer's map field or as a GeoTIFF; without ``lead``, the first forecast."""
    if not netcdf.is_file():
        raise Problem(404, "result-missing", f"the product of job {job_id} is no longer on disk")
    if lead is None:
        lead = _first_lead(netcdf)
    if media_type == FIELD:
        return JSONResponse(field_document(netcdf.parent, lead, job_id, selection), media_type=FIELD,
                            headers=headers)
    path = geotiff_path(netcdf.parent, lead, job_id, selection)
    name = f"{job_id}_{path.name}"
    return FileResponse(path, media_type=GEOTIFF, filename=name, headers=headers)


def _first_lead(netcdf: Path) -> int:
    with NETCDF_LOCK, xr.open_dataset(netcdf, engine="netcdf4", decode_timedelta=False) as ds:
        return int(round(float(np.atleast_1d(ds["lead_time"].values)[0])))


__all__ = ["Format", "RESULT_RESPONSES", "PROBLEM_MEDIA_TYPE", "result_response"]
