"""Forecast submission: validate a radar sequence, store it, create the job, enqueue it by name.

Both inputs end in the same place. Multipart netCDF files are staged under
``data_dir/inputs/.staging-<uuid>/`` and validated with :func:`model.io.netcdf.read_scans` (xarray,
no torch); JSON frames are written there as CF scans with :func:`model.io.netcdf.write_scans` and
validated by the same reader, so both kinds of input obey the same rules (cadence, no all-NaN scan,
at least ``input_scans`` scans, grid at most ``max_grid``). Only then is the job id computed:

    job_id = workers.jobs.forecast_job_id(sha256(canonical sequence), model_version, steps,
                                          owner=owner, members=members, seed=seed)

(``members`` > 1 asks for an ensemble drawn from ``seed``; both are checked before anything is
staged, and a deterministic job's seed is 0, since it draws nothing) where the canonical sequence is
the decoded content (times, dBZ values, grid), so the same scans
sent as one file, as several files or as JSON give the same job. The staging directory is renamed
to ``data_dir/inputs/<job_id>/`` (atomic) and the task sent with
``send_task("workers.tasks.forecast", args=[job_id, input_path, steps], task_id=job_id, queue=gpu)``.

Any rejected input removes its staging directory: a bad request leaves no job and no file.
Resubmitting an input whose job exists returns that job (``created=False``); a ``failed`` job is
queued again, so a transient failure can be retried by sending the same input.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import xarray as xr
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse

from model.io import netcdf
from model.io.units import rainrate_to_dbz
from model.members import MAX_MEMBERS
from service.logs import set_job_id
from service.problems import Problem, problem_openapi
from service.representations import NETCDF_LOCK
from service.schemas import ForecastJSONRequest, StatusInfo, check_members_value, check_seed_value
from service.settings import ApiSettings
from service.views import root, status_info
from workers import jobs

logger = logging.getLogger(__name__)

FORECAST_TASK = "workers.tasks.forecast"
MAX_UPLOAD_FILES = 200
# Statuses from which sending the same input again queues a new run.
REQUEUEABLE = ("failed", "dismissed")
# JSON nesting deeper than this is refused before parsing: frames need three levels, a request five.
MAX_JSON_DEPTH = 32
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_OPENING = np.frombuffer(b"[{", dtype=np.uint8)
_CLOSING = np.frombuffer(b"]}", dtype=np.uint8)
# Magic numbers of netCDF classic (CDF\x01), 64-bit offset (\x02), CDF-5 (\x05) and netCDF-4/HDF5.
_NETCDF_MAGIC = (b"CDF\x01", b"CDF\x02", b"CDF\x05", b"\x89HDF\r\n\x1a\n")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")

SUBMISSION_ERRORS: dict[int | str, dict[str, Any]] = {
    401: problem_openapi("Missing or wrong X-API-Key", "api-key-invalid", 401),
    413: problem_openapi("Request body too large", "body-too-large", 413),
    415: problem_openapi("Neither multipart/form-data nor application/json", "unsupported-media-type", 415),
    422: problem_openapi("The input is not a usable radar sequence", "too-few-scans", 422),
    503: problem_openapi("The queue (Redis) is unavailable", "queue-unavailable", 503),
}

# Every endpoint that submits a forecast job (POST /forecast, the OGC execution) answers alike.
SUBMISSION_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": StatusInfo, "description": "The same input was submitted before: the existing job"},
    201: {
        "description": "Job created and queued; `Location` points at its status",
        "headers": {"Location": {"schema": {"type": "string"}, "description": "/jobs/{jobID}"}},
    },
    **SUBMISSION_ERRORS,
}

_ERROR_CODES: dict[type[netcdf.RadarInputError], str] = {
    netcdf.NotNetCDFError: "not-netcdf",
    netcdf.MissingVariableError: "missing-variable",
    netcdf.UnitsError: "bad-units",
    netcdf.CadenceError: "uneven-cadence",
    netcdf.DuplicateScanError: "duplicate-scan",
    netcdf.MissingScanError: "missing-scan",
    netcdf.GridMismatchError: "grid-mismatch",
    netcdf.AllNaNScanError: "all-nan-scan",
    netcdf.TooFewScansError: "too-few-scans",
    netcdf.GridTooLargeError: "grid-too-large",
    netcdf.TooManyScansError: "too-many-scans",
    netcdf.ImplausibleValueError: "implausible-value",
    netcdf.GridAxisError: "bad-grid-axis",
    netcdf.TimeRangeError: "time-out-of-range",
}


# ------------------------------------------------------------------------------------ model version


def current_model_version(checkpoint: Path) -> str:
    """The checkpoint's sha256 (cached by the job store on path, size and mtime).

    Without a checkpoint file this is ``workers.jobs.NO_CHECKPOINT``: the job is still accepted and
    the worker runs its extrapolation fallback, recording ``source`` in the job (``/readyz`` reports
    the missing checkpoint).
    """
    return jobs.model_version(checkpoint)


# --------------------------------------------------------------------------------------- validation


def check_steps(steps: int | None, settings: ApiSettings) -> int:
    """The number of lead times, defaulting to ``lead_steps``; 422 outside ``1..max_lead_steps``."""
    if steps is None:
        return min(settings.lead_steps, settings.max_lead_steps)
    if not 1 <= steps <= settings.max_lead_steps:
        raise Problem(
            422,
            "invalid-steps",
            f"steps must be between 1 and {settings.max_lead_steps}, got {steps}",
            field="steps",
        )
    return steps


def check_ensemble(members: Any, seed: Any) -> tuple[int, int]:
    """(members, seed) with their defaults (1, 0); 422 naming the field and its range otherwise.

    A single member draws no random numbers, so its seed is 0 whatever was sent: the same input gives
    the same deterministic job.
    """
    members = 1 if members is None else members
    seed = 0 if seed is None else seed
    for name, check, value in (("members", check_members_value, members), ("seed", check_seed_value, seed)):
        try:
            check(value)
        except ValueError as exc:
            raise Problem(422, f"invalid-{name}", str(exc), field=name) from exc
    return int(members), int(seed) if int(members) > 1 else 0


def _form_integer(form: Any, name: str, pattern: str) -> int | None:
    """An integer form field given at most once, ASCII digits only; None when absent."""
    raw = form.getlist(name)
    if len(raw) > 1 or (raw and not isinstance(raw[0], str)):
        raise Problem(422, f"invalid-{name}", f"{name} must be given once, as an integer", field=name)
    if not raw:
        return None
    text = str(raw[0])
    # ASCII digits only: str.isdigit and \d also take other scripts' digits, and int() spaces.
    if not re.fullmatch(pattern, text):
        ranges = {"members": f" from 1 to {MAX_MEMBERS}", "seed": " from 0 to 2^63-1"}
        what = f"a whole number{ranges[name]}" if name in ranges else "an integer"
        raise Problem(422, f"invalid-{name}", f"{name} must be {what}, got {text[:40]!r}", field=name)
    return int(text)


def _problem_from(error: netcdf.RadarInputError, names: dict[str, str]) -> Problem:
    """A 422 naming the client's file instead of our staging path.

    Messages start with the offending file and may name a second one (the scan it conflicts with),
    so the culprit is the file named first.
    """
    message = str(error)
    positions = sorted((message.find(staged), staged) for staged in names if staged in message)
    culprit = names[positions[0][1]] if positions else None
    for staged, shown in sorted(names.items(), key=lambda item: -len(item[0])):
        message = message.replace(staged, shown)
    for staged_dir in {str(Path(s).parent) for s in names}:
        message = message.replace(staged_dir + os.sep, "").replace(staged_dir, "the upload")
    code = _ERROR_CODES.get(type(error), "invalid-radar-input")
    return Problem(422, code, message, field="file", file=culprit)


def read_sequence(directory: Path, names: dict[str, str], settings: ApiSettings) -> netcdf.RadarSequence:
    """Read and validate the staged scans; every problem becomes a 422 naming the file."""
    try:
        return netcdf.read_scans(
            directory,
            timestep_minutes=settings.timestep_minutes,
            min_scans=settings.input_scans,
            max_grid=settings.max_grid,
            max_scans=settings.max_scans,
        )
    except netcdf.RadarInputError as error:
        raise _problem_from(error, names) from error


def sequence_sha256(sequence: netcdf.RadarSequence) -> str:
    """Digest of the decoded content: times, dBZ values (NaN canonical) and the grid."""
    digest = hashlib.sha256()
    dbz = np.where(np.isnan(sequence.dbz), np.float32(np.nan), sequence.dbz).astype("<f4")
    digest.update(repr(dbz.shape).encode())
    digest.update(dbz.tobytes())
    digest.update(sequence.times.astype("datetime64[s]").astype("<i8").tobytes())
    for axis in (sequence.x, sequence.y, sequence.lat, sequence.lon):
        digest.update(b"-" if axis is None else np.asarray(axis, dtype="<f8").tobytes())
    digest.update(json.dumps(sequence.grid_mapping, sort_keys=True, default=str).encode())
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------ staging


def new_staging_dir(settings: ApiSettings) -> Path:
    inputs = Path(settings.data_dir) / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    staging = inputs / f".staging-{uuid.uuid4().hex}"
    staging.mkdir()
    return staging


def _safe_name(index: int, filename: str | None) -> str:
    base = _UNSAFE.sub("_", Path(filename or "upload").name)[:100].strip("._") or "upload"
    return f"{index:03d}_{base}" + ("" if base.endswith(".nc") else ".nc")


def stage_upload(staging: Path, index: int, filename: str | None, source: BinaryIO) -> tuple[Path, str]:
    """Copy one uploaded file into ``staging``; 422 ``not-netcdf`` when its bytes are not netCDF."""
    shown = Path(filename or f"file #{index + 1}").name
    target = staging / _safe_name(index, filename)
    source.seek(0)
    with open(target, "wb") as handle:
        shutil.copyfileobj(source, handle, length=1 << 20)
    with open(target, "rb") as handle:
        head = handle.read(8)
    if not head.startswith(_NETCDF_MAGIC):
        raise Problem(422, "not-netcdf", f"{shown}: not a netCDF file", field="file", file=shown)
    return target, shown


def json_frames_to_dbz(request: ForecastJSONRequest) -> np.ndarray:
    """(T, H, W) dBZ float32 from the JSON frames; null is no data; rain rates via Marshall-Palmer."""
    values = np.array(
        [[[np.nan if v is None else v for v in row] for row in frame] for frame in request.frames],
        dtype=np.float64,
    )
    if np.isinf(values).any():
        index = tuple(int(i) for i in np.argwhere(np.isinf(values))[0])
        raise Problem(422, "invalid-value", f"frames{list(index)} is infinite; use null for no data", field="frames")
    if request.units == "mm/h":
        if np.nanmin(values, initial=0.0) < 0:
            raise Problem(422, "bad-units", "frames hold negative rain rates", field="frames")
        try:
            netcdf.check_plausible_rain_rate(values, "frames")
        except netcdf.ImplausibleValueError as exc:
            raise Problem(422, "implausible-value", str(exc), field="frames") from exc
        with np.errstate(divide="ignore", invalid="ignore"):
            dbz = rainrate_to_dbz(values)
        values = np.where(np.isnan(values), np.nan, np.maximum(dbz, netcdf.RAIN_FLOOR_DBZ))
    return values.astype(np.float32)


def json_times(request: ForecastJSONRequest, step_minutes: int, now: dt.datetime) -> list[dt.datetime]:
    """The frames' scan times: as given, else ending at ``now`` floored to the cadence."""
    if request.times is not None:
        return list(request.times)
    step = dt.timedelta(minutes=step_minutes)
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    last = epoch + ((now - epoch) // step) * step
    count = len(request.frames)
    return [last - (count - 1 - i) * step for i in range(count)]


def write_input_file(path: Path, dbz: np.ndarray, times: list[dt.datetime], grid: netcdf.Grid) -> None:
    """The JSON frames as one CF file with a time axis (one write: ten times faster than one file per
    scan, which matters because netCDF I/O is serialised in the API)."""
    stamps = np.array([np.datetime64(t.astimezone(dt.UTC).replace(tzinfo=None), "s") for t in times])
    attrs = {"standard_name": "equivalent_reflectivity_factor", "units": "dBZ"}
    data_vars: dict[str, Any] = {}
    if grid.grid_mapping:
        attrs["grid_mapping"] = "crs"
        data_vars["crs"] = ((), np.int32(0), dict(grid.grid_mapping))
    data_vars["reflectivity"] = (("time", grid.y_name, grid.x_name), dbz, attrs)
    coords = {
        "time": ("time", stamps, {"standard_name": "time"}),
        grid.y_name: (grid.y_name, grid.y, grid.y_attrs),
        grid.x_name: (grid.x_name, grid.x, grid.x_attrs),
    }
    encoding = {
        "reflectivity": {"dtype": "float32", "zlib": True, "_FillValue": netcdf.FILL_VALUE},
        "time": {"units": "seconds since 1970-01-01 00:00:00", "calendar": "standard", "dtype": "int64"},
    }
    dataset = xr.Dataset(data_vars, coords=coords, attrs={"Conventions": "CF-1.8", "source": "API JSON input"})
    dataset.to_netcdf(path, engine=netcdf.ENGINE, format="NETCDF4", encoding=encoding)


def stage_json(staging: Path, request: ForecastJSONRequest, settings: ApiSettings) -> dict[str, str]:
    """Write the JSON frames into ``staging/input.nc``; returns ``{scan time (ISO, minutes): "frames[i]"}``."""
    if request.timestep_minutes != settings.timestep_minutes:
        raise Problem(
            422,
            "uneven-cadence",
            f"timestep_minutes is {request.timestep_minutes}; this service runs at {settings.timestep_minutes}",
            field="timestep_minutes",
        )
    count, height, width = request.shape
    if count > settings.max_scans:
        raise Problem(
            422,
            "too-many-scans",
            f"{count} frames; at most {settings.max_scans} scans are accepted per request",
            field="frames",
        )
    if max(height, width) > settings.max_grid:
        raise Problem(
            422,
            "grid-too-large",
            f"grid {height}x{width} exceeds the maximum side {settings.max_grid}",
            field="shape",
        )
    dbz = json_frames_to_dbz(request)
    times = json_times(request, settings.timestep_minutes, dt.datetime.now(dt.UTC))
    if request.grid is not None:
        grid = netcdf.grid_from_xy(
            np.asarray(request.grid.x), np.asarray(request.grid.y), dict(request.grid.grid_mapping)
        )
    else:
        # No grid given: 1 km pixels from the origin, no projection.
        grid = netcdf.grid_from_xy(np.arange(width) * 1000.0, np.arange(height) * 1000.0)
    try:
        write_input_file(staging / "input.nc", dbz, times, grid)
    except (ValueError, OSError) as exc:
        raise Problem(422, "invalid-request", f"frames cannot be stored as netCDF: {exc}", field="frames") from exc
    return {f"{t.astimezone(dt.UTC):%Y-%m-%dT%H:%M}Z": f"frames[{i}]" for i, t in enumerate(times)}


def _frame_of(problem: Problem, frames_by_time: dict[str, str]) -> Problem:
    """Point a validation problem of JSON input at the first frame its message names."""
    positions = [(problem.detail.find(stamp), field) for stamp, field in frames_by_time.items()]
    named = sorted((pos, field) for pos, field in positions if pos >= 0)
    problem.field = named[0][1] if named else "frames"
    problem.file = None
    problem.detail = problem.detail.replace("input.nc: ", "frames: ").replace("input.nc", "frames")
    return problem


# ---------------------------------------------------------------------------------------- enqueueing


def enqueue(
    staging: Path,
    sequence: netcdf.RadarSequence,
    *,
    steps: int,
    model_version: str,
    settings: ApiSettings,
    store: Any,
    celery: Any,
    owner: str | None = None,
    members: int = 1,
    seed: int = 0,
) -> tuple[Any, bool]:
    """Create (or find) the job of a validated, staged sequence and send its task.

    The job id covers the owner, so one key never receives, or learns of, another key's job. A
    ``failed`` or ``dismissed`` job is queued again under a fresh task id: workers remember revoked
    ids and would drop a message that reused the dismissed one.

    Returns
    -------
    (record, created) : the ``workers.jobs.JobRecord`` and whether a run was queued by this call.
    """
    job_id = jobs.forecast_job_id(sequence_sha256(sequence), model_version, steps, owner=owner,
                                  members=members, seed=seed)
    set_job_id(job_id)
    existing = jobs.get_job(store, job_id=job_id)
    if existing is not None and existing.status not in REQUEUEABLE:
        logger.info("input already submitted; returning job %s (%s)", job_id, existing.status)
        return existing, False
    target = Path(settings.data_dir) / "inputs" / job_id
    if not target.exists():
        try:
            os.replace(staging, target)
        except OSError:
            if not target.exists():  # a concurrent identical submission may have won the rename
                raise
    if existing is None:
        record, created = jobs.create_job(
            store,
            job_id=job_id,
            kind="forecast",
            steps=steps,
            input_path=str(target),
            model_version=model_version,
            owner=owner,
            members=members,
            seed=seed,
        )
        if not created:
            return record, False
        task_id = job_id
    else:
        requeued = jobs.requeue_job(
            store, job_id=job_id, from_statuses=REQUEUEABLE, message=f"queued again after {existing.status}"
        )
        if requeued is None:  # a concurrent resubmission queued it first
            return jobs.get_job(store, job_id=job_id), False
        record, task_id = requeued
    try:
        celery.send_task(
            FORECAST_TASK, args=[job_id, str(target), steps], task_id=task_id, queue=settings.inference_queue
        )
    except Exception as exc:  # kombu raises OperationalError and friends when the broker is down
        jobs.update_job(store, job_id=job_id, status="failed", message=f"could not be queued: {exc}")
        raise Problem(
            503,
            "queue-unavailable",
            "the job could not be queued; send the same input again",
            headers={"Retry-After": str(settings.retry_after_seconds)},
        ) from exc
    logger.info("queued forecast %s (%d steps, %d members)", job_id, steps, members)
    return record, True


# ------------------------------------------------------------------------------------ request entry


def _validate_and_enqueue(
    stage_and_read: Callable[[Path], Any],
    steps: int,
    settings: ApiSettings,
    store: Any,
    celery: Any,
    owner: str | None,
    ensemble: tuple[int, int] = (1, 0),
) -> tuple[Any, bool]:
    """Stage the input in a fresh directory, read it back as a validated sequence, enqueue it.

    ``stage_and_read(staging)`` writes the request's scans under ``staging`` and returns
    ``read_sequence``'s result; a Problem it raises rejects the request. The staging directory
    never outlives the call: ``enqueue`` moves what it keeps to the job's own directory.
    """
    model_version = current_model_version(Path(settings.checkpoint))
    staging = new_staging_dir(settings)
    try:
        sequence = stage_and_read(staging)
        return enqueue(
            staging,
            sequence,
            steps=steps,
            model_version=model_version,
            settings=settings,
            store=store,
            celery=celery,
            owner=owner,
            members=ensemble[0],
            seed=ensemble[1],
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _json_stager(request: ForecastJSONRequest, settings: ApiSettings) -> Callable[[Path], Any]:
    def stage_and_read(staging: Path) -> Any:
        with NETCDF_LOCK:
            frames_by_time = stage_json(staging, request, settings)
            try:
                return read_sequence(staging, {str(staging / "input.nc"): "input.nc"}, settings)
            except Problem as problem:
                raise _frame_of(problem, frames_by_time) from problem

    return stage_and_read


def _upload_stager(uploads: list[tuple[str | None, BinaryIO]], settings: ApiSettings) -> Callable[[Path], Any]:
    def stage_and_read(staging: Path) -> Any:
        names: dict[str, str] = {}
        for index, (filename, source) in enumerate(uploads):
            staged, shown = stage_upload(staging, index, filename, source)
            names[str(staged)] = shown
        with NETCDF_LOCK:
            return read_sequence(staging, names, settings)

    return stage_and_read


async def read_json_body(request: Request, settings: ApiSettings) -> bytes:
    body = await request.body()
    if len(body) > settings.max_json_request_bytes:
        raise Problem(
            413,
            "body-too-large",
            f"a JSON request may have at most {settings.max_json_request_bytes} bytes ({len(body)} sent); "
            "send netCDF files as multipart/form-data instead",
        )
    return body


def json_depth(body: bytes) -> int:
    """The deepest bracket nesting of a JSON text, brackets inside strings ignored; vectorised, so
    a 16 MB body costs milliseconds and a pathological one never reaches the recursive parser."""
    outside_strings = _JSON_STRING.sub(b"", body)
    codes = np.frombuffer(outside_strings, dtype=np.uint8)
    steps = np.isin(codes, _OPENING).astype(np.int64) - np.isin(codes, _CLOSING).astype(np.int64)
    return int(np.cumsum(steps).max(initial=0))


def parse_json_request(body: bytes, *, prefix: str = "") -> ForecastJSONRequest:
    """Parse and validate a JSON forecast request; 422 naming the first offending field."""
    depth = json_depth(body)
    if depth > MAX_JSON_DEPTH:
        raise Problem(
            422, "json-too-deep", f"the body nests {depth} levels deep; at most {MAX_JSON_DEPTH} are accepted",
            field="body",
        )
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise Problem(422, "invalid-json", f"the body is not valid JSON: {exc}", field="body") from exc
    if prefix:
        if not isinstance(document, dict) or not isinstance(document.get(prefix), dict):
            raise Problem(422, "invalid-request", f"the body must be an object with an object {prefix!r}", field=prefix)
        extra = set(document) - {prefix, "outputs", "response", "subscriber"}
        if extra:
            raise Problem(422, "invalid-request", f"unknown member(s) {sorted(extra)}", field=sorted(extra)[0])
        if document.get("response") not in (None, "document"):
            raise Problem(422, "invalid-request", "only response=document is supported", field="response")
        document = document[prefix]
    try:
        return ForecastJSONRequest.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        location = ".".join(str(p) for p in first["loc"]) or "body"
        location = re.sub(r"\.(\d+)", r"[\1]", location)
        field = f"{prefix}.{location}" if prefix else location
        raise Problem(
            422,
            f"invalid-{location}" if location in ("steps", "members", "seed") else "invalid-request",
            f"{field}: {first['msg']}",
            field=field,
            extra={
                "errors": [
                    {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()[:20]
                ]
            },
        ) from exc


async def submit_json_request(
    request: Request,
    parsed: ForecastJSONRequest,
    *,
    settings: ApiSettings,
    store: Any,
    celery: Any,
    owner: str | None = None,
) -> tuple[StatusInfo, bool]:
    """Submit already-parsed JSON frames; returns the job's statusInfo and whether it was created."""
    steps = check_steps(parsed.steps, settings)
    ensemble = check_ensemble(parsed.members, parsed.seed)
    record, created = await run_in_threadpool(
        _validate_and_enqueue, _json_stager(parsed, settings), steps, settings, store, celery, owner, ensemble
    )
    return status_info(request, record), created


async def submit_multipart(
    request: Request, *, settings: ApiSettings, store: Any, celery: Any, owner: str | None = None
) -> tuple[StatusInfo, bool]:
    """Submit netCDF files from a multipart form (field ``file``, repeated; fields ``steps``, ``members``,
    ``seed``)."""
    async with request.form(max_files=MAX_UPLOAD_FILES, max_fields=20) as form:
        unknown = sorted(set(form.keys()) - {"file", "steps", "members", "seed"})
        if unknown:
            raise Problem(
                422,
                "unknown-field",
                f"unknown form field(s) {unknown}; use 'file', 'steps', 'members' and 'seed'",
                field=unknown[0],
            )
        steps = check_steps(_form_integer(form, "steps", r"-?[0-9]{1,9}"), settings)
        ensemble = check_ensemble(_form_integer(form, "members", r"-?[0-9]{1,9}"),
                                  _form_integer(form, "seed", r"-?[0-9]{1,20}"))
        files = form.getlist("file")
        if not files:
            raise Problem(422, "missing-file", "no netCDF file in form field 'file'", field="file")
        uploads: list[tuple[str | None, BinaryIO]] = []
        for item in files:
            if not isinstance(item, UploadFile):
                raise Problem(422, "not-a-file", "form field 'file' must be a file upload, not text", field="file")
            uploads.append((item.filename, item.file))
        record, created = await run_in_threadpool(
            _validate_and_enqueue, _upload_stager(uploads, settings), steps, settings, store, celery, owner,
            ensemble,
        )
    return status_info(request, record), created


def is_json(content_type: str) -> bool:
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def require_json(request: Request) -> None:
    """415 unless the request body is JSON."""
    content_type = request.headers.get("content-type", "")
    if not is_json(content_type):
        raise Problem(
            415,
            "unsupported-media-type",
            f"Content-Type {content_type or '(none)'!r} is not accepted here; send application/json",
            field="Content-Type",
        )


def submission_response(request: Request, info: StatusInfo, created: bool) -> JSONResponse:
    """201 + Location for a newly queued run, 200 + Location for an existing job."""
    return JSONResponse(
        info.model_dump(mode="json"),
        status_code=201 if created else 200,
        headers={"Location": f"{root(request)}/jobs/{info.jobID}"},
    )
