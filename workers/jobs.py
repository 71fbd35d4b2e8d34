"""The job store shared by workers and service: the only code that touches job keys in Redis.

Interface (keyword-only functions over a ``redis.Redis`` client)
----------------------------------------------------------------
create_job(r, *, job_id, kind, steps, input_path, model_version, slot=None, owner=None)
    -> (JobRecord, created: bool)        an existing id returns its record and False
get_job(r, *, job_id) -> JobRecord | None          an unknown id is None, never "pending"
update_job(r, *, job_id, **fields) -> JobRecord    raises JobNotFoundError for an unknown id
list_jobs(r, *, kind=None, limit=20, offset=0) -> (records newest first, total)
increment_attempts(r, *, job_id) -> int
acquire_lock / release_lock / steal_lock / lock_owner   the per-job lock (SET NX EX)
forecast_job_id(input_sha256, model_version, steps), nowcast_job_id(slot, stream), nowcast_stream(job_id),
model_version(path)

Layout: one hash per job (``nowcast:job:<id>``, every field JSON-encoded so a partial update is a
single HSET and never overwrites fields another process changed), a sorted set per index
(``nowcast:jobs`` and ``nowcast:jobs:<kind>``, scored by creation time), and ``nowcast:lock:<id>``.
No torch, no model imports: the API imports this module.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from model.io.netcdf import file_sha256

KEY_PREFIX = "nowcast:"
JOB_KINDS = ("forecast", "nowcast")
JOB_STATUSES = ("accepted", "running", "successful", "failed", "dismissed", "skipped")
FINISHED_STATUSES = ("successful", "failed", "dismissed", "skipped")
NO_CHECKPOINT = "no-checkpoint"  # model_version when the checkpoint file is absent (fallback runs)
# Every scheduled slot makes one product per stream: the model's (which is extrapolation when the
# model cannot run: the fallback) and the extrapolation baseline's, for verification and the policy.
MODEL_STREAM = "model"
EXTRAPOLATION_STREAM = "extrapolation"
STREAMS = (MODEL_STREAM, EXTRAPOLATION_STREAM)


class JobNotFoundError(KeyError):
    """No job with this id."""


@dataclass
class JobRecord:
    job_id: str
    kind: str  # "forecast" | "nowcast"
    status: str = "accepted"  # one of JOB_STATUSES
    created: str | None = None  # ISO-8601 UTC, e.g. "2026-03-01T12:02:00.123Z"
    started: str | None = None
    finished: str | None = None
    updated: str | None = None
    progress: int = 0  # percent, 0-100
    message: str = ""  # human-readable state; the reason when failed or skipped
    steps: int = 0  # lead steps requested
    input_path: str | None = None  # uploaded input (forecast) or the feed directory (nowcast)
    # netcdf, png {lead minutes: path}, gif, obs_png {minutes before reference_time: path}
    products: dict[str, Any] = field(default_factory=dict)
    source: str | None = None  # "predrnn" | "extrapolation": what produced the product
    model_version: str | None = None  # checkpoint sha256 (model_version())
    attempts: int = 0  # deliveries that started work (retries and redeliveries included)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage, and "total"
    slot: str | None = None  # scheduled runs: the scan time, ISO-8601 UTC
    reference_time: str | None = None  # the last input scan's time, ISO-8601 UTC (set with the product)
    model: str | None = None  # what made the product, e.g. "PredRNN-v2" or the extrapolation method
    model_frame: str | None = None  # "eulerian" | "lagrangian" for a PredRNN; None for extrapolation
    timestep_minutes: int | None = None  # minutes between scans and between lead times
    owner: str | None = None  # who submitted it (API key id); None for scheduled runs

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_FIELDS = {f.name for f in dataclasses.fields(JobRecord)}


def _job_key(job_id: str) -> str:
    return f"{KEY_PREFIX}job:{job_id}"


def _index_key(kind: str | None) -> str:
    return f"{KEY_PREFIX}jobs" if kind is None else f"{KEY_PREFIX}jobs:{kind}"


def _lock_key(job_id: str) -> str:
    return f"{KEY_PREFIX}lock:{job_id}"


def utc_now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _record_from_hash(raw: dict[Any, Any]) -> JobRecord:
    values = {_text(k): json.loads(_text(v)) for k, v in raw.items()}
    return JobRecord(**{k: v for k, v in values.items() if k in _FIELDS})


def _encode(fields: dict[str, Any]) -> list[str]:
    flat: list[str] = []
    for name, value in fields.items():
        flat += [name, json.dumps(value, separators=(",", ":"))]
    return flat


def _check_fields(fields: dict[str, Any]) -> None:
    unknown = set(fields) - _FIELDS
    if unknown:
        raise ValueError(f"unknown job fields {sorted(unknown)}; valid: {sorted(_FIELDS)}")
    if "status" in fields and fields["status"] not in JOB_STATUSES:
        raise ValueError(f"status must be one of {JOB_STATUSES}, not {fields['status']!r}")
    if "kind" in fields and fields["kind"] not in JOB_KINDS:
        raise ValueError(f"kind must be one of {JOB_KINDS}, not {fields['kind']!r}")
    if "progress" in fields and not 0 <= int(fields["progress"]) <= 100:
        raise ValueError(f"progress must be within 0-100, got {fields['progress']}")


# Create only when absent, and index it, in one step: two processes submitting the same id cannot
# both believe they created it.
_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[1], ARGV[2])
return 1
"""

_UPDATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return nil end
redis.call('HSET', KEYS[1], unpack(ARGV))
return redis.call('HGETALL', KEYS[1])
"""


def create_job(
    r: redis.Redis,
    *,
    job_id: str,
    kind: str,
    steps: int,
    input_path: str | Path | None,
    model_version: str | None,
    slot: str | dt.datetime | None = None,
    owner: str | None = None,
    status: str = "accepted",
    message: str = "",
) -> tuple[JobRecord, bool]:
    """Create a job record; an existing id returns ``(existing record, False)``."""
    now = utc_now_iso()
    if isinstance(slot, dt.datetime):
        slot = _slot_iso(slot)
    record = JobRecord(job_id=job_id, kind=kind, status=status, created=now, updated=now, steps=int(steps),
                       input_path=None if input_path is None else str(input_path),
                       model_version=model_version, slot=slot, owner=owner, message=message)
    values = record.to_dict()
    _check_fields(values)
    created = r.eval(_CREATE, 3, _job_key(job_id), _index_key(None), _index_key(kind), repr(time.time()),
                     job_id, *_encode(values))
    if created:
        return record, True
    existing = get_job(r, job_id=job_id)
    if existing is None:  # deleted between the two calls; extremely unlikely, and then create again
        return create_job(r, job_id=job_id, kind=kind, steps=steps, input_path=input_path,
                          model_version=model_version, slot=slot, owner=owner, status=status, message=message)
    return existing, False


def get_job(r: redis.Redis, *, job_id: str) -> JobRecord | None:
    raw = r.hgetall(_job_key(job_id))
    return _record_from_hash(raw) if raw else None


def update_job(r: redis.Redis, *, job_id: str, **fields: Any) -> JobRecord:
    """Set some fields (``updated`` is stamped automatically) and return the whole record."""
    _check_fields(fields)
    fields.setdefault("updated", utc_now_iso())
    raw = r.eval(_UPDATE, 1, _job_key(job_id), *_encode(fields))
    if raw is None:
        raise JobNotFoundError(job_id)
    pairs = dict(zip(raw[0::2], raw[1::2], strict=True))
    return _record_from_hash(pairs)


def list_jobs(
    r: redis.Redis, *, kind: str | None = None, limit: int = 20, offset: int = 0
) -> tuple[list[JobRecord], int]:
    """Records newest first and the total count (of that kind)."""
    if kind is not None and kind not in JOB_KINDS:
        raise ValueError(f"kind must be one of {JOB_KINDS}, not {kind!r}")
    if limit < 0 or offset < 0:
        raise ValueError("limit and offset must not be negative")
    index = _index_key(kind)
    total = int(r.zcard(index))
    if limit == 0:
        return [], total
    ids = [_text(i) for i in r.zrevrange(index, offset, offset + limit - 1)]
    with r.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hgetall(_job_key(job_id))
        raws = pipe.execute()
    return [_record_from_hash(raw) for raw in raws if raw], total


def latest_job(r: redis.Redis, *, kind: str, status: str = "successful", scan: int = 50) -> JobRecord | None:
    """The newest job of ``kind`` with ``status`` among the last ``scan`` created (e.g. latest nowcast)."""
    records, _ = list_jobs(r, kind=kind, limit=scan)
    matching = [rec for rec in records if rec.status == status]
    if kind == "nowcast":  # scheduled runs: newest scan time, not newest record
        matching.sort(key=lambda rec: rec.slot or "", reverse=True)
    return matching[0] if matching else None


def increment_attempts(r: redis.Redis, *, job_id: str) -> int:
    """Count one more delivery that started work; JSON of an int is the int, so HINCRBY works."""
    if not r.exists(_job_key(job_id)):
        raise JobNotFoundError(job_id)
    return int(r.hincrby(_job_key(job_id), "attempts", 1))


# ---------------------------------------------------------------------------------------- job lock

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_STEAL = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""


def acquire_lock(r: redis.Redis, *, job_id: str, owner: str, ttl_s: int) -> bool:
    """SET NX EX: True when this owner now holds the job's lock."""
    return bool(r.set(_lock_key(job_id), owner, nx=True, ex=int(ttl_s)))


def release_lock(r: redis.Redis, *, job_id: str, owner: str) -> bool:
    """Delete the lock only if ``owner`` still holds it (never another worker's lock)."""
    return bool(r.eval(_RELEASE, 1, _lock_key(job_id), owner))


def steal_lock(r: redis.Redis, *, job_id: str, expected_owner: str, owner: str, ttl_s: int) -> bool:
    """Take over a lock whose holder is known dead, if it is still the one we saw."""
    return bool(r.eval(_STEAL, 1, _lock_key(job_id), expected_owner, owner, int(ttl_s)))


def lock_owner(r: redis.Redis, *, job_id: str) -> str | None:
    value = r.get(_lock_key(job_id))
    return None if value is None else _text(value)


# ------------------------------------------------------------------------------------------ job ids


def _slot_iso(slot: dt.datetime) -> str:
    if slot.tzinfo is None:
        slot = slot.replace(tzinfo=dt.UTC)
    return slot.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def nowcast_job_id(slot: dt.datetime, stream: str = MODEL_STREAM) -> str:
    """The id of a slot's job in one stream (naive datetimes are taken as UTC).

    ``nowcast-YYYYmmddTHHMMZ`` for the model's product (the id it always had) and
    ``nowcast-YYYYmmddTHHMMZ-extrapolation`` for the slot's extrapolation product: one id per
    (slot, stream), so each product is made exactly once by the same create / lock / no-op path.
    """
    if stream not in STREAMS:
        raise ValueError(f"stream must be one of {STREAMS}, not {stream!r}")
    if slot.tzinfo is None:
        slot = slot.replace(tzinfo=dt.UTC)
    base = f"nowcast-{slot.astimezone(dt.UTC):%Y%m%dT%H%MZ}"
    return base if stream == MODEL_STREAM else f"{base}-{stream}"


def nowcast_stream(job_id: str) -> str:
    """The stream (``model`` | ``extrapolation``) of a nowcast job id."""
    return EXTRAPOLATION_STREAM if job_id.endswith(f"-{EXTRAPOLATION_STREAM}") else MODEL_STREAM


def forecast_job_id(input_sha256: str, model_version: str, steps: int) -> str:
    """Same input, model and horizon -> same id, so a resubmission finds the existing job."""
    digest = hashlib.sha256(f"{input_sha256}|{model_version}|{int(steps)}".encode()).hexdigest()
    return f"forecast-{digest[:32]}"


_VERSION_CACHE: dict[tuple[str, int, int], str] = {}


def model_version(checkpoint_path: str | Path) -> str:
    """sha256 of the checkpoint file's bytes, cached by (path, size, mtime); no torch import.

    An absent file gives :data:`NO_CHECKPOINT`: jobs then run on the extrapolation fallback.
    """
    path = Path(checkpoint_path)
    try:
        stat = path.stat()
    except FileNotFoundError:
        return NO_CHECKPOINT
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _VERSION_CACHE:
        _VERSION_CACHE.clear()  # one checkpoint per process in practice; keep the cache tiny
        _VERSION_CACHE[key] = file_sha256(path)
    return _VERSION_CACHE[key]

