"""``GET /verification``: the live skill of each stream over a window of slots, and the source policy."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from service.deps import JobStoreDep, SettingsDep
from service.problems import Problem, problem_openapi
from service.schemas import VerificationReport
from service.settings import ApiSettings
from workers import clock, jobs, skill_store, skill_summary
from workers.verification import SCALES, THRESHOLDS

router = APIRouter(tags=["verification"])

DEFAULT_WINDOW_HOURS = 24.0

Stream = Annotated[Literal["model", "extrapolation"] | None,
                   Query(description="One stream only: `model` or `extrapolation` (default both)")]
Moment = Annotated[str | None, Query(max_length=40, description="ISO-8601 UTC slot time, e.g. 2026-03-01T12:00:00Z")]
LeadMinutes = Annotated[int | None, Query(ge=-100_000, le=100_000, description="One lead time, minutes")]
ThresholdDbz = Annotated[float | None, Query(ge=-1000, le=1000, description="One threshold, dBZ: 20, 30 or 40")]


def _moment(text: str | None, name: str) -> dt.datetime | None:
    if text is None:
        return None
    try:
        return skill_store.parse_iso(text)
    except ValueError as exc:
        raise Problem(422, "invalid-time", f"{name}={text!r} is not an ISO-8601 time", field=name) from exc


def _lead(lead: int | None, settings: ApiSettings) -> int | None:
    step, horizon = settings.timestep_minutes, settings.timestep_minutes * settings.lead_steps
    if lead is not None and (lead < step or lead > horizon or lead % step):
        raise Problem(422, "invalid-lead", f"lead={lead}: lead times are {step}, {2 * step}, ... {horizon} minutes",
                      field="lead")
    return lead


def _threshold(value: float | None) -> list[str] | None:
    if value is None:
        return None
    names = {dbz: name for name, dbz in THRESHOLDS}
    if value not in names:
        raise Problem(422, "invalid-threshold",
                      f"threshold={value:g}: verified thresholds are {', '.join(f'{v:g}' for v in names)} dBZ",
                      field="threshold")
    return [names[value]]


@router.get(
    "/verification",
    response_model=VerificationReport,
    summary="Live skill of the model and extrapolation",
    responses={422: problem_openapi("A parameter is out of range", "invalid-lead", 422)},
)
def verification(
    store: JobStoreDep,
    settings: SettingsDep,
    source: Stream = None,
    since: Moment = None,
    until: Moment = None,
    lead: LeadMinutes = None,
    threshold: ThresholdDbz = None,
) -> dict[str, Any]:
    """Per lead time and threshold: CSI, POD, FAR, bias and FSS of the products whose slot lies in
    ``[since, until)`` (default: the last 24 hours), from the pooled contingency table of those
    slots; ``slots`` says how many slots are behind each number, ``missing`` how many leads had no
    scan. A lead of ensemble products also has ``ensemble``: CRPS (dBZ), Brier score and reliability
    counts per threshold of their members, pooled the same way. ``policy`` says which stream
    ``/nowcasts/latest`` serves and why."""
    end = _moment(until, "until") or clock.now(settings)
    start = _moment(since, "since") or end - dt.timedelta(hours=DEFAULT_WINDOW_HOURS)
    if start >= end:
        raise Problem(422, "invalid-window", f"since ({start:%Y-%m-%dT%H:%MZ}) must be before until "
                                             f"({end:%Y-%m-%dT%H:%MZ})", field="since")
    lead = _lead(lead, settings)
    names = _threshold(threshold)
    streams = [source] if source else list(jobs.STREAMS)
    sources = {stream: skill_summary.summarize(skill_store.records_between(store, stream=stream, since=start,
                                                                            until=end), lead=lead, thresholds=names)
               for stream in streams}
    return {
        "since": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "until": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "timestep_minutes": settings.timestep_minutes,
        "thresholds_dbz": [value for _, value in THRESHOLDS],
        "fss_scales_pixels": list(SCALES),
        "sources": sources,
        "policy": skill_summary.choose_source(store, settings).to_dict(),
    }
