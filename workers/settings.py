"""Worker settings (pydantic-settings, environment prefix ``NOWCAST_``), read through :func:`get_settings`.

No import-time singleton: ``get_settings()`` is cached, tests and the launcher call
``get_settings.cache_clear()`` after changing the environment. ``service/settings.py`` subclasses
:class:`WorkerSettings` with the API's own fields.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_CHECKPOINT = REPO_ROOT / "model" / "checkpoints" / "radar_lagrangian.pt"


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NOWCAST_", extra="ignore")

    redis_url: str = "redis://127.0.0.1:6379/0"  # broker, result backend and job store
    data_dir: Path = Path("./var")  # inputs/<job_id>/, products/<job_id>/, feed/, beat/
    feed_dir: Path | None = None  # scheduled-nowcast scans; unset -> data_dir/feed (set after init)
    # The domains file (TOML, workers/domains.py, docs/domains.md); unset: one domain, "default", on feed_dir.
    domains: Path | None = None
    checkpoint: Path = SHIPPED_CHECKPOINT
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: CUDA when the worker child sees one
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 where the hardware has it
    # torch's intra-op threads in a model worker child; 0: auto, see workers/runtime.py torch_threads
    torch_threads: int = Field(0, ge=0)

    input_scans: int = Field(10, ge=1)  # context scans per nowcast
    lead_steps: int = Field(20, ge=1)  # forecast steps (x timestep_minutes = horizon)
    max_lead_steps: int = Field(60, ge=1)  # bound for on-demand jobs
    timestep_minutes: int = 6  # scan cadence; must divide 60 (the beat crontab is per hour)
    latency_offset_minutes: int = Field(2, ge=0)  # beat fires this long after each scan time
    feed_poll_seconds: float = Field(2.0, ge=0)  # beat looks for the slot's scan this often; 0: never
    stale_after_minutes: int = Field(30, ge=0)  # newest scan older than this at the slot -> skipped
    max_grid: int = Field(1024, ge=8)  # largest H or W accepted, pixels
    max_scans: int = Field(30, ge=1)  # most scans one input may hold (checked from the file headers)

    task_soft_time_limit_s: int = Field(150, ge=1)  # raises SoftTimeLimitExceeded in the task
    task_time_limit_s: int = Field(180, ge=1)  # kills and replaces the worker child
    visibility_timeout_s: int = Field(1800, ge=1)  # Redis redelivers unacked messages after this
    result_expires_s: int = Field(7 * 24 * 3600, ge=60)  # Celery result TTL (job records stay)
    max_attempts: int = Field(3, ge=1)  # deliveries + retries of one job before it is failed
    retry_backoff_s: float = Field(2.0, ge=0)  # first retry countdown; doubles, capped at 60 s
    # A running job's worker renews its lease every third of this; a lease left to expire means the
    # worker is gone, and the requeue task (beat, every half lease) puts the job back in the queue.
    lease_s: int = Field(30, ge=3)
    redis_timeout_seconds: float = Field(2.0, gt=0)  # a Redis that stops answering fails a call this fast
    retention_days: float = Field(7.0, gt=0)  # finished jobs, their inputs and products are pruned after this

    fallback_extrapolation: bool = True  # no usable checkpoint -> pysteps extrapolation, recorded
    quicklooks: bool = True  # PNG per lead time and an animated GIF next to the netCDF
    warmup: bool = True  # one tiny forward pass right after loading the model
    # Members of the model stream's scheduled nowcasts (NOWCAST_MEMBERS): 1 is the deterministic
    # forecast; more makes each slot's model product an ensemble (seed from the slot time).
    members: int = Field(1, ge=1, le=50)

    # Verification (docs/verification.md): every product against the scans at its valid times.
    verification_interval_s: float = Field(60.0, gt=0)  # beat runs the verification sweep this often
    verification_grace_minutes: int = Field(30, ge=0)  # a scan this late after its valid time is "missing"
    verification_retention_days: float = Field(30.0, gt=0)  # verification records kept this long
    verification_lookback: int = Field(600, ge=1)  # newest nowcast jobs the sweep looks at (2 per slot)
    # Which stream /nowcasts/latest serves: "best" = the higher pooled CSI at policy_threshold_dbz
    # over the last policy_slots slots verified for both streams, once policy_min_slots exist.
    source_policy: Literal["model", "extrapolation", "best"] = "model"
    policy_slots: int = Field(20, ge=1)
    policy_min_slots: int = Field(5, ge=1)
    policy_threshold_dbz: float = 30.0

    # One clock for the local stack (workers/clock.py): simulated = sim_start + speed * (wall - wall_start).
    clock_speed: float = Field(1.0, gt=0)
    # Unset (empty / 0) means the wall clock; nowcast up sets both, with the speed.
    clock_wall_start: float = 0.0  # epoch seconds
    clock_sim_start: str = ""  # ISO-8601 UTC

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
        if self.max_scans < self.input_scans:
            raise ValueError(f"max_scans {self.max_scans} is below input_scans {self.input_scans}")
        if self.policy_min_slots > self.policy_slots:
            raise ValueError(f"policy_min_slots {self.policy_min_slots} exceeds policy_slots {self.policy_slots}")
        if self.clock_sim_start:
            try:
                dt.datetime.fromisoformat(self.clock_sim_start.replace("Z", "+00:00"))
            except ValueError as exc:
                raise ValueError(f"clock_sim_start {self.clock_sim_start!r} is not an ISO-8601 time") from exc
        if self.clock_speed != 1.0 and self.clock_origin is None:
            raise ValueError("clock_speed other than 1 needs clock_wall_start and clock_sim_start")
        if self.lead_steps > self.max_lead_steps:
            raise ValueError(f"lead_steps {self.lead_steps} exceeds max_lead_steps {self.max_lead_steps}")
        return self

    @property
    def clock_origin(self) -> tuple[float, dt.datetime] | None:
        """(wall_start epoch s, sim_start UTC) of the stack's simulated clock, or None for the wall clock."""
        if not self.clock_sim_start or not self.clock_wall_start:
            return None
        start = dt.datetime.fromisoformat(self.clock_sim_start.replace("Z", "+00:00"))
        return self.clock_wall_start, start.replace(tzinfo=dt.UTC) if start.tzinfo is None else start.astimezone(dt.UTC)

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
