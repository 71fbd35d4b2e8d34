"""Celery tasks: ``forecast(job_id, input_path, steps)`` on demand, ``nowcast(slot_iso)`` on schedule.

Both run one job through the same steps (docs/workers.md):

1. create the job record if the API has not (a scheduled slot, or a task sent by hand);
2. a job already finished is a no-op that returns the existing result (duplicate delivery);
3. take the per-job Redis lock (SET NX EX); a lock whose holder process is dead on this host is
   taken over, a live holder means "look again later";
4. count the attempt; a job whose earlier attempts all died (worker lost) fails after
   ``max_attempts`` instead of looping;
5. read and validate the input (nowcast: the newest complete sequence ending at the slot, or
   ``skipped`` with the reason), forecast (PredRNN, an ensemble when the record's ``members`` > 1,
   else extrapolation), write the products
   atomically (netCDF, forecast and observed quicklooks), record ``successful`` with the paths,
   the reference time, the model, the cadence and the timings.

Bad input fails at once; transient errors (Redis, disk) are retried with exponential backoff up to
``max_attempts``. Tasks return a small JSON document; arrays never travel through Redis.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from celery import Task
from celery.exceptions import SoftTimeLimitExceeded

from model.io.netcdf import RadarInputError, RadarSequence, file_sha256, read_scans
from workers import clock, jobs, verification
from workers.celery_app import app
from workers.domains import Domain, domain_settings, domains_for
from workers.domains import nowcast_job_id as domain_job_id
from workers.feeds import FeedNotReady, FeedSkip, select_sequence
from workers.heartbeat import Heartbeat
from workers.motion_store import shared_motion
from workers.products import ObservedProducts, remove_partial_files, write_products
from workers.runtime import Forecast, ModelUnavailableError, run_extrapolation, run_forecast
from workers.scan_cache import read_feed_scans
from workers.schedule import slot_for
from workers.settings import WorkerSettings, get_settings
from workers.trigger import trigger_if_landed

log = logging.getLogger(__name__)

FEED_RETRY_S = 30  # how often a late scan is looked for again
MAX_BACKOFF_S = 60.0


class PermanentJobError(Exception):
    """The job cannot succeed by trying again (bad arguments, bad input)."""


class TransientJobError(Exception):
    """Worth another attempt (storage hiccup and the like)."""


TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (TransientJobError, redis.RedisError, OSError)

_CLIENTS: dict[tuple[int, str], redis.Redis] = {}


def redis_client(settings: WorkerSettings) -> redis.Redis:
    """One client per process: a forked child must not share its parent's sockets."""
    key = (os.getpid(), settings.redis_url)
    if key not in _CLIENTS:
        _CLIENTS[key] = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=5, socket_timeout=30,
                                             health_check_interval=30, retry_on_timeout=True)
    return _CLIENTS[key]


def _now() -> dt.datetime:
    """The stack's clock (wall time unless ``nowcast up --speed`` runs a simulated one)."""
    return clock.now(get_settings())


def _pid_alive(pid: int) -> bool:
    """True while ``pid`` runs. A zombie (killed, not yet reaped) does not: it holds nothing any more.

    A worker killed with its parent is reparented and stays a zombie until PID 1 reaps it, which
    can take a while in a container; ``kill(pid, 0)`` still succeeds on it.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # without /proc (not Linux) trust kill(); with it, the process just ended
        return not Path("/proc").is_dir()
    return stat.rpartition(")")[2].split()[0] != "Z"  # the state follows the parenthesised name


def _lock_owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _holder_is_dead(owner: str) -> bool:
    """Only a holder on this host can be checked; a remote holder is trusted until its lock expires."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    return host == socket.gethostname() and pid_text.isdigit() and not _pid_alive(int(pid_text))


def _take_lock(r: redis.Redis, job_id: str, owner: str, ttl_s: int) -> bool:
    if jobs.acquire_lock(r, job_id=job_id, owner=owner, ttl_s=ttl_s):
        return True
    holder = jobs.lock_owner(r, job_id=job_id)
    if holder is not None and _holder_is_dead(holder):
        log.warning("job %s: lock holder %s is dead; taking over", job_id, holder)
        return jobs.steal_lock(r, job_id=job_id, expected_owner=holder, owner=owner, ttl_s=ttl_s)
    # The holder vanished between the two calls: try once more.
    return holder is None and jobs.acquire_lock(r, job_id=job_id, owner=owner, ttl_s=ttl_s)


def summary(record: jobs.JobRecord, *, duplicate: bool = False) -> dict[str, Any]:
    """The task's return value: small JSON, never arrays."""
    netcdf = record.products.get("netcdf") if record.products else None
    return {
        "job_id": record.job_id,
        "status": record.status,
        "message": record.message,
        "output": netcdf,
        "sha256": file_sha256(netcdf) if netcdf and Path(netcdf).is_file() else None,
        "source": record.source,
        "timings": record.timings,
        "attempts": record.attempts,
        "duplicate": duplicate,
    }


def _finished_result(record: jobs.JobRecord) -> dict[str, Any] | None:
    """The no-op answer for a job that needs no work, or None when it must run."""
    if record.status == "successful":
        netcdf = record.products.get("netcdf")
        if netcdf and Path(netcdf).is_file():
            return summary(record, duplicate=True)
        log.warning("job %s: recorded successful but %s is gone; running it again", record.job_id, netcdf)
        return None
    if record.status in ("failed", "skipped", "dismissed"):
        return summary(record, duplicate=True)
    return None


def _backoff(settings: WorkerSettings, attempt: int) -> float:
    return min(MAX_BACKOFF_S, settings.retry_backoff_s * 2 ** max(0, attempt - 1))


Selector = Callable[[], list[Path] | Path]
# (settings, context dBZ (T, H, W), steps, *, members, seed) -> Forecast: the model (with its fallback)
# or extrapolation (which ignores members and seed).
Forecaster = Callable[..., Forecast]
EXTRAPOLATION_VERSION = "extrapolation"  # model_version of extrapolation-stream jobs (no checkpoint)


def run_job(
    task: Task,
    *,
    kind: str,
    job_id: str,
    steps: int,
    input_path: str | None,
    slot: dt.datetime | None,
    select: Selector,
    deadline: dt.datetime | None = None,
    forecaster: Forecaster = run_forecast,
    members: int = 1,
    seed: int = 0,
    settings: WorkerSettings | None = None,
    domain: Domain | None = None,
) -> dict[str, Any]:
    """Run one job end to end (see the module docstring). ``select`` returns the scan file(s).

    ``members`` and ``seed`` go into a record this call creates (a scheduled slot, a task sent by
    hand); a record the API created keeps its own, and the job runs with the record's.
    ``settings`` (default: the process's) and ``domain`` are a scheduled slot's radar domain's
    (workers/domains.py): its feed, checkpoint and cadence, and the domain the job and product name.
    """
    entered = time.perf_counter()  # the job's own timings start here (docs/workers.md, timings)
    settings = settings or get_settings()
    r = redis_client(settings)
    version = EXTRAPOLATION_VERSION if forecaster is run_extrapolation else jobs.model_version(settings.checkpoint)
    record, _ = jobs.create_job(r, job_id=job_id, kind=kind, steps=steps, input_path=input_path,
                                model_version=version, slot=slot, members=members, seed=seed,
                                domain=domain.id if domain else None, domain_index=bool(domain and not domain.default))
    done = _finished_result(record)
    if done is not None:
        log.info("job %s already %s; nothing to do", job_id, record.status)
        return done
    owner = _lock_owner_id()
    # The lock lives as long as the lease and is renewed with it: a lost holder frees it within a lease.
    ttl = settings.lease_s
    if not _take_lock(r, job_id, owner, ttl):
        countdown = min(30, ttl)
        log.info("job %s is being run by %s; looking again in %d s", job_id, jobs.lock_owner(r, job_id=job_id),
                 countdown)
        # Bounded in total: by then the holder has finished, hit its time limit, or lost its lock.
        budget = settings.task_time_limit_s + settings.lease_s
        raise task.retry(countdown=countdown, max_retries=budget // countdown + 2 + settings.max_attempts,
                         exc=TransientJobError(f"job {job_id} locked by another worker"))
    try:
        return _run_locked(task, settings, r, job_id=job_id, steps=steps, select=select, deadline=deadline,
                           lock=owner, forecaster=forecaster, domain=domain.id if domain else None,
                           entered=entered)
    finally:
        try:
            jobs.release_lock(r, job_id=job_id, owner=owner)
        except redis.RedisError:  # the lock expires by itself
            log.warning("job %s: could not release the lock", job_id)


def _run_locked(
    task: Task, settings: WorkerSettings, r: redis.Redis, *, job_id: str, steps: int, select: Selector,
    deadline: dt.datetime | None, lock: str, forecaster: Forecaster, domain: str | None = None,
    entered: float | None = None,
) -> dict[str, Any]:
    entered = time.perf_counter() if entered is None else entered
    record = jobs.get_job(r, job_id=job_id)
    if record is None:
        raise TransientJobError(f"job {job_id} vanished from the store")
    done = _finished_result(record)  # another worker may have finished it while we waited
    if done is not None:
        return done
    selecting = time.perf_counter()
    try:
        files = select()
    except FeedNotReady as exc:
        if deadline is not None and _now() + dt.timedelta(seconds=FEED_RETRY_S) < deadline:
            jobs.update_job(r, job_id=job_id, message=f"waiting: {exc}")
            countdown = max(1.0, clock.seconds(settings, FEED_RETRY_S))  # FEED_RETRY_S on the stack's clock
            raise task.retry(countdown=countdown, max_retries=task.request.retries + 1, exc=exc) from exc
        return _finish(r, job_id, status="skipped", message=f"{exc}; not there by {deadline:%H:%M:%SZ}")
    except FeedSkip as exc:
        return _finish(r, job_id, status="skipped", message=str(exc))
    stages = {"select": time.perf_counter() - selecting}

    # Every delivery that starts work counts, including those after a lost worker (a record left
    # "running", or requeued by its lease); a new submission starts again from 0 (jobs.requeue_job).
    attempts = jobs.increment_attempts(r, job_id=job_id)
    if attempts > settings.max_attempts:
        return _fail(settings, r, job_id, message=(
            f"gave up after {settings.max_attempts} attempts; the earlier ones ended without a result "
            "(worker lost or killed)"), attempts=attempts)
    product_dir = settings.product_dir(job_id)
    for partial in remove_partial_files(product_dir):
        log.warning("job %s: removed %s left by an interrupted attempt", job_id, partial.name)
    # The lease starts before the status says "running": a worker lost right after this line
    # still leaves a lease to run out.
    jobs.heartbeat(r, job_id=job_id, owner=lock, lease_s=settings.lease_s)
    jobs.update_job(r, job_id=job_id, status="running", attempts=attempts, progress=5,
                    started=record.started or jobs.utc_now_iso(), finished=None, message="reading input")
    try:
        with Heartbeat(r, job_id=job_id, owner=lock, lease_s=settings.lease_s):
            stages["bookkeeping_start"] = time.perf_counter() - entered - stages["select"]
            return _forecast_and_write(settings, r, job_id=job_id, steps=steps, files=files,
                                       forecaster=forecaster, members=record.members, seed=record.seed,
                                       domain=domain, entered=entered, stages=stages)
    except (RadarInputError, PermanentJobError, ModelUnavailableError) as exc:
        return _fail(settings, r, job_id, message=str(exc))
    except SoftTimeLimitExceeded:
        return _fail(settings, r, job_id, message=f"time limit of {settings.task_soft_time_limit_s} s exceeded")
    except TRANSIENT_ERRORS as exc:
        reason = f"{exc.__class__.__name__}: {exc}"
        if attempts >= settings.max_attempts:
            return _fail(settings, r, job_id, message=f"{reason} (after {attempts} attempts)")
        countdown = _backoff(settings, attempts)
        log.warning("job %s attempt %d: %s; retrying in %.1f s", job_id, attempts, reason, countdown)
        try:
            jobs.update_job(r, job_id=job_id, message=f"attempt {attempts} failed ({reason}); retrying")
            # The retry waits in this worker for its countdown: the lease must outlast that wait.
            jobs.extend_lease(r, job_id=job_id, seconds=countdown + settings.lease_s)
        except redis.RedisError:
            pass
        raise task.retry(countdown=countdown, max_retries=task.request.retries + 1, exc=exc) from exc
    except Exception as exc:  # an unexpected bug: fail once, loudly, rather than burn attempts on it
        log.exception("job %s failed", job_id)
        return _fail(settings, r, job_id, message=f"internal error: {exc.__class__.__name__}: {exc}")


def _fail(settings: WorkerSettings, r: redis.Redis, job_id: str, *, message: str, **fields: Any) -> dict[str, Any]:
    """Record a failure and remove whatever product the failed attempt wrote: a failed job has none."""
    product_dir = settings.product_dir(job_id)
    if product_dir.exists():
        shutil.rmtree(product_dir, ignore_errors=True)
        log.warning("job %s: removed the partial product of the failed attempt", job_id)
    public = jobs.public_message(message)
    if public != message:  # the operator's log keeps the paths the job's readers are not shown
        # Worded apart from _finish's "job ... failed" line: each job's end is logged once.
        log.warning("job %s, failure in full: %s", job_id, message)
    return _finish(r, job_id, status="failed", message=public, **fields)


def _finish(r: redis.Redis, job_id: str, *, status: str, message: str, **fields: Any) -> dict[str, Any]:
    current = jobs.get_job(r, job_id=job_id)
    if current is not None and current.status == "dismissed":  # the client gave up on it meanwhile
        log.info("job %s was dismissed while it ran; its result is not recorded", job_id)
        jobs.clear_lease(r, job_id=job_id)
        return summary(current)
    log.log(logging.INFO if status == "successful" else logging.WARNING, "job %s %s: %s", job_id, status, message)
    record = jobs.update_job(r, job_id=job_id, status=status, message=message, finished=jobs.utc_now_iso(),
                             **fields)
    jobs.clear_lease(r, job_id=job_id)
    return summary(record)


def _forecast_and_write(
    settings: WorkerSettings, r: redis.Redis, *, job_id: str, steps: int, files: list[Path] | Path,
    forecaster: Forecaster = run_forecast, members: int = 1, seed: int = 0, domain: str | None = None,
    entered: float | None = None, stages: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Read, forecast, write the products and record the job successful, with its ``timings`` (seconds).

    ``timings``: ``read`` (read and validate the scans), the forecaster's stages (``model_load``,
    ``inference``, ``network``, ``lagrangian_*``), the products' (``write_*``, workers/products.py),
    ``write`` (all products), ``total`` (read to products written), and the job's own:
    ``bookkeeping_start`` (record, lock, attempts, lease before the input is read), ``select``
    (finding the scans), ``record_updates`` (progress updates while it runs), ``job`` (from the
    task's start to the final record write, which is the one thing it leaves out).
    """
    if not 1 <= steps <= settings.max_lead_steps:
        raise PermanentJobError(f"steps must be within 1-{settings.max_lead_steps}, got {steps}")
    members, seed = _ensemble_of(members, seed)
    started = time.perf_counter()
    entered = started if entered is None else entered
    timings: dict[str, float] = dict(stages or {})
    updating = 0.0  # seconds spent on progress updates of the record

    def progress(**fields: Any) -> None:
        nonlocal updating
        begun = time.perf_counter()
        jobs.update_job(r, job_id=job_id, **fields)
        updating += time.perf_counter() - begun

    if isinstance(files, Path) and not files.exists():
        # Housekeeping removes inputs after the retention period; say so in the user's terms.
        raise PermanentJobError("the uploaded scans of this job are no longer on the server; submit them again")
    # A feed's scans are decoded once per worker process (workers/scan_cache.py); an upload is read as it is.
    reader = read_feed_scans if isinstance(files, list) else read_scans
    sequence: RadarSequence = reader(files, timestep_minutes=settings.timestep_minutes,
                                     min_scans=settings.input_scans, max_grid=settings.max_grid)
    sequence = sequence.tail(settings.input_scans)
    timings["read"] = time.perf_counter() - started
    product_dir = settings.product_dir(job_id)
    # The observed products need only the scans: they are written on a thread while the model runs
    # (leaving the block waits for it, so a failed job's directory is removed after its last write).
    with ObservedProducts(product_dir, sequence, quicklooks=settings.quicklooks) as observed:
        if members > 1:
            progress(progress=20, message=f"forecasting {members} ensemble members")
            forecast = forecaster(settings, sequence.dbz, steps, members=members, seed=seed)
        else:  # the deterministic call, as before ensembles
            progress(progress=20, message="forecasting")
            forecast = forecaster(settings, sequence.dbz, steps)
        timings.update(forecast.timings)
        progress(progress=80, message="writing products", source=forecast.source)
        lead_minutes = [float(settings.timestep_minutes * (k + 1)) for k in range(steps)]
        written = time.perf_counter()
        products = write_products(product_dir, forecast, sequence, lead_minutes=lead_minutes,
                                  quicklooks=settings.quicklooks, timings=timings, observed=observed,
                                  extra_attrs={"job_id": job_id, **({"domain": domain} if domain else {})})
        timings["write"] = time.perf_counter() - written
    timings["total"] = time.perf_counter() - started
    timings["record_updates"] = updating
    message = "forecast written"
    if forecast.fallback_reason:
        message = f"forecast written by extrapolation fallback ({forecast.fallback_reason})"
    reference = sequence.times[-1].astype(dt.datetime).replace(tzinfo=dt.UTC)
    timings["job"] = time.perf_counter() - entered
    return _finish(r, job_id, status="successful", message=message, progress=100, products=products,
                   source=forecast.source, model=forecast.model_name, model_frame=forecast.frame,
                   timestep_minutes=settings.timestep_minutes,
                   reference_time=reference.strftime("%Y-%m-%dT%H:%M:%SZ"),
                   timings={k: round(v, 4) for k, v in timings.items()})


def _ensemble_of(members: Any, seed: Any) -> tuple[int, int]:
    """The record's (members, seed) checked: a bad value fails the job at once with the reason."""
    from model.ensemble import check_members

    try:
        members = check_members(members)
    except ValueError as exc:
        raise PermanentJobError(f"ensemble {exc}") from exc
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise PermanentJobError(f"ensemble seed must be a whole number from 0 to 2^63 - 1, got {seed!r}")
    return members, seed


def slot_seed(slot: dt.datetime) -> int:
    """The seed of a scheduled ensemble: minutes since 1970 of the slot (UTC), the same on every rerun."""
    return int(slot.astimezone(dt.UTC).timestamp()) // 60


# ------------------------------------------------------------------------------------------- tasks


@app.task(bind=True, name="workers.tasks.forecast")
def forecast(self: Task, job_id: str, input_path: str, steps: int) -> dict[str, Any]:
    """On-demand forecast of the scans at ``input_path`` (a file or a directory), ``steps`` ahead."""
    return run_job(self, kind="forecast", job_id=job_id, steps=int(steps), input_path=str(input_path),
                   slot=None, select=lambda: Path(input_path))


def parse_slot(slot_iso: str, timestep_minutes: int) -> dt.datetime:
    """An ISO-8601 scan time on the cadence grid (naive means UTC)."""
    try:
        slot = dt.datetime.fromisoformat(slot_iso)
    except ValueError as exc:
        raise PermanentJobError(f"slot {slot_iso!r} is not an ISO-8601 time") from exc
    slot = slot.replace(tzinfo=dt.UTC) if slot.tzinfo is None else slot.astimezone(dt.UTC)
    if slot.second or slot.microsecond or slot.minute % timestep_minutes:
        raise PermanentJobError(f"slot {slot_iso!r} is not on the {timestep_minutes}-minute scan grid")
    return slot


@app.task(bind=True, name="workers.tasks.nowcast")
def nowcast(self: Task, slot_iso: str | None = None, domain: str | None = None) -> dict[str, Any]:
    """The model's scheduled nowcast of one slot of ``domain`` (None: the default domain); beat sends no
    slot and the slot follows from the clock."""
    return _scheduled(self, slot_iso, stream=jobs.MODEL_STREAM, forecaster=run_forecast, domain_id=domain)


@app.task(bind=True, name="workers.tasks.nowcast_extrapolation")
def nowcast_extrapolation(self: Task, slot_iso: str | None = None, domain: str | None = None) -> dict[str, Any]:
    """The extrapolation nowcast of the same slot (cpu queue), job ``nowcast-<slot>-extrapolation``.

    A job of its own rather than a second product of the model's job: it needs no GPU, so it does
    not hold the inference worker, it exists even when the model's job fails, and the same
    create / lock / finished-is-a-no-op path makes it exactly once per slot.
    """
    return _scheduled(self, slot_iso, stream=jobs.EXTRAPOLATION_STREAM, forecaster=run_extrapolation,
                      domain_id=domain)


def _scheduled(task: Task, slot_iso: str | None, *, stream: str, forecaster: Forecaster,
               domain_id: str | None = None) -> dict[str, Any]:
    known = domains_for(get_settings())
    domain = known.get(domain_id)
    if domain is None:  # a domain dropped from the file while its trigger was queued
        raise PermanentJobError(f"no domain {domain_id!r} in the domains file ({', '.join(d.id for d in known)})")
    settings = domain_settings(get_settings(), domain)
    if slot_iso is None:
        slot = slot_for(_now(), timestep_minutes=settings.timestep_minutes,
                        latency_offset_minutes=settings.latency_offset_minutes)
    else:
        slot = parse_slot(slot_iso, settings.timestep_minutes)
    # Past this, the next slot's run is due: a scan that is still missing is skipped, not awaited.
    deadline = slot + dt.timedelta(minutes=settings.timestep_minutes, seconds=-60)

    def select() -> list[Path]:
        selection = select_sequence(settings.feed_dir, slot=slot, input_scans=settings.input_scans,
                                    timestep_minutes=settings.timestep_minutes,
                                    stale_after_minutes=settings.stale_after_minutes)
        return selection.paths

    # Only the model's stream is an ensemble; the extrapolation baseline stays deterministic.
    members = settings.members if stream == jobs.MODEL_STREAM else 1
    # The slot's model and extrapolation jobs share one Lucas-Kanade field (workers/motion_store.py).
    with shared_motion(settings, scope=f"{domain.id}-{slot:%Y%m%dT%H%MZ}"):
        return run_job(task, kind="nowcast", job_id=domain_job_id(domain, slot, stream), steps=settings.lead_steps,
                       input_path=str(settings.feed_dir), slot=slot, select=select, deadline=deadline,
                       forecaster=forecaster, members=members, seed=slot_seed(slot) if members > 1 else 0,
                       settings=settings, domain=domain)


VERIFY_LOCK = "verification-sweep"  # one sweep at a time (a second one would only find the work done)


@app.task(bind=True, name="workers.tasks.verify")
def verify(self: Task) -> dict[str, Any]:
    """Beat's verification sweep (cpu queue): score every product whose valid-time scans arrived."""
    settings = get_settings()
    r = redis_client(settings)
    owner = _lock_owner_id()
    if not _take_lock(r, VERIFY_LOCK, owner, settings.task_time_limit_s + 30):
        return {"skipped": "another verification sweep is running"}
    try:
        return verification.sweep(settings, r, now=_now())
    finally:
        try:
            jobs.release_lock(r, job_id=VERIFY_LOCK, owner=owner)
        except redis.RedisError:  # the lock expires by itself
            log.warning("could not release the verification lock")


@app.task(name="workers.tasks.watch_feed", ignore_result=True)
def watch_feed() -> dict[str, Any]:
    """Beat's frequent check: send the current slot's nowcasts once its scan is in the feed (workers/trigger.py)."""
    settings = get_settings()
    r = redis_client(settings)
    results: dict[str, Any] = {}
    for domain in domains_for(settings):
        kwargs = {} if domain.default else {"domain": domain.id}

        def send(slot_iso: str, expires: int, domain: Domain = domain, kwargs: dict[str, str] = kwargs) -> None:
            nowcast.apply_async(args=[slot_iso], kwargs=kwargs, queue=domain.queue, expires=expires)
            nowcast_extrapolation.apply_async(args=[slot_iso], kwargs=kwargs, queue=domain.extrapolation_queue,
                                              expires=expires)

        try:  # one domain's unreadable feed holds up no other domain's slot
            results[domain.id] = trigger_if_landed(domain_settings(settings, domain), r, send, _now(),
                                                   job_id_of=lambda slot, domain=domain: domain_job_id(domain, slot))
        except OSError as exc:
            log.warning("domain %s: feed check failed: %s", domain.id, exc)
            results[domain.id] = {"sent": False, "reason": f"{exc.__class__.__name__}: {exc}"}
    # One domain answers as before (the tests and logs read its result directly).
    return next(iter(results.values())) if len(results) == 1 else results
