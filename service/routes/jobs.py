"""Job resources (OGC API - Processes): list, status, dismiss, results."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Request, Response

from service.deps import ApiKeyDep, CallerDep, CeleryDep, JobDep, JobStoreDep, SettingsDep, check_owner
from service.problems import Problem, problem_openapi
from service.quantities import SelectionDep
from service.representations import JSON
from service.results import RESULT_RESPONSES, Format, result_response
from service.schemas import JobList, Link, StatusInfo
from service.views import retry_after, root, status_info
from workers import jobs

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/jobs", tags=["jobs"])

NOT_FOUND = {404: problem_openapi("No job with this id", "job-not-found", 404)}
Limit = Annotated[int, Query(ge=1, le=100, description="Page size")]
Offset = Annotated[int, Query(ge=0, le=1_000_000, description="Jobs to skip (newest first)")]
Lead = Annotated[
    int | None,
    Query(
        ge=-100_000,
        le=100_000,
        description="Lead time (PNG, field, GeoTIFF), minutes; 0, -6, ... are the observed scans before the "
        "reference time",
    ),
]


def page_links(
    request: Request, path: str, *, limit: int, offset: int, total: int, query: str = ""
) -> list[Link]:
    """``self``, and ``next``/``prev`` where there are more pages."""
    base = f"{root(request)}{path}?limit={limit}{query}"
    links = [Link(href=f"{base}&offset={offset}", rel="self", type=JSON)]
    if offset + limit < total:
        links.append(Link(href=f"{base}&offset={offset + limit}", rel="next", type=JSON))
    if offset > 0:
        links.append(Link(href=f"{base}&offset={max(0, offset - limit)}", rel="prev", type=JSON))
    return links


@router.get("", response_model=JobList, summary="List jobs")
def list_jobs(
    request: Request,
    store: JobStoreDep,
    settings: SettingsDep,
    owner: CallerDep,
    limit: Limit = 20,
    offset: Offset = 0,
    kind: Annotated[Literal["forecast", "nowcast"] | None, Query(description="Only this kind")] = None,
) -> JobList:
    """Recent jobs, newest first, paginated with ``limit``/``offset`` and ``next``/``prev`` links.

    Where reads need a key, the list holds the caller's own forecasts and the scheduled nowcasts.
    """
    visible_to = owner if settings.read_requires_key else None
    records, total = jobs.list_jobs(store, kind=kind, limit=limit, offset=offset, owner=visible_to)
    query = f"&kind={kind}" if kind else ""
    return JobList(
        jobs=[status_info(request, record) for record in records],
        numberMatched=total,
        links=page_links(request, "/jobs", limit=limit, offset=offset, total=total, query=query),
    )


@router.get(
    "/{jobID}",
    response_model=StatusInfo,
    summary="Status of a job",
    responses={
        200: {
            "description": "The job's statusInfo; `Retry-After` (seconds) while accepted or running",
            "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Poll again after"}},
        },
        **NOT_FOUND,
    },
)
def get_job_status(request: Request, job: JobDep, settings: SettingsDep, response: Response) -> StatusInfo:
    """The job's statusInfo (OGC); poll it until ``status`` is final."""
    info = status_info(request, job)
    response.headers.update(retry_after(info.status, settings.retry_after_seconds))
    return info


@router.delete(
    "/{jobID}",
    response_model=StatusInfo,
    summary="Dismiss a job",
    responses={
        401: problem_openapi("Missing or wrong X-API-Key", "api-key-invalid", 401),
        403: problem_openapi("The job belongs to another API key", "not-owner", 403),
        409: problem_openapi(
            "The job is running or finished and can no longer be dismissed", "job-running", 409
        ),
        **NOT_FOUND,
    },
)
def dismiss_job(
    request: Request, job: JobDep, store: JobStoreDep, celery: CeleryDep, settings: SettingsDep, owner: ApiKeyDep
) -> StatusInfo:
    """Dismiss a queued forecast: its task is revoked and its status becomes ``dismissed``.

    Only the key that submitted the job may dismiss it (403). A running or finished job is not
    touched (409); dismissing a dismissed job is a no-op. The same input may be submitted again.
    """
    check_owner(job, owner, settings)
    data = job.to_dict()
    job_id, status = data["job_id"], data["status"]
    if status == "dismissed":
        return status_info(request, job)
    if data["kind"] != "forecast":
        raise Problem(
            409, "not-dismissable", f"{job_id} is a scheduled nowcast; only forecasts can be dismissed"
        )
    if status != "accepted":
        raise Problem(
            409, f"job-{status}", f"job {job_id} is {status}; only a queued (accepted) job can be dismissed"
        )
    # Revoke first: a worker that receives the message afterwards discards it.
    celery.control.revoke(data.get("task_id") or job_id)
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    record = jobs.update_job(
        store, job_id=job_id, status="dismissed", message="dismissed by the client", finished=now
    )
    logger.info("dismissed job %s", job_id)
    return status_info(request, record)


@router.get("/{jobID}/results", summary="Results of a job", responses={**RESULT_RESPONSES})
def get_job_results(
    job: JobDep,
    settings: SettingsDep,
    selection: SelectionDep,
    f: Annotated[Format | None, Query(description="Representation; wins over Accept")] = None,
    lead: Lead = None,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    """The forecast: CF netCDF by default, JSON or PNG (``?lead=30``) by ``Accept`` or ``?f=``.

    As PNG, ``lead`` <= 0 gives the observed scan ``-lead`` minutes before the reference time
    (``lead=0`` is the last input scan); ``lead_times`` in the job's statusInfo lists every PNG.
    An ensemble product's mean, members and probabilities: ``quantity``, ``member``, ``threshold``.
    """
    return result_response(job, settings, accept=accept, f=f, lead=lead, selection=selection)
