"""The API's app factory: ``create_app(settings)``; run with ``uvicorn --factory service.main:create_app``.

No import-time app or settings: :func:`create_app` reads :func:`service.settings.get_settings` only
when called without settings, so tests build apps over their own Redis and data directory. The
Redis client and the Celery app (used only to send tasks by name and to ask workers for readiness;
the API never imports torch or the task code) are created here and closed by the lifespan.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis
from celery import Celery
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from redis.backoff import NoBackoff
from redis.retry import Retry

from service.logs import configure_logging
from service.metrics import ApiMetrics
from service.middleware import BodyLimitMiddleware, RequestContextMiddleware
from service.problems import PROBLEM_MEDIA_TYPE, install_problem_handlers
from service.routes import include_routers
from service.routes.health import WorkerProbe
from service.schemas import ExecuteRequest, FieldResult, ForecastJSONRequest, ForecastJSONResult, ProblemDetails
from service.settings import ApiSettings, get_settings
from workers.celery_app import create_app as create_celery_app

logger = logging.getLogger(__name__)

TAGS = [
    {"name": "forecast", "description": "Submit a radar sequence for an on-demand forecast"},
    {"name": "jobs", "description": "Job status, results and dismissal (OGC API - Processes)"},
    {"name": "nowcasts", "description": "The scheduled 6-minute nowcasts"},
    {"name": "verification", "description": "Live skill of every nowcast against the scans that followed"},
    {"name": "processes", "description": "OGC API - Processes landing page, conformance and process"},
    {"name": "health", "description": "Liveness, readiness and Prometheus metrics"},
]


# The landing text of /docs and /redoc: what a client must send, and one worked example.
API_DESCRIPTION = """\
Precipitation nowcasts from radar scans with PredRNN-V2. Submit a sequence with `POST /forecast`,
poll `GET /jobs/{jobID}`, fetch `GET /jobs/{jobID}/results` as CF netCDF (default), JSON, a
Cloud-Optimized GeoTIFF or a PNG per lead time. Errors are RFC 9457 problem details
(`application/problem+json`, integer `status`, stable `code`). Writes need `X-API-Key`.

## What an input netCDF must contain

One file per scan (repeat the multipart field `file`), or one file with a time dimension:

* **one radar variable** of 2 (y, x) or 3 (time, y, x) dimensions, found by `standard_name`
  `equivalent_reflectivity_factor` with `units: dBZ`, or `rainfall_rate` with `units: mm h-1`
  (or `mm/h`, `kg m-2 s-1`...); without a standard_name, a variable named like `reflectivity`,
  `dbz` or `rainfall_rate`. Missing values as `_FillValue` or NaN; dBZ within -40..90, rain rates
  below 1000 mm/h;
* **time**: a CF time coordinate (`units: "seconds since 1970-01-01"`), the leading dimension or a
  scalar `time` coordinate per file; the scans at the service's cadence (6 minutes), without gaps
  or duplicates, and at least `input_scans` of them (10 by default);
* **the grid**: 1-D `y`/`x` projection coordinates in metres, strictly monotonic (or 2-D
  `lat`/`lon`) and, for the products to be placed on a map, a **grid_mapping** variable named by
  the radar variable's `grid_mapping` attribute (CF attributes such as `grid_mapping_name: transverse_mercator`,
  `longitude_of_central_meridian`, `false_easting`...). The products copy it, so that the viewer and
  GIS tools put the forecast on the map (without it: no geography); the side is at most `max_grid` cells.

## Worked example

```bash
KEY=...                                   # one of NOWCAST_API_KEYS
ncdump -h scan_1200.nc                    # reflectivity(time, y, x) dBZ, grid_mapping = "crs"
curl -si -H "X-API-Key: $KEY" -F file=@scan_1200.nc -F file=@scan_1206.nc -F file=@scan_1212.nc \\
     -F file=@scan_1218.nc -F steps=10 http://127.0.0.1:8000/forecast
#   HTTP/1.1 201 Created, Location: /jobs/forecast-3f2a...
curl -s http://127.0.0.1:8000/jobs/forecast-3f2a...              # poll while Retry-After is sent
curl -so forecast.nc http://127.0.0.1:8000/jobs/forecast-3f2a.../results
curl -so lead30.tif "http://127.0.0.1:8000/jobs/forecast-3f2a.../results?f=geotiff&lead=30"
```
"""


def make_celery(settings: ApiSettings) -> Celery:
    """The workers' Celery app configured from our settings: used to send tasks by name and to ask
    workers for readiness (``workers.celery_app`` is configuration only and never imports torch)."""
    app = create_celery_app(settings)
    # A publish to an unreachable or paused broker fails within seconds instead of hanging the request.
    app.conf.task_publish_retry_policy = {"max_retries": 1, "interval_start": 0, "interval_step": 0.5}
    timeout = settings.redis_timeout_seconds
    app.conf.broker_transport_options = {
        **app.conf.broker_transport_options,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
    }
    app.conf.broker_connection_timeout = timeout
    return app


def make_job_store(settings: ApiSettings) -> redis.Redis:
    """The API's Redis client: lazy (the API starts while Redis is down and /readyz says so), and
    without retries, so a Redis that stops answering costs a request ``redis_timeout_seconds``
    and then a 503 with Retry-After instead of a thread blocked for many times that."""
    timeout = settings.redis_timeout_seconds
    return redis.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        health_check_interval=30,
        retry=Retry(NoBackoff(), 0),
    )


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema plus the models that only hand-written request bodies and responses use."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes, tags=TAGS
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (ProblemDetails, ForecastJSONRequest, ExecuteRequest, ForecastJSONResult, FieldResult):
        model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, definition in model_schema.pop("$defs", {}).items():
            components.setdefault(name, definition)
        components.setdefault(model.__name__, model_schema)
    _errors_as_problems(schema)
    app.openapi_schema = schema
    return schema


def _errors_as_problems(schema: dict[str, Any]) -> None:
    """Every error answer is problem+json: document it so (FastAPI's 422 says application/json)."""
    problem = {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.setdefault("responses", {})
            for code, response in responses.items():
                if code.isdigit() and int(code) >= 400:
                    response["content"] = {PROBLEM_MEDIA_TYPE: problem}
            responses.setdefault("422", {"description": "Invalid parameter", "content": {PROBLEM_MEDIA_TYPE: problem}})
            responses.setdefault(
                "default", {"description": "Error (RFC 9457 problem details)", "content": {PROBLEM_MEDIA_TYPE: problem}}
            )
    for name in ("HTTPValidationError", "ValidationError"):
        schema.get("components", {}).get("schemas", {}).pop(name, None)


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    """Build the API for ``settings`` (default: :func:`get_settings`, from the environment)."""
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_format)
    metrics = ApiMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.inputs_dir.mkdir(parents=True, exist_ok=True)
        logger.info("API starting (data_dir=%s, environment=%s)", settings.data_dir, settings.environment)
        try:
            yield
        finally:
            app.state.redis.close()
            app.state.celery.close()
            logger.info("API stopped")

    app = FastAPI(
        title="Nowcast API",
        version="1.0.0",
        description=API_DESCRIPTION,
        lifespan=lifespan,
        openapi_tags=TAGS,
        # FastAPI's own /docs and /redoc load their scripts from a CDN: service.routes.docs serves
        # the vendored copies instead, so both pages work without internet.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.worker_probe = WorkerProbe()
    app.state.redis = make_job_store(settings)
    app.state.celery = make_celery(settings)
    install_problem_handlers(app)
    include_routers(app, settings)
    # Added last = outermost: the request id and metrics cover the 413s of the body limit too.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app
