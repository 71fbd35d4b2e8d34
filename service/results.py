"""The results of one job in the representation the client asked for, or why there are none.

Shared by ``GET /jobs/{jobID}/results`` and the ``/nowcasts`` routes. The answer depends on the
job's status: ``successful`` serves the product; ``accepted``/``running`` give 404
``result-not-ready`` with ``Retry-After``; ``failed``, ``skipped`` and ``dismissed`` give 409 with
the recorded reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from starlette.responses import Response

from service.problems import PROBLEM_MEDIA_TYPE, Problem, problem_openapi
from service.representations import JSON, NETCDF, PNG, choose_media_type, product_response
from service.settings import ApiSettings

Format = Literal["netcdf", "json", "png"]

RESULT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The forecast product: CF netCDF (default), JSON, or one lead time as PNG "
        "(`lead` <= 0: an observed input scan)",
        "content": {
            NETCDF: {"schema": {"type": "string", "format": "binary"}},
            JSON: {"schema": {"$ref": "#/components/schemas/ForecastJSONResult"}},
            PNG: {"schema": {"type": "string", "format": "binary"}},
        },
    },
    404: problem_openapi(
        "Unknown job, result not ready yet, or no PNG for that lead", "result-not-ready", 404
    ),
    406: problem_openapi(
        "No acceptable representation, or the product is too large for JSON", "not-acceptable", 406
    ),
    409: problem_openapi("The job failed, was dismissed or skipped; `detail` says why", "job-failed", 409),
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
    extra_headers: dict[str, str] | None = None,
) -> Response:
    """The product of ``record`` (a ``workers.jobs.JobRecord``) as chosen by ``Accept``/``?f=``."""
    media_type = choose_media_type(accept, f)
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
    return product_response(
        media_type,
        job_id=job_id,
        netcdf_path=netcdf,
        products=products,
        lead=lead,
        json_max_values=settings.json_max_values,
        headers={"Vary": "Accept", **(extra_headers or {})},
    )


__all__ = ["Format", "RESULT_RESPONSES", "PROBLEM_MEDIA_TYPE", "result_response"]
