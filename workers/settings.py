"""Worker settings (pydantic-settings, environment prefix ``NOWCAST_``), read through :func:`get_settings`.

No import-time singleton: ``get_settings()`` is cached, tests and the launcher call
``get_settings.cache_clear()`` after changing the environment. ``service/settings.py`` subclasses
:class:`WorkerSettings` with the API's own fields.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_CHECKPOINT = REPO_ROOT / "model" / "checkpoints" / "radar_v2.pt"


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NOWCAST_", extra="ignore")

    redis_url: str = "redis://127.0.0.1:6379/0"  # broker, result backend and job store
    data_dir: Path = Path("./var")  # inputs/<job_id>/, products/<job_id>/, feed/, beat/
    feed_dir: Path | None = None  # scheduled-nowcast scans; unset -> data_dir/feed (set after init)
    checkpoint: Path = SHIPPED_CHECKPOINT
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: CUDA when the worker child sees one
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 where the hardware has it

    input_scans: int = Field(10, ge=1)  # context scans per nowcast
    lead_steps: int = Field(20, ge=1)  # forecast steps (x timestep_minutes = horizon)
    max_lead_steps: int = Field(60, ge=1)  # bound for on-demand jobs
    timestep_minutes: int = 6  # scan cadence; must divide 60 (the beat crontab is per hour)
    latency_offset_minutes: int = Field(2, ge=0)  # beat fires this long after each scan time
    feed_poll_seconds: float = Field(2.0, ge=0)  # beat looks for the slot's scan this often; 0: never
    stale_after_minutes: int = Field(30, ge=0)  # newest scan older than this at the slot -> skipped
    max_grid: int = Field(1024, ge=8)  # largest H or W accepted, pixels

    task_soft_time_limit_s: int = Field(150, ge=1)  # raises SoftTimeLimitExceeded in the task
    task_time_limit_s: int = Field(180, ge=1)  # kills and replaces the worker child
    visibility_timeout_s: int = Field(1800, ge=1)  # Redis redelivers unacked messages after this
    result_expires_s: int = Field(7 * 24 * 3600, ge=60)  # Celery result TTL (job records stay)
    max_attempts: int = Field(3, ge=1)  # deliveries + retries of one job before it is failed
    retry_backoff_s: float = Field(2.0, ge=0)  # first retry countdown; doubles, capped at 60 s

    fallback_extrapolation: bool = True  # no usable checkpoint -> pysteps extrapolation, recorded
    quicklooks: bool = True  # PNG per lead time and an animated GIF next to the netCDF
    warmup: bool = True  # one tiny forward pass right after loading the model

    @model_validator(mode="after")
    def _check(self) -> WorkerSettings:
        if 60 % self.timestep_minutes:
            raise ValueError(f"timestep_minutes must divide 60, got {self.timestep_minutes}")
        if self.latency_offset_minutes >= self.timestep_minutes:
            raise ValueError("latency_offset_minutes must be shorter than timestep_minutes")
        # Order that keeps late acks safe: soft < hard (clean-up time), hard < visibility (no redelivery
        # of a message whose task is still running).
        if not self.task_soft_time_limit_s < self.task_time_limit_s < self.visibility_timeout_s:
            raise ValueError(
                "need task_soft_time_limit_s < task_time_limit_s < visibility_timeout_s, got "
                f"{self.task_soft_time_limit_s}, {self.task_time_limit_s}, {self.visibility_timeout_s}"
            )
        if self.feed_dir is None:
            self.feed_dir = self.data_dir / "feed"
        if self.lead_steps > self.max_lead_steps:
            raise ValueError(f"lead_steps {self.lead_steps} exceeds max_lead_steps {self.max_lead_steps}")
        return self

    @property
    def inputs_dir(self) -> Path:
        return self.data_dir / "inputs"

    @property
    def products_dir(self) -> Path:
        return self.data_dir / "products"

    @property
    def beat_dir(self) -> Path:
        return self.data_dir / "beat"

    def input_dir(self, job_id: str) -> Path:
        return self.inputs_dir / job_id

    def product_dir(self, job_id: str) -> Path:
        return self.products_dir / job_id


@lru_cache(maxsize=1)
def get_settings() -> WorkerSettings:
    """The process's settings from the environment (cached; ``get_settings.cache_clear()`` rereads)."""
    return WorkerSettings()
