"""The job store shared by workers and service: the only code that touches job keys in Redis.

Interface (keyword-only functions over a ``redis.Redis`` client)
----------------------------------------------------------------
create_job(r, *, job_id, kind, steps, input_path, model_version, slot=None, owner=None)
    -> (JobRecord, created: bool)        an existing id returns its record and False
get_job(r, *, job_id) -> JobRecord | None          an unknown id is None, never "pending"
update_job(r, *, job_id, **fields) -> JobRecord    raises JobNotFoundError for an unknown id
list_jobs(r, *, kind=None, limit=20, offset=0, owner=None) -> (records newest first, total)
    with ``owner``: that owner's jobs and the scheduled (ownerless) nowcasts only
increment_attempts(r, *, job_id) -> int
requeue_job(r, *, job_id, from_statuses, message) -> (JobRecord, task_id) | None
acquire_lock / release_lock / steal_lock / lock_owner   the per-job lock (SET NX EX)
heartbeat / extend_lease / clear_lease / requeue_stalled   the lease of a running job
expired_jobs / delete_job                                  retention
forecast_job_id(input_sha256, model_version, steps, owner=None), nowcast_job_id(slot, stream),
nowcast_stream(job_id), model_version(path)
public_message(text) -> the text without server file paths (a path becomes its last part)

Layout: one hash per job (``nowcast:job:<id>``, every field JSON-encoded so a partial update is a
single HSET and never overwrites fields another process changed), a sorted set per index
(``nowcast:jobs``, ``nowcast:jobs:<kind>`` and ``nowcast:jobs:owner:<owner>``, scored by creation
time), ``nowcast:lock:<id>``, and ``nowcast:leases``: running jobs scored by the time their lease
runs out. A worker renews its job's lease (and its lock) while it works; one that dies stops
renewing, and :func:`requeue_stalled` hands the job to the queue again, once.
No torch, no model imports: the API imports this module.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from model.io.netcdf import file_sha256

# An absolute path of two or more parts ("/srv/nowcast/inputs/forecast-1/scan.nc"); not one that
# follows a word, a dot or a colon (mm/h, a URL), and not one of the API's own resource paths.
_SERVER_PATH = re.compile(r"(?<![\w.:/])(?:/[\w.@+~-]+){2,}/?")
_API_PATHS = ("/jobs/", "/nowcasts/", "/viewer/", "/processes/")


def public_message(text: str) -> str:
    """A job message fit for the client: server paths replaced by their last part.

    Messages reach every reader of the job (the viewer shows them), and a path under the data
    directory tells a user nothing but tells anyone the server's layout.
    """
    def shorten(match: re.Match[str]) -> str:
        path = match.group(0)
        if path.startswith(_API_PATHS):
            return path
        return Path(path.rstrip("/")).name
    return _SERVER_PATH.sub(shorten, text)

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
    task_id: str | None = None  # the Celery task id of the latest queued run (None: the job id)
    domain: str | None = None  # scheduled nowcasts: the radar domain's id (workers/domains.py)
    requeues: int = 0  # runs queued again: resubmitted after failure or dismissal, or a lost worker
    # Ensemble members (1: the deterministic forecast) and their seed; records written before these
    # fields existed read as 1 and 0, so an old job still runs as it always did.
    members: int = 1
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_FIELDS = {f.name for f in dataclasses.fields(JobRecord)}


def _job_key(job_id: str) -> str:
    return f"{KEY_PREFIX}job:{job_id}"


def _index_key(kind: str | None) -> str:
    return f"{KEY_PREFIX}jobs" if kind is None else f"{KEY_PREFIX}jobs:{kind}"


def _owner_key(owner: str) -> str:
    return f"{KEY_PREFIX}jobs:owner:{owner}"


def _domain_key(domain: str) -> str:
    return f"{KEY_PREFIX}jobs:domain:{domain}"


def _lock_key(job_id: str) -> str:
    return f"{KEY_PREFIX}lock:{job_id}"


LEASES_KEY = f"{KEY_PREFIX}leases"


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
for i = 2, #KEYS do redis.call('ZADD', KEYS[i], ARGV[1], ARGV[2]) end
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
    members: int = 1,
    seed: int = 0,
    domain: str | None = None,
    domain_index: bool = False,
) -> tuple[JobRecord, bool]:
    """Create a job record; an existing id returns ``(existing record, False)``.

    ``domain`` names a scheduled nowcast's radar domain; with ``domain_index`` (a domain other than the
    default) the job is listed under its domain's index instead of the kind's, so that the kind's
    index, and so ``/nowcasts``, stays the default domain's.

    ``members`` > 1 asks for an ensemble of that many members drawn from ``seed``.
    """
    now = utc_now_iso()
    if isinstance(slot, dt.datetime):
        slot = _slot_iso(slot)
    record = JobRecord(job_id=job_id, kind=kind, status=status, created=now, updated=now, steps=int(steps),
                       input_path=None if input_path is None else str(input_path),
                       model_version=model_version, slot=slot, owner=owner, message=message,
                       members=int(members), seed=int(seed), domain=domain)
    values = record.to_dict()
    _check_fields(values)
    by_kind = _domain_key(domain) if domain and domain_index else _index_key(kind)
    keys = [_job_key(job_id), _index_key(None), by_kind] + ([_owner_key(owner)] if owner else [])
    created = r.eval(_CREATE, len(keys), *keys, repr(time.time()), job_id, *_encode(values))
    if created:
        return record, True
    existing = get_job(r, job_id=job_id)
    if existing is None:  # deleted between the two calls; extremely unlikely, and then create again
        return create_job(r, job_id=job_id, kind=kind, steps=steps, input_path=input_path,
                          model_version=model_version, slot=slot, owner=owner, status=status, message=message,
                          members=members, seed=seed, domain=domain, domain_index=domain_index)
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
    r: redis.Redis, *, kind: str | None = None, limit: int = 20, offset: int = 0, owner: str | None = None,
    domain: str | None = None,
) -> tuple[list[JobRecord], int]:
    """Records newest first and the total count (of that kind).

    With ``owner``, only what that owner may see: its own jobs and the scheduled nowcasts. With
    ``domain``, the nowcasts of that (non-default) domain's index.
    """
    if kind is not None and kind not in JOB_KINDS:
        raise ValueError(f"kind must be one of {JOB_KINDS}, not {kind!r}")
    if limit < 0 or offset < 0:
        raise ValueError("limit and offset must not be negative")
    if domain is not None:
        indexes = [_domain_key(domain)]
    elif owner is None:
        indexes = [_index_key(kind)]
    else:
        indexes = [key for key, wanted in ((_owner_key(owner), kind != "nowcast"),
                                           (_index_key("nowcast"), kind != "forecast")) if wanted]
    total = sum(int(r.zcard(index)) for index in indexes)
    if limit == 0:
        return [], total
    if len(indexes) == 1:
        ids = [_text(i) for i in r.zrevrange(indexes[0], offset, offset + limit - 1)]
    else:  # two disjoint indexes: merge their newest offset + limit entries by score
        scored = [(score, _text(i)) for index in indexes
                  for i, score in r.zrevrange(index, 0, offset + limit - 1, withscores=True)]
        ids = [i for _, i in sorted(scored, reverse=True)[offset:offset + limit]]
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


# Queue a finished run again under a fresh task id, if its status still allows it. ``attempts`` is
# reset: the new run is a new request, not a continuation.
_REQUEUE = """
local status = cjson.decode(redis.call('HGET', KEYS[1], 'status') or 'null')
local allowed = false
for i = 3, #ARGV - 1 do if status == ARGV[i] then allowed = true end end
if not allowed then return nil end
local requeues = tonumber(redis.call('HGET', KEYS[1], 'requeues') or '0') + 1
local task_id = cjson.encode(ARGV[1] .. '-r' .. requeues)
redis.call('HSET', KEYS[1], 'status', '"accepted"', 'progress', '0', 'message', cjson.encode(ARGV[2]),
           'started', 'null', 'finished', 'null', 'attempts', '0', 'requeues', tostring(requeues),
           'task_id', task_id, 'updated', cjson.encode(ARGV[#ARGV]))
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('HGETALL', KEYS[1])
"""


def requeue_job(
    r: redis.Redis, *, job_id: str, from_statuses: tuple[str, ...], message: str
) -> tuple[JobRecord, str] | None:
    """Set a job whose status is one of ``from_statuses`` back to ``accepted`` under a new task id.

    Returns the record and the task id to send, or None when the status did not allow it (another
    process requeued or finished it first): exactly one caller wins.
    """
    raw = r.eval(_REQUEUE, 2, _job_key(job_id), LEASES_KEY, job_id, message, *from_statuses, utc_now_iso())
    if raw is None:
        return None
    record = _record_from_hash(dict(zip(raw[0::2], raw[1::2], strict=True)))
    return record, str(record.task_id)


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


# --------------------------------------------------------------------------------------- job lease

_HEARTBEAT = """
local held = redis.call('GET', KEYS[1]) == ARGV[1]
if held then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
if held then return 1 end
return 0
"""

# A lost worker's job goes back to the queue only while it is unfinished with its lease run out
# (a lease exists only once a worker started the job), in one step: of several processes reaping
# at once, one requeues it and the others skip it.
_REQUEUE_STALLED = """
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then return nil end
redis.call('ZREM', KEYS[2], ARGV[1])
local status = cjson.decode(redis.call('HGET', KEYS[1], 'status') or 'null')
if status ~= 'running' and status ~= 'accepted' then return nil end
local requeues = tonumber(redis.call('HGET', KEYS[1], 'requeues') or '0') + 1
redis.call('HSET', KEYS[1], 'status', '"accepted"', 'requeues', tostring(requeues),
           'task_id', cjson.encode(ARGV[1] .. '-r' .. requeues), 'message', cjson.encode(ARGV[3]),
           'updated', cjson.encode(ARGV[4]))
redis.call('DEL', KEYS[3])
return redis.call('HGETALL', KEYS[1])
"""


def heartbeat(r: redis.Redis, *, job_id: str, owner: str, lease_s: float) -> bool:
    """Renew a running job's lease, and its lock if ``owner`` still holds it; True when it does."""
    expires = time.time() + lease_s
    return bool(r.eval(_HEARTBEAT, 2, _lock_key(job_id), LEASES_KEY, owner, int(lease_s * 1000),
                       repr(expires), job_id))


def extend_lease(r: redis.Redis, *, job_id: str, seconds: float) -> None:
    """Keep the lease for ``seconds`` without a holder (a retry waiting for its countdown)."""
    r.zadd(LEASES_KEY, {job_id: time.time() + seconds})


def clear_lease(r: redis.Redis, *, job_id: str) -> None:
    r.zrem(LEASES_KEY, job_id)


def requeue_stalled(r: redis.Redis, *, now: float | None = None) -> list[tuple[JobRecord, str]]:
    """Every running job whose lease ran out, set back to ``accepted`` under a new task id.

    Returns (record, task id to send) for each; ``attempts`` is kept, so a job that kills every
    worker it meets still fails after ``max_attempts``.
    """
    now = time.time() if now is None else now
    requeued = []
    for raw_id in r.zrangebyscore(LEASES_KEY, "-inf", now):
        job_id = _text(raw_id)
        raw = r.eval(_REQUEUE_STALLED, 3, _job_key(job_id), LEASES_KEY, _lock_key(job_id), job_id, repr(now),
                     "queued again: its worker stopped renewing the lease", utc_now_iso())
        if raw is not None:
            record = _record_from_hash(dict(zip(raw[0::2], raw[1::2], strict=True)))
            requeued.append((record, str(record.task_id)))
    return requeued


# ---------------------------------------------------------------------------------------- retention


def expired_jobs(r: redis.Redis, *, created_before: float, batch: int = 500) -> list[JobRecord]:
    """Finished jobs created before ``created_before`` (epoch seconds), oldest first."""
    ids = [_text(i) for i in r.zrangebyscore(_index_key(None), "-inf", created_before, start=0, num=batch)]
    records = [get_job(r, job_id=job_id) for job_id in ids]
    return [record for record in records if record is not None and record.status in FINISHED_STATUSES]


def jobs_with_status(r: redis.Redis, *, status: str, batch: int = 1000) -> list[JobRecord]:
    """Among the newest ``batch`` jobs, those with ``status``."""
    records, _ = list_jobs(r, limit=batch)
    return [record for record in records if record.status == status]


def delete_job(r: redis.Redis, *, record: JobRecord) -> None:
    """Remove a job record from the store and every index."""
    with r.pipeline(transaction=True) as pipe:
        pipe.delete(_job_key(record.job_id))
        pipe.zrem(_index_key(None), record.job_id)
        pipe.zrem(_index_key(record.kind), record.job_id)
        if record.domain:
            pipe.zrem(_domain_key(record.domain), record.job_id)
        if record.owner:
            pipe.zrem(_owner_key(record.owner), record.job_id)
        pipe.zrem(LEASES_KEY, record.job_id)
        pipe.execute()


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


def forecast_job_id(input_sha256: str, model_version: str, steps: int, *, owner: str | None = None,
                    members: int = 1, seed: int = 0) -> str:
    """Same input, model, horizon, owner (and ensemble) -> same id, so a resubmission finds the existing job.

    The owner is part of the id so that two keys sending the same scans get separate jobs: neither
    can read, dismiss or learn of the other's. An ensemble's members and seed are too (another seed is
    another forecast); a deterministic job (members 1) keeps the id it always had.
    """
    text = f"{input_sha256}|{model_version}|{int(steps)}" + (f"|{owner}" if owner else "")
    if int(members) > 1:
        text += f"|members={int(members)}|seed={int(seed)}"
    digest = hashlib.sha256(text.encode()).hexdigest()
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

