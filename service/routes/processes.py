"""OGC API - Processes: landing page, conformance, the ``nowcast`` process and its execution.

``POST /processes/nowcast/execution`` takes an OGC execute request whose ``inputs`` are the JSON
forecast request of ``POST /forecast`` and answers exactly like it (async execution: 201 with a
``Location`` and a ``statusInfo``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from model.members import MAX_MEMBERS, PROBABILITY_THRESHOLDS_DBZ
from service.deps import ApiKeyDep, CeleryDep, JobStoreDep, SettingsDep
from service.representations import JSON, NETCDF, PNG
from service.schemas import (
    MAX_SEED,
    OGC_REL_CONFORMANCE,
    OGC_REL_EXECUTE,
    OGC_REL_JOB_LIST,
    OGC_REL_PROCESSES,
    Conformance,
    LandingPage,
    Link,
    ProcessDescription,
    ProcessList,
    ProcessSummary,
    StatusInfo,
)
from service.submission import (
    SUBMISSION_RESPONSES,
    parse_json_request,
    read_json_body,
    require_json,
    submission_response,
    submit_json_request,
)
from service.views import root

router = APIRouter(tags=["processes"])

PROCESS_ID = "nowcast"
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/ogc-process-description",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/json",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/job-list",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/dismiss",
]


def _summary(request: Request) -> ProcessSummary:
    base = f"{root(request)}/processes/{PROCESS_ID}"
    return ProcessSummary(
        id=PROCESS_ID,
        title="Precipitation nowcast (PredRNN-V2)",
        description="Extrapolates a sequence of radar reflectivity scans into the next lead times.",
        version="1.0.0",
        jobControlOptions=["async-execute", "dismiss"],
        outputTransmission=["reference"],
        links=[
            Link(href=base, rel="self", type=JSON, title="process description"),
            Link(href=f"{base}/execution", rel=OGC_REL_EXECUTE, type=JSON, title="execute"),
        ],
    )


@router.get("/", response_model=LandingPage, summary="Landing page")
def landing_page(request: Request) -> LandingPage:
    """Landing page: links to the API definition, conformance, processes, jobs and nowcasts."""
    base = root(request)
    return LandingPage(
        title="Nowcast",
        description="Precipitation nowcasts from radar scans with PredRNN-V2 (OGC API - Processes).",
        links=[
            Link(href=f"{base}/", rel="self", type=JSON, title="this document"),
            Link(
                href=f"{base}/openapi.json",
                rel="service-desc",
                type="application/vnd.oai.openapi+json;version=3.0",
                title="API definition",
            ),
            Link(href=f"{base}/docs", rel="service-doc", type="text/html", title="API documentation"),
            Link(href=f"{base}/conformance", rel=OGC_REL_CONFORMANCE, type=JSON, title="conformance"),
            Link(href=f"{base}/processes", rel=OGC_REL_PROCESSES, type=JSON, title="processes"),
            Link(href=f"{base}/jobs", rel=OGC_REL_JOB_LIST, type=JSON, title="jobs"),
            Link(href=f"{base}/nowcasts", rel="nowcasts", type=JSON, title="scheduled nowcasts"),
            Link(href=f"{base}/nowcasts/latest", rel="latest", type=NETCDF, title="latest nowcast"),
        ],
    )


@router.get("/conformance", response_model=Conformance, summary="Conformance classes")
def conformance() -> Conformance:
    """The OGC conformance classes this API implements."""
    return Conformance(conformsTo=CONFORMANCE)


@router.get("/processes", response_model=ProcessList, summary="List processes")
def list_processes(request: Request) -> ProcessList:
    """The one process offered: ``nowcast``."""
    return ProcessList(
        processes=[_summary(request)],
        links=[Link(href=f"{root(request)}/processes", rel="self", type=JSON)],
    )


def _description(request: Request, settings: Any) -> ProcessDescription:
    summary = _summary(request)
    return ProcessDescription(
        **summary.model_dump(),
        inputs={
            "frames": {
                "title": "Radar sequence",
                "description": (
                    f"At least {settings.input_scans} scans at a {settings.timestep_minutes}-minute cadence, "
                    f"(T, H, W) with H, W <= {settings.max_grid}; inline as nested lists (this endpoint and "
                    "POST /forecast with application/json) or as CF netCDF files (POST /forecast, multipart "
                    "field `file`)."
                ),
                "minOccurs": 1,
                "maxOccurs": 1,
                "schema": {"type": "array", "items": {"type": "array", "items": {"type": "array"}}},
            },
            "units": {"title": "Units of the frames", "schema": {"type": "string", "enum": ["dBZ", "mm/h"]}},
            "steps": {
                "title": "Lead times",
                "description": (
                    f"Number of {settings.timestep_minutes}-minute lead times (default {settings.lead_steps})"
                ),
                "minOccurs": 0,
                "schema": {"type": "integer", "minimum": 1, "maximum": settings.max_lead_steps},
            },
            "members": {
                "title": "Ensemble members",
                "description": (
                    f"1 (default) for the deterministic forecast, up to {MAX_MEMBERS} for an ensemble: the product "
                    "then holds the members, their mean and the probabilities of reaching "
                    f"{', '.join(f'{t:g}' for t in PROBABILITY_THRESHOLDS_DBZ)} dBZ (results `quantity`)"
                ),
                "minOccurs": 0,
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_MEMBERS, "default": 1},
            },
            "seed": {
                "title": "Ensemble seed",
                "description": "Seed the members are drawn from (the same seed gives the same members); "
                "ignored for one member",
                "minOccurs": 0,
                "schema": {"type": "integer", "minimum": 0, "maximum": MAX_SEED, "default": 0},
            },
        },
        outputs={
            "forecast": {
                "title": "Reflectivity forecast",
                "description": "CF-1.8 netCDF reflectivity (dBZ) and rain rate (an ensemble's members, mean and "
                "probabilities); JSON; per lead time a PNG, the viewer's map field and a GeoTIFF",
                "schema": {
                    "oneOf": [
                        {"type": "string", "contentMediaType": NETCDF, "contentEncoding": "binary"},
                        {"type": "object", "contentMediaType": JSON},
                        {"type": "string", "contentMediaType": PNG, "contentEncoding": "binary"},
                    ]
                },
            }
        },
    )


@router.get(
    "/processes/nowcast",
    response_model=ProcessDescription,
    summary="Describe the nowcast process",
)
def describe_process(request: Request, settings: SettingsDep) -> ProcessDescription:
    """Inputs and outputs of the ``nowcast`` process."""
    return _description(request, settings)


@router.post(
    "/processes/nowcast/execution",
    status_code=201,
    response_model=StatusInfo,
    summary="Execute the nowcast process",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {JSON: {"schema": {"$ref": "#/components/schemas/ExecuteRequest"}}},
        }
    },
    responses=SUBMISSION_RESPONSES,
)
async def execute(
    request: Request,
    settings: SettingsDep,
    store: JobStoreDep,
    celery: CeleryDep,
    owner: ApiKeyDep,
) -> Response:
    """Run the nowcast process asynchronously on an inline radar sequence (OGC execute request)."""
    require_json(request)
    body = await read_json_body(request, settings)
    parsed = parse_json_request(body, prefix="inputs")
    info, created = await submit_json_request(
        request, parsed, settings=settings, store=store, celery=celery, owner=owner
    )
    return submission_response(request, info, created)
