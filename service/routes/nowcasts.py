"""Scheduled nowcasts: the slots and their status, the latest product, one slot's product."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Request
from starlette.responses import Response

from service.deps import JobStoreDep, SettingsDep
from service.logs import set_job_id
from service.problems import Problem, problem_openapi
from service.quantities import SelectionDep
from service.results import RESULT_RESPONSES, Format, result_response
from service.routes.jobs import Lead, Limit, Offset, page_links
from service.schemas import JobList
from service.settings import ApiSettings
from service.views import root, status_info
from workers import jobs, skill_summary

router = APIRouter(prefix="/nowcasts", tags=["nowcasts"])

# How far back /nowcasts/latest looks for a successful slot (10 per hour at 6 minutes: one day).
LATEST_WINDOW = 240
_COMPACT = re.compile(r"^(\d{8})T(\d{4})Z?$")

FormatQuery = Annotated[Format | None, Query(description="Representation; wins over Accept")]
LeadQuery = Lead
AcceptHeader = Annotated[str | None, Header(include_in_schema=False)]


def parse_scan_time(text: str) -> dt.datetime:
    """``20260101T1206Z`` or ISO-8601 (``2026-01-01T12:06:00Z``) -> aware UTC datetime; 422 otherwise.

    A time whose offset moves it past year 1 or 9999 (``9999-12-31T23:59:59-23:59``) cannot be a
    UTC datetime at all: that is a 422 too, not an OverflowError.
    """
    match = _COMPACT.match(text)
    try:
        if match:
            return dt.datetime.strptime(match.group(1) + match.group(2), "%Y%m%d%H%M").replace(tzinfo=dt.UTC)
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    except ValueError as exc:
        raise Problem(
            422,
            "invalid-scan-time",
            f"scan_time {text!r} is not YYYYmmddTHHMMZ or ISO-8601",
            field="scan_time",
        ) from exc
    except OverflowError as exc:
        raise Problem(
            422,
            "invalid-scan-time",
            f"scan_time {text!r} lies outside the range of UTC times",
            field="scan_time",
        ) from exc


@router.get("", response_model=JobList, summary="List scheduled nowcast slots")
def list_nowcasts(request: Request, store: JobStoreDep, limit: Limit = 20, offset: Offset = 0) -> JobList:
    """Recent slots, newest first: ``successful``, ``skipped`` (``message`` says why), ``failed``..."""
    records, total = jobs.list_jobs(store, kind="nowcast", limit=limit, offset=offset)
    return JobList(
        jobs=[status_info(request, record) for record in records],
        numberMatched=total,
        links=page_links(request, "/nowcasts", limit=limit, offset=offset, total=total),
    )


def latest_successful(store: Any, stream: str | None = None) -> Any | None:
    """The newest successful nowcast (of ``stream``, or either) among the last ``LATEST_WINDOW`` jobs."""
    records, _ = jobs.list_jobs(store, kind="nowcast", limit=LATEST_WINDOW, offset=0)
    matching = [record for record in records if record.status == "successful"
                and (stream is None or jobs.nowcast_stream(record.job_id) == stream)]
    matching.sort(key=lambda record: record.slot or "", reverse=True)  # newest scan time first
    return matching[0] if matching else None


def served_product(store: Any, settings: ApiSettings) -> tuple[Any | None, str, str]:
    """(record, stream, reason): the newest slot's product from the stream the policy chooses.

    When that stream has no product for the newest slot (the model's job failed or is still
    running), the other stream's product of that slot is served and the reason says so.
    """
    decision = skill_summary.choose_source(store, settings)
    newest = latest_successful(store)
    if newest is None:
        return None, decision.served, decision.reason
    wanted = jobs.nowcast_job_id(parse_scan_time(newest.slot or ""), decision.served)
    record = newest if newest.job_id == wanted else jobs.get_job(store, job_id=wanted)
    if record is not None and record.status == "successful":
        return record, decision.served, decision.reason
    other = jobs.nowcast_stream(newest.job_id)
    return newest, other, f"{decision.reason}; no {decision.served} product for the newest slot, serving {other}"


@router.get(
    "/latest",
    summary="The latest successful nowcast",
    responses={**RESULT_RESPONSES, 404: problem_openapi("No successful nowcast yet", "no-nowcast", 404)},
)
def latest_nowcast(
    request: Request,
    store: JobStoreDep,
    settings: SettingsDep,
    selection: SelectionDep,
    f: FormatQuery = None,
    lead: LeadQuery = None,
    accept: AcceptHeader = None,
) -> Response:
    """The newest slot's product from the stream ``NOWCAST_SOURCE_POLICY`` chooses; ``Content-Location``
    names it, ``Nowcast-Source`` says which stream was served and ``Nowcast-Source-Reason`` why."""
    record, stream, reason = served_product(store, settings)
    if record is None:
        raise Problem(404, "no-nowcast", "no successful scheduled nowcast yet")
    set_job_id(record.job_id)
    slot = record.job_id.removeprefix("nowcast-").removesuffix(f"-{jobs.EXTRAPOLATION_STREAM}")
    location = f"{root(request)}/nowcasts/{slot}" + ("" if stream == jobs.MODEL_STREAM else f"?source={stream}")
    return result_response(
        record,
        settings,
        accept=accept,
        f=f,
        lead=lead,
        selection=selection,
        extra_headers={"Content-Location": location, "Nowcast-Source": stream,
                       "Nowcast-Source-Reason": reason.encode("ascii", "replace").decode()},
    )


@router.get("/{scan_time}", summary="The nowcast of one slot", responses={**RESULT_RESPONSES})
def nowcast_at(
    store: JobStoreDep,
    settings: SettingsDep,
    selection: SelectionDep,
    scan_time: Annotated[str, Path(max_length=40, description="Slot scan time: 20260101T1206Z or ISO-8601")],
    f: FormatQuery = None,
    lead: LeadQuery = None,
    accept: AcceptHeader = None,
    source: Annotated[Literal["model", "extrapolation"], Query(description="Which stream's product")] = "model",
) -> Response:
    """The product of the slot at ``scan_time`` (the model's, or ``source=extrapolation``); a skipped
    slot answers 409 with the reason."""
    job_id = jobs.nowcast_job_id(parse_scan_time(scan_time), source)
    record = jobs.get_job(store, job_id=job_id)
    if record is None:
        raise Problem(404, "job-not-found", f"no nowcast for slot {scan_time} ({job_id})", field="scan_time")
    set_job_id(job_id)
    return result_response(record, settings, accept=accept, f=f, lead=lead, selection=selection)
