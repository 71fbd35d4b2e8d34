"""Every router of the API, included in one place (:func:`include_routers`)."""

from __future__ import annotations

from fastapi import Depends, FastAPI

from service.deps import require_api_key
from service.routes import docs, domains, forecast, health, jobs, nowcasts, processes, verification, viewer
from service.settings import ApiSettings


def include_routers(app: FastAPI, settings: ApiSettings) -> None:
    """Attach all routers; with ``read_requires_key`` the read routes need ``X-API-Key`` too.

    Health, readiness and metrics stay open (probes and scrapers carry no key), and so does the
    viewer page, which asks the user for a key itself.
    """
    reads = [Depends(require_api_key)] if settings.read_requires_key else []
    app.include_router(processes.router, dependencies=reads)
    app.include_router(forecast.router)
    app.include_router(jobs.router, dependencies=reads)
    app.include_router(nowcasts.router, dependencies=reads)
    app.include_router(verification.router, dependencies=reads)
    app.include_router(domains.router, dependencies=reads)
    app.include_router(health.router)
    app.include_router(viewer.router)
    app.include_router(docs.router)
