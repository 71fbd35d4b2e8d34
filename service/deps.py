"""FastAPI dependencies as ``Annotated`` aliases: settings, job store, Celery, API key, job lookup.

The Redis client and the Celery app are created once per app in the lifespan (``service.main``)
and read from ``app.state`` here, so tests get exactly the clients of the app they built.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated, Any

import redis
from celery import Celery
from fastapi import Depends, Path, Request, Security
from fastapi.security import APIKeyHeader

from service.logs import set_job_id
from service.problems import Problem
from service.settings import ApiSettings
from workers import jobs

API_KEY_HEADER = "X-API-Key"
api_key_scheme = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    scheme_name="ApiKey",
    description="Needed for every write (POST, DELETE); for reads too when `read_requires_key` is set.",
)


def get_app_settings(request: Request) -> ApiSettings:
    settings: ApiSettings = request.app.state.settings
    return settings


def get_job_store(request: Request) -> redis.Redis:
    client: redis.Redis = request.app.state.redis
    return client


def get_celery(request: Request) -> Celery:
    app: Celery = request.app.state.celery
    return app


SettingsDep = Annotated[ApiSettings, Depends(get_app_settings)]
JobStoreDep = Annotated[redis.Redis, Depends(get_job_store)]
RedisDep = JobStoreDep
CeleryDep = Annotated[Celery, Depends(get_celery)]


def key_is_valid(presented: str, settings: ApiSettings) -> bool:
    """Constant-time comparison against every configured key (no early exit on a match)."""
    candidate = presented.encode()
    matched = False
    for key in settings.api_keys:
        matched |= hmac.compare_digest(candidate, key.get_secret_value().encode())
    return matched


def key_owner(presented: str) -> str:
    """A short, non-secret id of a key for job records and logs (``key-`` + 8 hex of its sha256)."""
    return "key-" + hashlib.sha256(presented.encode()).hexdigest()[:8]


def require_api_key(settings: SettingsDep, presented: Annotated[str | None, Security(api_key_scheme)]) -> str:
    """401 problem+json unless ``X-API-Key`` holds a configured key; returns the key's owner id."""
    challenge = {"WWW-Authenticate": f'ApiKey header="{API_KEY_HEADER}"'}
    if not presented:
        raise Problem(
            401,
            "api-key-missing",
            f"this operation needs the {API_KEY_HEADER} header",
            field=API_KEY_HEADER,
            headers=challenge,
        )
    if not key_is_valid(presented, settings):
        raise Problem(
            401,
            "api-key-invalid",
            f"the {API_KEY_HEADER} header holds no valid key",
            field=API_KEY_HEADER,
            headers=challenge,
        )
    return key_owner(presented)


ApiKeyDep = Annotated[str, Depends(require_api_key)]


def caller(settings: SettingsDep, presented: Annotated[str | None, Security(api_key_scheme)]) -> str | None:
    """The owner id of a valid ``X-API-Key``, or None without one (reads that need no key)."""
    return key_owner(presented) if presented and key_is_valid(presented, settings) else None


def check_owner(record: Any, owner: str | None, settings: ApiSettings) -> None:
    """Only the key that submitted a job may act on it (and read it, where reads need a key).

    Where reads need a key, another key's job answers 404, as if it did not exist: ids must not be
    probed. Where reads are open, the job is visible anyway and a foreign dismissal is a plain 403.
    """
    if record.owner is None or record.owner == owner:
        return
    if settings.read_requires_key:
        raise Problem(404, "job-not-found", f"no job with id {record.job_id!r}", field="jobID")
    raise Problem(403, "not-owner", f"job {record.job_id} belongs to another API key", field="X-API-Key")


JobIdPath = Annotated[str, Path(alias="jobID", min_length=1, max_length=200, description="The job's id")]


def load_job(store: JobStoreDep, settings: SettingsDep, job_id: JobIdPath,
             owner: Annotated[str | None, Depends(caller)]) -> Any:
    """The job record, or 404 ``job-not-found`` (an unknown id is never reported as pending);
    where reads need a key, only the caller's own jobs and the scheduled nowcasts are found."""
    record = jobs.get_job(store, job_id=job_id)
    if record is None:
        raise Problem(404, "job-not-found", f"no job with id {job_id!r}", field="jobID")
    if settings.read_requires_key:
        check_owner(record, owner, settings)
    set_job_id(job_id)
    return record


JobDep = Annotated[Any, Depends(load_job)]
CallerDep = Annotated[str | None, Depends(caller)]
