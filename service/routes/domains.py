"""Radar domains (workers/domains.py): ``GET /domains`` and each domain's nowcasts and verification.

``/domains`` lists every domain of the domains file with its grid, projection, model, newest scan
and health; ``/domains/{id}/nowcasts``, ``.../nowcasts/latest``, ``.../nowcasts/{scan_time}`` and
``.../verification`` are the domain's counterparts of ``/nowcasts`` and ``/verification``, which
stay the default domain's. A domain is unhealthy when its feed directory is missing, holds no scan,
or its newest scan is older than ``stale_after_minutes`` on the stack's clock; the others are not
held up by it.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request
from starlette.responses import Response

from service.deps import JobStoreDep, SettingsDep
from service.logs import set_job_id
from service.problems import Problem, problem_openapi
from service.quantities import SelectionDep
from service.results import RESULT_RESPONSES, result_response
from service.routes.jobs import Limit, Offset, page_links
from service.routes.nowcasts import LATEST_WINDOW, AcceptHeader, FormatQuery, LeadQuery, parse_scan_time
from service.routes.verification import (
    DEFAULT_WINDOW_HOURS,
    LeadMinutes,
    Moment,
    Stream,
    ThresholdDbz,
)
from service.routes.verification import _lead as parse_lead
from service.routes.verification import _moment as parse_moment
from service.routes.verification import _threshold as parse_threshold
from service.schemas import JobList, VerificationReport
from service.settings import ApiSettings
from service.views import root, status_info
from workers import clock, jobs, skill_store, skill_summary
from workers.domains import (
    Domain,
    DomainFileError,
    domain_settings,
    domains_for,
    feed_dir_of,
    nowcast_job_id,
    slot_part,
    stream_index,
)
from workers.feeds import list_scans
from workers.verification import SCALES, THRESHOLDS

log = logging.getLogger(__name__)

router = APIRouter(prefix="/domains", tags=["domains"])

DomainId = Annotated[str, Path(max_length=40, description="Domain id, as `GET /domains` lists them")]
_GRIDS: dict[tuple[str, int], dict[str, Any]] = {}  # (newest scan path, mtime_ns) -> its grid description
_GRIDS_LOCK = threading.Lock()


def _domains(settings: ApiSettings) -> Any:
    try:
        return domains_for(settings)
    except DomainFileError as exc:  # the file was broken after the API started: say so, not a 500
        raise Problem(503, "bad-domains-file", str(exc)) from exc


def _domain(settings: ApiSettings, domain_id: str) -> Domain:
    known = _domains(settings)
    domain = known.by_id.get(domain_id)
    if domain is None:
        raise Problem(404, "domain-not-found", f"no domain {domain_id!r}; domains: {', '.join(d.id for d in known)}",
                      field="domain_id")
    return domain


def _scan_grid(path: FilePath) -> dict[str, Any]:
    """Shape and CF grid mapping of one scan, read once per file version."""
    key = (str(path), path.stat().st_mtime_ns)
    with _GRIDS_LOCK:
        if key in _GRIDS:
            return _GRIDS[key]
    import xarray as xr

    from service.gridmap import grid_mapping_of

    described: dict[str, Any] = {"shape": None, "projection": None}
    with xr.open_dataset(path, engine="netcdf4", decode_times=False) as ds:
        for variable in ds.data_vars.values():
            if variable.ndim >= 2 and ("grid_mapping" in variable.attrs or "grid_mapping" in variable.encoding):
                described["shape"] = [int(n) for n in variable.shape[-2:]]
                mapping = grid_mapping_of(ds, variable)
                if mapping is not None:
                    described["projection"] = {"name": mapping.get("name"), "proj4": mapping.get("proj4"),
                                               "attributes": mapping.get("attributes")}
                break
            if variable.ndim >= 2 and described["shape"] is None:
                described["shape"] = [int(n) for n in variable.shape[-2:]]
    with _GRIDS_LOCK:
        if len(_GRIDS) > 256:
            _GRIDS.clear()
        _GRIDS[key] = described
    return described


def health_of(settings: ApiSettings, domain: Domain, now: dt.datetime) -> dict[str, Any]:
    """{ok, detail, newest_scan, scans, feed_dir name} of one domain's feed on the stack's clock."""
    feed = feed_dir_of(settings, domain)
    own = domain_settings(settings, domain)
    if not feed.is_dir():
        return {"ok": False, "detail": f"feed directory {feed.name} does not exist", "newest_scan": None, "scans": 0}
    try:
        scans = list_scans(feed)
    except OSError as exc:
        return {"ok": False, "detail": f"feed directory {feed.name} unreadable: {exc.strerror or exc}",
                "newest_scan": None, "scans": 0}
    if not scans:
        return {"ok": False, "detail": f"no scans in the feed directory {feed.name}", "newest_scan": None, "scans": 0}
    newest = max(scans)
    age = (now - newest).total_seconds() / 60
    result = {"newest_scan": newest.strftime("%Y-%m-%dT%H:%M:%SZ"), "scans": len(scans)}
    if age > own.stale_after_minutes:
        return {"ok": False, "detail": f"feed stale: newest scan {result['newest_scan']} is {age:.0f} min old "
                                       f"(more than {own.stale_after_minutes})", **result}
    return {"ok": True, "detail": f"newest scan {age:.0f} min old", **result, "_newest_path": scans[newest]}


def describe(request: Request, settings: ApiSettings, domain: Domain, now: dt.datetime) -> dict[str, Any]:
    """One domain as ``GET /domains`` lists it."""
    health = health_of(settings, domain, now)
    newest_path = health.pop("_newest_path", None)
    grid: dict[str, Any] = {"shape": list(domain.grid) if domain.grid else None, "projection": None}
    if newest_path is not None:
        try:
            grid = {**grid, **{k: v for k, v in _scan_grid(newest_path).items() if v is not None}}
        except (OSError, ValueError, KeyError) as exc:  # a scan being replaced, or not a netCDF file
            log.warning("domain %s: cannot read the grid of %s: %s", domain.id, newest_path.name, exc)
    own = domain_settings(settings, domain)
    base = f"{root(request)}/domains/{domain.id}"
    return {
        "id": domain.id,
        "title": domain.title or domain.id,
        "default": domain.default,
        "grid": grid["shape"],
        "projection": grid["projection"],
        "model": {"checkpoint": FilePath(own.checkpoint).name,
                  "model_version": jobs.model_version(own.checkpoint) if FilePath(own.checkpoint).is_file()
                  else jobs.NO_CHECKPOINT},
        "source_policy": own.source_policy,
        "timestep_minutes": own.timestep_minutes,
        "queues": {"model": domain.queue, "extrapolation": domain.extrapolation_queue},
        "synthetic": domain.grid is not None,
        "newest_scan": health["newest_scan"],
        "scans": health["scans"],
        "health": {"ok": health["ok"], "detail": health["detail"]},
        "links": [{"href": f"{base}/nowcasts", "rel": "nowcasts", "type": "application/json"},
                  {"href": f"{base}/nowcasts/latest", "rel": "latest", "type": "application/x-netcdf"},
                  {"href": f"{base}/verification", "rel": "verification", "type": "application/json"}],
    }


def unhealthy(settings: ApiSettings) -> list[str]:
    """``id: reason`` of every unhealthy domain (for ``/readyz``'s detail); [] when all are well."""
    try:
        known = domains_for(settings)
    except DomainFileError as exc:
        return [str(exc)]
    now = clock.now(settings)
    return [f"{d.id}: {h['detail']}" for d in known if not (h := health_of(settings, d, now))["ok"]]


@router.get("", summary="The radar domains")
def list_domains(request: Request, settings: SettingsDep) -> dict[str, Any]:
    """Every domain with its grid (H, W pixels), projection, model, newest scan and health."""
    now = clock.now(settings)
    known = _domains(settings)
    return {"default": known.default.id, "domains": [describe(request, settings, d, now) for d in known]}


@router.get("/{domain_id}", summary="One radar domain",
            responses={404: problem_openapi("No such domain", "domain-not-found", 404)})
def get_domain(request: Request, settings: SettingsDep, domain_id: DomainId) -> dict[str, Any]:
    return describe(request, settings, _domain(settings, domain_id), clock.now(settings))


def _records(store: Any, domain: Domain, *, limit: int, offset: int) -> tuple[list[Any], int]:
    if domain.default:
        return jobs.list_jobs(store, kind="nowcast", limit=limit, offset=offset)
    return jobs.list_jobs(store, domain=domain.id, limit=limit, offset=offset)


@router.get("/{domain_id}/nowcasts", response_model=JobList, summary="A domain's scheduled nowcast slots",
            responses={404: problem_openapi("No such domain", "domain-not-found", 404)})
def domain_nowcasts(request: Request, store: JobStoreDep, settings: SettingsDep, domain_id: DomainId,
                    limit: Limit = 20, offset: Offset = 0) -> JobList:
    domain = _domain(settings, domain_id)
    records, total = _records(store, domain, limit=limit, offset=offset)
    return JobList(jobs=[status_info(request, record) for record in records], numberMatched=total,
                   links=page_links(request, f"/domains/{domain.id}/nowcasts", limit=limit, offset=offset,
                                    total=total))


@router.get("/{domain_id}/nowcasts/latest", summary="A domain's latest successful nowcast",
            responses={**RESULT_RESPONSES, 404: problem_openapi("No nowcast yet", "no-nowcast", 404)})
def domain_latest(request: Request, store: JobStoreDep, settings: SettingsDep, domain_id: DomainId,
                  selection: SelectionDep, f: FormatQuery = None, lead: LeadQuery = None,
                  accept: AcceptHeader = None) -> Response:
    """The newest slot's product from the stream the domain's source policy chooses (headers as
    ``/nowcasts/latest``)."""
    domain = _domain(settings, domain_id)
    own = domain_settings(settings, domain)
    decision = skill_summary.choose_source(store, own, index=lambda stream: stream_index(domain, stream))
    records, _ = _records(store, domain, limit=LATEST_WINDOW, offset=0)
    done = sorted((r for r in records if r.status == "successful"), key=lambda r: r.slot or "", reverse=True)
    if not done:
        raise Problem(404, "no-nowcast", f"no successful scheduled nowcast of domain {domain.id!r} yet")
    newest = done[0]
    wanted = nowcast_job_id(domain, skill_store.parse_iso(newest.slot or ""), decision.served)
    record, stream, reason = newest, jobs.nowcast_stream(newest.job_id), decision.reason
    if newest.job_id == wanted:
        stream = decision.served
    else:
        candidate = jobs.get_job(store, job_id=wanted)
        if candidate is not None and candidate.status == "successful":
            record, stream = candidate, decision.served
        else:
            reason = f"{decision.reason}; no {decision.served} product for the newest slot, serving {stream}"
    set_job_id(record.job_id)
    location = f"{root(request)}/domains/{domain.id}/nowcasts/{slot_part(record.job_id)}"
    location += "" if stream == jobs.MODEL_STREAM else f"?source={stream}"
    return result_response(record, own, accept=accept, f=f, lead=lead,  # type: ignore[arg-type]
                           selection=selection, extra_headers={"Content-Location": location, "Nowcast-Source": stream,
                                          "Nowcast-Domain": domain.id,
                                          "Nowcast-Source-Reason": reason.encode("ascii", "replace").decode()})


@router.get("/{domain_id}/nowcasts/{scan_time}", summary="A domain's nowcast of one slot",
            responses={**RESULT_RESPONSES})
def domain_nowcast_at(store: JobStoreDep, settings: SettingsDep, domain_id: DomainId, selection: SelectionDep,
                      scan_time: Annotated[str, Path(max_length=40, description="20260101T1206Z or ISO-8601")],
                      f: FormatQuery = None, lead: LeadQuery = None,
                      accept: AcceptHeader = None,
                      source: Literal["model", "extrapolation"] = "model") -> Response:
    domain = _domain(settings, domain_id)
    job_id = nowcast_job_id(domain, parse_scan_time(scan_time), source)
    record = jobs.get_job(store, job_id=job_id)
    if record is None:
        raise Problem(404, "job-not-found", f"no nowcast of domain {domain.id!r} for slot {scan_time} ({job_id})",
                      field="scan_time")
    set_job_id(job_id)
    return result_response(record, domain_settings(settings, domain), accept=accept, f=f,  # type: ignore[arg-type]
                           lead=lead, selection=selection)


@router.get("/{domain_id}/verification", response_model=VerificationReport,
            summary="A domain's live skill of the model and extrapolation",
            responses={404: problem_openapi("No such domain", "domain-not-found", 404),
                       422: problem_openapi("A parameter is out of range", "invalid-lead", 422)})
def domain_verification(store: JobStoreDep, settings: SettingsDep, domain_id: DomainId,
                        source: Stream = None, since: Moment = None,
                        until: Moment = None, lead: LeadMinutes = None,
                        threshold: ThresholdDbz = None) -> dict[str, Any]:
    """As ``GET /verification``, over this domain's products only."""
    domain = _domain(settings, domain_id)
    own = domain_settings(settings, domain)
    end = parse_moment(until, "until") or clock.now(settings)
    start = parse_moment(since, "since") or end - dt.timedelta(
        hours=DEFAULT_WINDOW_HOURS)
    if start >= end:
        raise Problem(422, "invalid-window", f"since ({start:%Y-%m-%dT%H:%MZ}) must be before until "
                                             f"({end:%Y-%m-%dT%H:%MZ})", field="since")
    lead = parse_lead(lead, own)  # type: ignore[arg-type]
    names = parse_threshold(threshold)
    streams = [source] if source else list(jobs.STREAMS)
    sources = {stream: skill_summary.summarize(
        skill_store.records_between(store, stream=stream_index(domain, stream), since=start, until=end),
        lead=lead, thresholds=names) for stream in streams}
    policy = skill_summary.choose_source(store, own, index=lambda stream: stream_index(domain, stream))
    return {"since": start.strftime("%Y-%m-%dT%H:%M:%SZ"), "until": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "timestep_minutes": own.timestep_minutes, "thresholds_dbz": [value for _, value in THRESHOLDS],
            "fss_scales_pixels": list(SCALES), "sources": sources, "policy": policy.to_dict()}
