"""Request and response models of the API (OGC API - Processes 1.0 shapes for jobs).

Requests and responses are separate models. ``StatusInfo`` and ``JobList`` follow the OGC
``statusInfo.yaml`` / ``jobList.yaml`` schemas (``jobID``, ``status``, ``links``...), so OGC clients
can poll our jobs. ``status`` adds one value to OGC's five: ``skipped``, which only scheduled
nowcast slots take (the feed was stale or incomplete; ``message`` says why).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationInfo, field_validator

from model.members import MAX_MEMBERS, check_members

MAX_SEED = 2**63 - 1  # the worker's bound: seeds are stored and hashed as signed 64-bit integers


def check_members_value(members: Any) -> int:
    """``members`` as an int in 1..MAX_MEMBERS, or ValueError naming the range (model.members' rule)."""
    return check_members(members)


def check_seed_value(seed: Any) -> int:
    """``seed`` as an int in 0..2^63-1, or ValueError naming the range."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be a whole number from 0 to 2^63-1 ({MAX_SEED}), got {seed!r}")
    return seed


JobStatus = Literal["accepted", "running", "successful", "failed", "dismissed", "skipped"]
UNFINISHED: frozenset[str] = frozenset({"accepted", "running"})

OGC_REL_RESULTS = "http://www.opengis.net/def/rel/ogc/1.0/results"
OGC_REL_JOB_LIST = "http://www.opengis.net/def/rel/ogc/1.0/job-list"
OGC_REL_PROCESSES = "http://www.opengis.net/def/rel/ogc/1.0/processes"
OGC_REL_CONFORMANCE = "http://www.opengis.net/def/rel/ogc/1.0/conformance"
OGC_REL_EXECUTE = "http://www.opengis.net/def/rel/ogc/1.0/execute"


class Link(BaseModel):
    """A web link (OGC ``link.yaml``)."""

    href: str
    rel: str | None = None
    type: str | None = None
    title: str | None = None


class ProblemDetails(BaseModel):
    """RFC 9457 problem details, with the offending ``field`` or ``file`` when there is one."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=["urn:nowcast:problem:result-not-ready"])
    title: str
    status: int
    detail: str
    code: str = Field(description="Last part of `type`, for switching on")
    instance: str | None = None
    field: str | None = None
    file: str | None = None


class EnsembleInfo(BaseModel):
    """What an ensemble product offers: its members (0..members-1), seed and probability thresholds."""

    members: int = Field(ge=2, description="Ensemble members; `quantity=member&member=` takes 0..members-1")
    seed: int = Field(ge=0, description="The seed the members were drawn from")
    thresholds_dbz: list[float] = Field(description="`quantity=probability&threshold=` takes one of these")


class StatusInfo(BaseModel):
    """The state of one job (OGC ``statusInfo``)."""

    processID: str = Field("nowcast", description="Always `nowcast`: the one process offered")
    type: Literal["process"] = "process"
    jobID: str
    kind: Literal["forecast", "nowcast"] = Field(description="On-demand forecast or scheduled nowcast")
    status: JobStatus
    message: str | None = None
    created: dt.datetime | None = None
    started: dt.datetime | None = None
    finished: dt.datetime | None = None
    updated: dt.datetime | None = None
    progress: int | None = Field(None, ge=0, le=100, description="Percent done")
    steps: int | None = Field(None, description="Number of lead times requested")
    source: str | None = Field(None, description="`predrnn`, or `extrapolation` when the fallback ran")
    slot: str | None = Field(None, description="Scan time of a scheduled nowcast (ISO-8601 UTC)")
    domain: str | None = Field(None, description="The radar domain of a scheduled nowcast (`GET /domains`)")
    reference_time: dt.datetime | None = Field(
        None, description="Time of the last input scan (UTC): lead times count from it; once successful"
    )
    model: str | None = Field(
        None, description="What made the product: `PredRNN-v2`, or the extrapolation method of the fallback"
    )
    model_frame: str | None = Field(
        None,
        description=(
            "The PredRNN's frame of reference: `lagrangian` (optical flow carries the motion, the network "
            "the growth and decay) or `eulerian`; absent when extrapolation made the product"
        ),
    )
    model_version: str | None = Field(
        None, description="sha256 of the checkpoint the job runs with (`no-checkpoint` when there is none)"
    )
    timestep_minutes: int | None = Field(None, description="Minutes between scans and between lead times")
    lead_times: list[int] | None = Field(
        None,
        description=(
            "Minutes from `reference_time` that have a PNG (`results?f=png&lead=...`), ascending, once "
            "successful: <= 0 are the observed input scans (0 = the last), > 0 the forecast"
        ),
    )
    ensemble: EnsembleInfo | None = Field(
        None, description="Present for an ensemble job (members > 1): what `results?quantity=` can ask for")
    links: list[Link] = []

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "processID": "nowcast",
                    "type": "process",
                    "jobID": "forecast-3f1c9a0e2b7d4c55a1e2",
                    "kind": "forecast",
                    "status": "accepted",
                    "message": "queued",
                    "created": "2026-01-01T12:06:03Z",
                    "started": None,
                    "finished": None,
                    "updated": "2026-01-01T12:06:03Z",
                    "progress": 0,
                    "steps": 20,
                    "model_version": "5f0c2a4e9b7d1c3a6e8f0b2d4c6a8e0f1a3c5e7b9d1f3a5c7e9b1d3f5a7c9e1b",
                    "timestep_minutes": 6,
                    "links": [
                        {
                            "href": "/jobs/forecast-3f1c9a0e2b7d4c55a1e2",
                            "rel": "self",
                            "type": "application/json",
                        },
                        {
                            "href": "/jobs/forecast-3f1c9a0e2b7d4c55a1e2/results",
                            "rel": OGC_REL_RESULTS,
                            "type": "application/x-netcdf",
                        },
                    ],
                }
            ]
        }
    )


class JobList(BaseModel):
    """A page of jobs, newest first (OGC ``jobList``), with ``next``/``prev`` links."""

    jobs: list[StatusInfo]
    numberMatched: int = Field(description="Jobs matching the filter, over all pages")
    links: list[Link]


# Scan times outside these years are clock or encoding errors (model.io.netcdf.YEARS_PLAUSIBLE).
FIRST_YEAR, LAST_YEAR = 1900, 2200


class GridSpec(BaseModel):
    """Where the JSON frames lie: 1-D projection coordinates plus CF grid-mapping attributes."""

    x: list[float] = Field(description="Column coordinates (metres), length W, finite, strictly monotonic")
    y: list[float] = Field(description="Row coordinates (metres), length H, finite, strictly monotonic")
    grid_mapping: dict[str, str | float | int | list[float]] = Field(
        default_factory=dict,
        description="CF grid-mapping attributes, e.g. {grid_mapping_name: lambert_azimuthal_equal_area, ...}",
    )


    @field_validator("x", "y")
    @classmethod
    def _finite_and_monotonic(cls, axis: list[float]) -> list[float]:
        # JSON parsers here accept NaN and Infinity literals; an axis needs neither.
        if not all(math.isfinite(v) for v in axis):
            raise ValueError("the axis holds NaN or infinite values")
        steps = [b - a for a, b in zip(axis, axis[1:], strict=False)]
        if steps and not (all(d > 0 for d in steps) or all(d < 0 for d in steps)):
            raise ValueError("the axis is not strictly monotonic")
        return axis


Row = Annotated[list[float | None], Field(min_length=1)]
Frame = Annotated[list[Row], Field(min_length=1)]
Size = Annotated[StrictInt, Field(ge=1)]


class ForecastJSONRequest(BaseModel):
    """A small radar sequence inline: ``frames`` (T, H, W) as nested lists, null for no data."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "frames": [[[0.0, 12.5], [30.0, None]]] * 10,
                    "shape": [10, 2, 2],
                    "dtype": "float32",
                    "timestep_minutes": 6,
                    "units": "dBZ",
                    "times": None,
                    "steps": 20,
                }
            ]
        },
    )

    frames: list[Frame] = Field(
        min_length=1,
        description="(T, H, W) values, at least one scan of one row of one value; null = no data. The "
        "service needs at least `input_scans` scans (the process description says how many).",
    )
    shape: list[Size] = Field(min_length=3, max_length=3, description="(T, H, W), must match `frames`")
    dtype: Literal["float32", "float64"] = "float32"
    timestep_minutes: StrictInt = Field(description="Cadence of the frames; must equal the service's")
    units: Literal["dBZ", "mm/h"] = Field(description="Reflectivity, or rain rate (Marshall-Palmer)")
    times: list[dt.datetime] | None = Field(
        None,
        description=f"Scan time of each frame (UTC), years {FIRST_YEAR}..{LAST_YEAR}. "
        "Default: the last frame at the current slot",
    )
    steps: StrictInt | None = Field(
        None, ge=1, description="Lead times wanted (an integer); default the service's `lead_steps`"
    )
    grid: GridSpec | None = None
    members: Any = Field(
        None, json_schema_extra={"type": "integer", "minimum": 1, "maximum": MAX_MEMBERS},
        description=f"Ensemble members (1..{MAX_MEMBERS}, default 1: the deterministic forecast); more than 1 "
        "makes an ensemble product with its mean and exceedance probabilities")
    seed: Any = Field(
        None, json_schema_extra={"type": "integer", "minimum": 0, "maximum": MAX_SEED},
        description="Seed the ensemble members are drawn from (0..2^63-1, default 0); the same input, members "
        "and seed give the same job and the same members")

    @field_validator("members", mode="before")
    @classmethod
    def _members_in_range(cls, members: Any) -> int | None:
        # Checked here, not by the field's type, so that every refusal names the allowed range.
        return None if members is None else check_members_value(members)

    @field_validator("seed", mode="before")
    @classmethod
    def _seed_in_range(cls, seed: Any) -> int | None:
        return None if seed is None else check_seed_value(seed)

    @field_validator("frames")
    @classmethod
    def _frames_not_ragged(cls, frames: list[list[list[float | None]]]) -> list[list[list[float | None]]]:
        # Ragged input is named down to the row, so a client can find the bad element.
        if not frames or not frames[0] or not frames[0][0]:
            raise ValueError("frames must be a non-empty (T, H, W) array")
        rows, cols = len(frames[0]), len(frames[0][0])
        for i, frame in enumerate(frames):
            if len(frame) != rows:
                raise ValueError(f"frames[{i}] has {len(frame)} rows, frames[0] has {rows} (ragged array)")
            for j, row in enumerate(frame):
                if len(row) != cols:
                    raise ValueError(
                        f"frames[{i}][{j}] has {len(row)} values, frames[0][0] has {cols} (ragged array)"
                    )
        return frames

    @field_validator("shape")
    @classmethod
    def _shape_matches_frames(cls, shape: tuple[int, int, int], info: ValidationInfo) -> tuple[int, int, int]:
        frames = info.data.get("frames")
        if frames is not None:
            actual = (len(frames), len(frames[0]), len(frames[0][0]))
            if tuple(shape) != actual:
                raise ValueError(f"shape {list(shape)} does not match frames, which are {list(actual)}")
        return shape

    @field_validator("times")
    @classmethod
    def _times_match(cls, times: list[dt.datetime] | None, info: ValidationInfo) -> list[dt.datetime] | None:
        if times is None:
            return None
        shape = info.data.get("shape")
        if shape is not None and len(times) != shape[0]:
            raise ValueError(f"times has {len(times)} entries but there are {shape[0]} frames")
        in_utc = []
        for index, t in enumerate(times):
            try:
                utc = t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)
            except OverflowError:  # an offset that pushes it past year 1 or 9999
                raise ValueError(f"times[{index}] lies outside the range of UTC times") from None
            if not FIRST_YEAR <= utc.year <= LAST_YEAR:
                raise ValueError(f"times[{index}] is in year {utc.year}, outside {FIRST_YEAR}..{LAST_YEAR}")
            in_utc.append(utc)
        return in_utc

    @field_validator("grid")
    @classmethod
    def _grid_matches(cls, grid: GridSpec | None, info: ValidationInfo) -> GridSpec | None:
        shape = info.data.get("shape")
        if grid is not None and shape is not None and (len(grid.x) != shape[2] or len(grid.y) != shape[1]):
            raise ValueError(
                f"grid.x/grid.y have lengths {len(grid.x)}/{len(grid.y)}, "
                f"shape says W={shape[2]}, H={shape[1]}"
            )
        return grid


class ExecuteRequest(BaseModel):
    """OGC execute request for ``POST /processes/nowcast/execution``: ``inputs`` as in ``POST /forecast``."""

    model_config = ConfigDict(extra="allow")

    inputs: ForecastJSONRequest
    outputs: dict[str, Any] | None = None
    response: Literal["document", "raw"] | None = None


class LandingPage(BaseModel):
    title: str
    description: str
    links: list[Link]


class Conformance(BaseModel):
    conformsTo: list[str]


class ProcessSummary(BaseModel):
    id: str
    title: str
    description: str
    version: str
    jobControlOptions: list[str]
    outputTransmission: list[str]
    links: list[Link]


class ProcessList(BaseModel):
    processes: list[ProcessSummary]
    links: list[Link]


class ProcessDescription(ProcessSummary):
    inputs: dict[str, Any]
    outputs: dict[str, Any]


class HealthStatus(BaseModel):
    status: Literal["ok"] = "ok"


class ReadinessCheck(BaseModel):
    ok: bool
    detail: str


class Readiness(BaseModel):
    status: Literal["ready", "not-ready"]
    checks: dict[str, ReadinessCheck]


class GridMapping(BaseModel):
    """A product's CF grid mapping, and pyproj's reading of it."""

    name: str = Field(description="The grid-mapping variable in the netCDF product")
    attributes: dict[str, Any] = Field(description="Its CF attributes (grid_mapping_name, ...)")
    proj4: str | None = Field(description="PROJ string (null when pyproj cannot read the attributes)")
    crs_wkt: str | None = Field(description="WKT2 of the same CRS")


class ForecastJSONResult(BaseModel):
    """A forecast product as JSON: reflectivity (L, H, W) in dBZ, null where no data."""

    jobID: str
    reference_time: str | None
    lead_time_minutes: list[int]
    valid_times: list[str]
    units: Literal["dBZ"] = "dBZ"
    shape: list[int] = Field(min_length=3, max_length=3, description="(L, H, W)")
    x: list[float] | None
    y: list[float] | None
    attributes: dict[str, Any]
    grid_mapping: GridMapping | None = Field(description="The CF grid mapping of x/y; null when the input had none")
    reflectivity: list[list[list[float | None]]]
    rainfall_rate_units: Literal["mm h-1"] = "mm h-1"
    rainfall_rate: list[list[list[float | None]]] = Field(
        description="(L, H, W) rain rate, Marshall-Palmer Z = 200 R^1.6, null where no data")
    quantity: Literal["reflectivity", "mean", "probability", "member"] = Field(
        "reflectivity", description="What `reflectivity` holds: the deterministic forecast, an ensemble's mean "
        "(its default, also with `quantity=probability`) or one `member`")
    ensemble: EnsembleInfo | None = Field(None, description="Present for an ensemble product")
    member: int | None = Field(None, description="The member of `quantity=member` (present only then)")
    probability_units: Literal["1"] | None = Field(None, description="Present with `probability`")
    probability: dict[str, list[list[list[float | None]]]] | None = Field(
        None, description="An ensemble's (L, H, W) probabilities of reaching each threshold, keyed by the threshold "
        "in dBZ (`\"30\"`); every threshold by default, the one asked with `quantity=probability`")


class FieldEncoding(BaseModel):
    """How ``FieldResult.values`` is packed: value = offset + code * step (in ``FieldResult.units``);
    ``nodata`` = no data. dBZ quantities: offset -32, step 0.5 (also as ``offset_dbz``/``step_dbz``);
    a probability: code = round(100 p), offset 0, step 0.01."""

    dtype: Literal["uint8"] = "uint8"
    offset: float = Field(description="Value of code 0, in `units`")
    step: float = Field(description="Value of one code step, in `units`")
    offset_dbz: float | None = Field(None, description="`offset` of a dBZ quantity (absent for a probability)")
    step_dbz: float | None = Field(None, description="`step` of a dBZ quantity (absent for a probability)")
    nodata: int
    rows: Literal["north to south"] = "north to south"
    columns: Literal["west to east"] = "west to east"


class FieldResult(BaseModel):
    """One lead time as a map layer (``?f=field&lead=MMM``): what the viewer draws and colours itself."""

    jobID: str
    kind: Literal["forecast", "observed"]
    quantity: Literal["reflectivity", "mean", "probability", "member"] = Field(
        description="What `values` holds: `reflectivity` (deterministic product or observed scan), `mean` (an "
        "ensemble's mean, also its default), `member` or `probability`")
    units: Literal["dBZ", "1"] = Field(description="`dBZ`, or `1` for a probability")
    threshold_dbz: float | None = Field(None, description="The threshold of a probability (present only then)")
    member: int | None = Field(None, description="The member index of `quantity=member` (present only then)")
    ensemble: EnsembleInfo | None = Field(None, description="Present for an ensemble product")
    lead_minutes: int
    valid_time: str
    width: int
    height: int
    extent: list[float] = Field(min_length=4, max_length=4,
                                description="[west, south, east, north] cell edges, grid coordinates")
    grid_mapping: GridMapping | None
    lonlat_bounds: list[float] | None = Field(description="[west, south, east, north] of the grid, degrees")
    encoding: FieldEncoding
    values: str = Field(description="base64 of width x height uint8 codes, row by row")


class VerificationReport(BaseModel):
    """Live skill per stream over a window of slots (``GET /verification``)."""

    since: str = Field(description="Window start (slot time, ISO-8601 UTC), inclusive")
    until: str = Field(description="Window end, exclusive")
    timestep_minutes: int
    thresholds_dbz: list[float]
    fss_scales_pixels: list[int] = Field(description="FSS window widths, pixels")
    sources: dict[str, dict[str, Any]] = Field(
        description=(
            "Per stream (`model`, `extrapolation`): `slots` scored, `missing_scans`, `leads` [{lead_minutes, "
            "slots, missing, fallback, scores {threshold: {csi, pod, far, bias, fss {scale: value}, hits, "
            "misses, false_alarms, correct_negatives}}, and for a lead of ensemble products `ensemble` (the "
            "members' CRPS in dBZ, Brier score and reliability counts per threshold; the scores above are then "
            "the ensemble mean's)}] and `all_leads` (every lead pooled); null = undefined"
        )
    )
    policy: dict[str, Any] = Field(description="The source policy: `policy`, `served`, `reason`, `csi`, `slots`")
