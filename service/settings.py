"""The API's settings: the workers' settings (Redis, data dir, checkpoint, grid) plus keys and limits.

Environment variables use the ``NOWCAST_`` prefix of :class:`workers.settings.WorkerSettings`,
e.g. ``NOWCAST_API_KEYS=key-one,key-two``, ``NOWCAST_ENVIRONMENT=development``.

API keys have no default: the API does not start without one. Outside ``development`` it also
refuses placeholder keys (``changethis``...) and keys shorter than 16 characters, so a copied
``.env.example`` cannot go to production. :func:`get_settings` is cached; tests build their own
``ApiSettings(...)`` and pass it to ``create_app``.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from workers.settings import WorkerSettings

logger = logging.getLogger(__name__)

PLACEHOLDER_KEYS = frozenset(
    {"changethis", "changeme", "change-me", "secret", "password", "apikey", "api-key"}
)
MIN_KEY_LENGTH = 16


class ApiSettings(WorkerSettings):
    """Settings of the HTTP API (inherits Redis, data_dir, checkpoint, cadence, max_grid...)."""

    # Validation errors must not echo the keys back into logs.
    model_config = SettingsConfigDict(hide_input_in_errors=True)

    environment: Literal["development", "staging", "production"] = "production"
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        description="Keys accepted in X-API-Key; comma-separated or a JSON list in the environment"
    )
    read_requires_key: bool = False  # True: GETs of jobs, results and nowcasts need a key too
    max_upload_mb: int = Field(64, ge=1)  # any request body (multipart uploads), MiB
    max_json_request_bytes: int = Field(16 * 1024 * 1024, ge=1)  # a JSON forecast request
    json_max_values: int = Field(2_000_000, ge=1)  # largest L*H*W served as JSON
    retry_after_seconds: int = Field(5, ge=1)  # Retry-After while a job is accepted or running
    inference_queue: str = "gpu"  # the Celery queue of forecast tasks
    readiness_timeout_seconds: float = Field(1.0, gt=0)  # Celery inspect broadcast timeout
    readiness_cache_seconds: float = Field(10.0, ge=0)  # how long a worker answer counts as fresh
    log_format: Literal["json", "text"] = "json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @property
    def max_request_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _refuse_placeholder_keys(self) -> ApiSettings:
        if not self.api_keys:
            raise ValueError("api_keys: at least one API key is required (NOWCAST_API_KEYS)")
        weak = [
            index
            for index, key in enumerate(self.api_keys)
            if key.get_secret_value().lower() in PLACEHOLDER_KEYS
            or len(key.get_secret_value()) < MIN_KEY_LENGTH
        ]
        if weak:
            message = (
                f"api_keys: key(s) at position {weak} are placeholders or shorter than "
                f"{MIN_KEY_LENGTH} characters"
            )
            if self.environment != "development":
                raise ValueError(
                    f"{message}; refused outside development (NOWCAST_ENVIRONMENT={self.environment})"
                )
            logger.warning("%s; accepted only because NOWCAST_ENVIRONMENT=development", message)
        return self


@lru_cache(maxsize=1)
def get_settings() -> ApiSettings:
    """The process-wide settings, read from the environment once."""
    return ApiSettings()  # type: ignore[call-arg]  # api_keys comes from the environment
