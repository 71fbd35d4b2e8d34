"""``POST /forecast``: submit a radar sequence (multipart netCDF or JSON frames) for a forecast."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from model.members import MAX_MEMBERS
from service.deps import ApiKeyDep, CeleryDep, JobStoreDep, SettingsDep
from service.problems import Problem
from service.representations import JSON
from service.schemas import MAX_SEED, StatusInfo
from service.submission import (
    SUBMISSION_RESPONSES,
    is_json,
    parse_json_request,
    read_json_body,
    submission_response,
    submit_json_request,
    submit_multipart,
)

router = APIRouter(tags=["forecast"])

_MULTIPART_SCHEMA = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {
            "type": "array",
            "items": {"type": "string", "format": "binary", "contentMediaType": "application/x-netcdf"},
            "description": "CF netCDF scans: one file per scan (field repeated) or one file with a time axis",
        },
        "steps": {"type": "integer", "minimum": 1, "description": "Lead times wanted (default lead_steps)"},
        "members": {"type": "integer", "minimum": 1, "maximum": MAX_MEMBERS, "default": 1,
                    "description": f"Ensemble members, 1..{MAX_MEMBERS}; more than 1 makes an ensemble product "
                    "(its mean, members and exceedance probabilities: results `quantity`)"},
        "seed": {"type": "integer", "minimum": 0, "maximum": MAX_SEED, "default": 0,
                 "description": "Seed the members are drawn from, 0..2^63-1 (ignored for one member)"},
    },
}


@router.post(
    "/forecast",
    status_code=201,
    response_model=StatusInfo,
    summary="Submit a radar sequence for a forecast",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": _MULTIPART_SCHEMA},
                JSON: {"schema": {"$ref": "#/components/schemas/ForecastJSONRequest"}},
            },
        }
    },
    responses=SUBMISSION_RESPONSES,
)
async def submit_forecast(
    request: Request,
    settings: SettingsDep,
    store: JobStoreDep,
    celery: CeleryDep,
    owner: ApiKeyDep,
) -> Response:
    """Submit a radar sequence for a forecast.

    Multipart (`file` repeated or one file with a time axis, optional `steps`, `members`, `seed`) or
    JSON frames (the same three as members). The job id is derived from the decoded input, the model
    version, `steps` and, for an ensemble (`members` > 1), `members` and `seed`, so sending the same
    input again returns the existing job (200) instead of queuing a second run.
    """
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() == "multipart/form-data":
        info, created = await submit_multipart(
            request, settings=settings, store=store, celery=celery, owner=owner
        )
    elif is_json(content_type):
        parsed = parse_json_request(await read_json_body(request, settings))
        info, created = await submit_json_request(
            request, parsed, settings=settings, store=store, celery=celery, owner=owner
        )
    else:
        raise Problem(
            415,
            "unsupported-media-type",
            f"Content-Type {content_type or '(none)'!r} is not accepted; send multipart/form-data "
            "(netCDF files in field 'file') or application/json (frames)",
            field="Content-Type",
        )
    return submission_response(request, info, created)
