"""Job records -> OGC ``statusInfo`` documents, and the links between resources.

Links are paths relative to the API root (``/jobs/...``), prefixed with the ASGI ``root_path``
so they stay right behind a proxy that mounts the API under a sub-path.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from model.members import PROBABILITY_THRESHOLDS_DBZ
from service.representations import JSON, NETCDF, PNG
from service.schemas import OGC_REL_RESULTS, UNFINISHED, EnsembleInfo, Link, StatusInfo
from workers import jobs


def root(request: Request) -> str:
    """The path prefix of the API (empty unless mounted under a sub-path)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def job_links(request: Request, job_id: str, status: str) -> list[Link]:
    base = f"{root(request)}/jobs/{job_id}"
    links = [Link(href=base, rel="self", type=JSON, title="this job's status")]
    if status == "successful":
        links += [
            Link(href=f"{base}/results", rel=OGC_REL_RESULTS, type=NETCDF, title="forecast (CF netCDF)"),
            Link(href=f"{base}/results?f=json", rel="alternate", type=JSON, title="forecast (JSON)"),
            Link(href=f"{base}/results?f=png", rel="alternate", type=PNG, title="first lead time (PNG)"),
        ]
    else:
        links.append(
            Link(href=f"{base}/results", rel=OGC_REL_RESULTS, type=NETCDF, title="forecast (when ready)")
        )
    return links


def status_info(request: Request, record: Any) -> StatusInfo:
    """The ``statusInfo`` of a ``workers.jobs.JobRecord``."""
    data = record.to_dict()
    return StatusInfo(
        jobID=data["job_id"],
        kind=data["kind"],
        status=data["status"],
        # Records written before workers cleaned their messages may still name server paths.
        message=jobs.public_message(data["message"]) if data.get("message") else None,
        created=data.get("created"),
        started=data.get("started"),
        finished=data.get("finished"),
        updated=data.get("updated"),
        progress=data.get("progress"),
        steps=data.get("steps"),
        source=data.get("source") or None,
        slot=data.get("slot") or None,
        domain=data.get("domain") or None,
        reference_time=data.get("reference_time") or None,
        model=data.get("model") or None,
        model_frame=data.get("model_frame") or None,
        model_version=data.get("model_version") or None,
        timestep_minutes=data.get("timestep_minutes"),
        lead_times=_lead_times(data),
        ensemble=_ensemble(data),
        links=job_links(request, data["job_id"], data["status"]),
    )


def _ensemble(data: dict[str, Any]) -> EnsembleInfo | None:
    """What an ensemble job's results offer (the product writer's thresholds); None for one member."""
    members = int(data.get("members") or 1)
    if members <= 1:
        return None
    return EnsembleInfo(members=members, seed=int(data.get("seed") or 0),
                        thresholds_dbz=list(PROBABILITY_THRESHOLDS_DBZ))


def _lead_times(data: dict[str, Any]) -> list[int] | None:
    """Minutes with a quicklook, from the record: observed scans (``products.obs_png``, minutes before
    the reference time) as 0, -6, ..., forecasts (``products.png``) as 6, 12, ...; ascending."""
    if data.get("status") != "successful":
        return None
    products = data.get("products") or {}
    observed = {-int(k) for k in products.get("obs_png") or {} if str(k).isdigit()}
    forecast = {int(k) for k in products.get("png") or {} if str(k).isdigit() and int(k) > 0}
    return sorted(observed | forecast) or None


def retry_after(status: str, seconds: int) -> dict[str, str]:
    """``Retry-After`` for a job still in flight, else nothing."""
    return {"Retry-After": str(seconds)} if status in UNFINISHED else {}
