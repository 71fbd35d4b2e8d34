"""Radar domains: the TOML domains file, parsed strictly, and each domain's view of the settings.

Interface
---------
load_domains(path, *, settings) -> Domains         the file's domains; DomainFileError naming file:line
domains_for(settings) -> Domains                    the file ``NOWCAST_DOMAINS`` names, or the one default
domain_settings(settings, domain) -> WorkerSettings the settings a domain's jobs run with (feed, checkpoint,
                                                    source policy, cadence)
nowcast_job_id(domain, slot, stream) -> str         the default domain keeps ``nowcast-<slot>``; another
                                                    domain's ids are ``nowcast-<id>-<slot>``
domain_of_job(job_id, domains) -> Domain | None     the domain a nowcast job id belongs to

The file (docs/domains.md)::

    default = "national"            # optional: the domain /nowcasts serves (else the first)

    [[domain]]
    id = "national"
    feed_dir = "/srv/radar/national" # relative paths are relative to the file
    checkpoint = "model/checkpoints/radar_lagrangian.pt"
    source_policy = "best"
    queue = "gpu"                    # the model job's Celery queue; extrapolation_queue for the other
    timestep_minutes = 6

    [[domain]]
    id = "harbour"
    grid = "96x160"                  # a synthetic feed of this grid (nowcast up); feed under data_dir
    projection = "+proj=lcc +lat_0=54 +lon_0=-3 +lat_1=50 +lat_2=58 +datum=WGS84"  # centred on lat_0, lon_0

Every key is checked: an unknown key, a duplicate id, a bad grid or a bad value is refused with the
file and the line of the offending key or table (tomllib reports only its own syntax errors by
line, so the line is found by scanning the text). Without a file there is one domain, ``default``,
made of the settings themselves: today's commands, ids and URLs are unchanged.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from workers import jobs
from workers.settings import WorkerSettings

DEFAULT_ID = "default"
ID_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,31}$")  # lower case: ids appear in job ids, URLs and file names
GRID_PATTERN = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")
POLICIES = ("model", "extrapolation", "best")
MAX_GRID = 4096


class DomainFileError(ValueError):
    """A domains file that cannot be used; the message names the file and the line."""


@dataclass(frozen=True)
class Domain:
    """One radar domain: where its scans come from, what forecasts it and where its jobs queue.

    ``grid`` (H, W) pixels is set for a synthetic feed (``nowcast up`` writes it); a real feed's grid
    and projection come from its scans. ``None`` fields take the settings' value.
    """

    id: str
    feed_dir: Path | None = None
    grid: tuple[int, int] | None = None
    checkpoint: Path | None = None
    source_policy: str | None = None
    timestep_minutes: int | None = None
    latency_offset_minutes: int | None = None
    queue: str = "gpu"
    extrapolation_queue: str = "cpu"
    title: str = ""
    seed: int | None = None  # the synthetic feed's storm seed
    projection: str | None = None  # the synthetic feed's CRS (PROJ string or EPSG code); None: the site's
    default: bool = False

    @property
    def grid_text(self) -> str | None:
        return None if self.grid is None else f"{self.grid[0]}x{self.grid[1]}"


@dataclass(frozen=True)
class Domains:
    """The domains of a deployment, in file order; exactly one is the default."""

    items: tuple[Domain, ...]
    source: Path | None = None  # the file, or None for the built-in default
    by_id: dict[str, Domain] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_id", {d.id: d for d in self.items})

    @property
    def default(self) -> Domain:
        return next(d for d in self.items if d.default)

    def get(self, domain_id: str | None) -> Domain | None:
        """The domain of this id (None or "" is the default), or None when there is none."""
        return self.default if not domain_id else self.by_id.get(domain_id)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


_KEYS: dict[str, type | tuple[type, ...]] = {
    "id": str, "feed_dir": str, "grid": str, "checkpoint": str, "source_policy": str, "timestep_minutes": int,
    "latency_offset_minutes": int, "queue": str, "extrapolation_queue": str, "title": str, "seed": int,
    "projection": str,
}
_TOP_KEYS = {"default", "domain"}
_HEADER = re.compile(r"^\s*\[\[\s*domain\s*\]\]\s*(#.*)?$")


def _line_of(text: str, key: str, table: int | None) -> int:
    """The 1-based line of ``key`` in the ``table``-th ``[[domain]]`` (None: the top level), else that table's header.

    Good enough for the plain ``key = value`` layout the file uses; a key it cannot find points at
    the table it belongs to.
    """
    lines = text.splitlines()
    headers = [i for i, line in enumerate(lines) if _HEADER.match(line)]
    if table is None:
        start, end = 0, headers[0] if headers else len(lines)
    else:
        if table >= len(headers):
            return 1
        start, end = headers[table], headers[table + 1] if table + 1 < len(headers) else len(lines)
    pattern = re.compile(rf"^\s*(\"{re.escape(key)}\"|'{re.escape(key)}'|{re.escape(key)})\s*[=.]")
    for index in range(start, end):
        if pattern.match(lines[index]):
            return index + 1
    return start + 1


def _grid(value: str) -> tuple[int, int] | None:
    match = GRID_PATTERN.match(value)
    if not match:
        return None
    height, width = int(match.group(1)), int(match.group(2))
    return (height, width) if 0 < height <= MAX_GRID and 0 < width <= MAX_GRID else None


def projection_grid_mapping(projection: str) -> dict[str, Any]:
    """The CF grid mapping attributes of a projected CRS given as a PROJ string or ``EPSG:<code>``.

    The synthetic feed writes these beside its metre axes (1 km cells centred on the CRS's natural
    origin, that is on its false easting and northing). Raises ValueError when pyproj does not know the CRS, when it is
    not projected (the feed's axes are metres, not degrees) or when CF has no grid mapping for it.
    """
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        crs = CRS.from_user_input(projection)
    except CRSError as exc:
        raise ValueError(f"projection {projection!r} is not a PROJ string or EPSG code pyproj knows "
                         f"({str(exc).splitlines()[0]})") from exc
    if not crs.is_projected:
        raise ValueError(f"projection {projection!r} must be a projected CRS in metres, not {crs.type_name}")
    if any(axis.unit_name not in ("metre", "meter") for axis in crs.axis_info):
        raise ValueError(f"projection {projection!r} must have metre axes (the feed's cells are 1 km)")
    mapping = crs.to_cf()
    if "grid_mapping_name" not in mapping:
        raise ValueError(f"projection {projection!r} has no CF grid mapping (CF conventions, appendix F)")
    return mapping


def _check_value(key: str, value: Any, settings: WorkerSettings) -> str | None:
    """Why ``value`` is not a valid ``key``, or None."""
    expected = _KEYS[key]
    if isinstance(value, bool) or not isinstance(value, expected):
        kind = expected.__name__ if isinstance(expected, type) else "/".join(t.__name__ for t in expected)
        return f"{key} must be a {'string' if kind == 'str' else 'whole number' if kind == 'int' else kind}, " \
               f"got {value!r}"
    if key == "id" and not ID_PATTERN.match(value):
        return f"id {value!r} must be 1-32 lower-case letters, digits or _, starting with a letter"
    if key == "grid" and _grid(value) is None:
        return f"grid {value!r} must be HxW with both sides within 1-{MAX_GRID} pixels, e.g. \"128x192\""
    if key == "source_policy" and value not in POLICIES:
        return f"source_policy {value!r} must be one of {', '.join(POLICIES)}"
    if key == "timestep_minutes" and (value <= 0 or 60 % value):
        return f"timestep_minutes must divide 60, got {value}"
    if key == "latency_offset_minutes" and value < 0:
        return f"latency_offset_minutes must not be negative, got {value}"
    if key in ("queue", "extrapolation_queue") and not re.match(r"^[A-Za-z0-9_.-]{1,64}$", value):
        return f"{key} {value!r} must be 1-64 letters, digits, '.', '_' or '-'"
    if key in ("feed_dir", "checkpoint", "title") and not value.strip():
        return f"{key} must not be empty"
    if key == "projection":
        try:
            projection_grid_mapping(value)
        except ValueError as exc:
            return str(exc)
    return None


def load_domains(path: Path, *, settings: WorkerSettings) -> Domains:
    """The domains of the TOML file at ``path``; :class:`DomainFileError` ``file:line: reason`` otherwise."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DomainFileError(f"domains file {path}: cannot read it ({exc.__class__.__name__}: {exc})") from exc
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # its message already says "(at line L, column C)"
        raise DomainFileError(f"domains file {path}: not valid TOML: {exc}") from exc

    def fail(reason: str, key: str, table: int | None) -> DomainFileError:
        return DomainFileError(f"{path}:{_line_of(text, key, table)}: {reason}")

    for key in document:
        if key not in _TOP_KEYS:
            raise fail(f"unknown key {key!r} (allowed at the top: default and [[domain]] tables)", key, None)
    tables = document.get("domain")
    if not isinstance(tables, list) or not tables or not all(isinstance(t, dict) for t in tables):
        raise DomainFileError(f"{path}:1: no [[domain]] table: a domains file lists at least one domain")
    base = path.parent
    domains: list[Domain] = []
    first_line: dict[str, int] = {}
    for index, table in enumerate(tables):
        for key, value in table.items():
            if key not in _KEYS:
                raise fail(f"unknown key {key!r} in domain {table.get('id', index + 1)!r}; allowed: "
                           f"{', '.join(sorted(_KEYS))}", key, index)
            reason = _check_value(key, value, settings)
            if reason:
                raise fail(reason, key, index)
        if "id" not in table:
            raise fail("a [[domain]] table without an id", "id", index)
        domain_id = table["id"]
        if domain_id in first_line:
            raise fail(f"duplicate domain id {domain_id!r} (first at line {first_line[domain_id]})", "id", index)
        first_line[domain_id] = _line_of(text, "id", index)
        if "feed_dir" in table and "grid" in table:
            raise fail(f"domain {domain_id!r} has both feed_dir and grid: a real feed's grid comes from its scans",
                       "grid", index)
        if "feed_dir" in table and "projection" in table:
            raise fail(f"domain {domain_id!r} has both feed_dir and projection: a real feed's projection comes "
                       f"from its scans", "projection", index)
        step = table.get("timestep_minutes", settings.timestep_minutes)
        offset = table.get("latency_offset_minutes", settings.latency_offset_minutes)
        if offset >= step:
            raise fail(f"latency_offset_minutes {offset} must be shorter than timestep_minutes {step}",
                       "latency_offset_minutes" if "latency_offset_minutes" in table else "timestep_minutes", index)

        def resolved(key: str, table: dict[str, Any] = table) -> Path | None:
            value = table.get(key)
            if value is None:
                return None
            candidate = Path(value).expanduser()
            return candidate if candidate.is_absolute() else (base / candidate)

        domains.append(Domain(
            id=domain_id, feed_dir=resolved("feed_dir"), grid=_grid(table["grid"]) if "grid" in table else None,
            checkpoint=resolved("checkpoint"), source_policy=table.get("source_policy"),
            timestep_minutes=table.get("timestep_minutes"), latency_offset_minutes=table.get("latency_offset_minutes"),
            queue=table.get("queue", "gpu"), extrapolation_queue=table.get("extrapolation_queue", "cpu"),
            title=table.get("title", ""), seed=table.get("seed"), projection=table.get("projection")))
    chosen = document.get("default", domains[0].id)
    if not isinstance(chosen, str) or chosen not in first_line:
        raise fail(f"default {chosen!r} is not the id of a domain in the file ({', '.join(first_line)})",
                   "default", None)
    items = tuple(Domain(**{**d.__dict__, "default": d.id == chosen}) for d in domains)
    return Domains(items=items, source=path)


def builtin_default(settings: WorkerSettings) -> Domains:
    """The one domain of a deployment without a domains file: the settings themselves."""
    return Domains(items=(Domain(id=DEFAULT_ID, default=True),))  # its feed: settings.feed_dir (feed_dir_of)


@lru_cache(maxsize=8)
def _load_cached(path: str, mtime_ns: int, settings_key: tuple[Any, ...]) -> Domains:
    settings = WorkerSettings(timestep_minutes=settings_key[0], latency_offset_minutes=settings_key[1])
    return load_domains(Path(path), settings=settings)


def domains_for(settings: WorkerSettings) -> Domains:
    """The deployment's domains: the file ``settings.domains`` (re-read when it changes) or the built-in default."""
    path = settings.domains
    if not path or str(path) in ("", "."):  # NOWCAST_DOMAINS="" is unset
        return builtin_default(settings)
    path = Path(path)
    try:
        mtime = path.stat().st_mtime_ns
    except OSError as exc:
        raise DomainFileError(f"domains file {path}: cannot read it ({exc.strerror or exc})") from exc
    return _load_cached(str(path), mtime, (settings.timestep_minutes, settings.latency_offset_minutes))


def feed_dir_of(settings: WorkerSettings, domain: Domain) -> Path:
    """Where a domain's scans arrive: its ``feed_dir``; a synthetic domain's is ``data_dir/feeds/<id>``
    (the default domain's stays ``feed_dir`` so that one-domain stacks keep their layout)."""
    if domain.feed_dir is not None:
        return domain.feed_dir
    if domain.default:
        return Path(settings.feed_dir or settings.data_dir / "feed")
    return settings.data_dir / "feeds" / domain.id


def domain_settings(settings: WorkerSettings, domain: Domain) -> WorkerSettings:
    """The settings a domain's jobs run with: its feed, checkpoint, source policy and cadence over the rest."""
    update: dict[str, Any] = {"feed_dir": feed_dir_of(settings, domain)}
    for name in ("checkpoint", "source_policy", "timestep_minutes", "latency_offset_minutes"):
        value = getattr(domain, name)
        if value is not None:
            update[name] = value
    return settings.model_copy(update=update)


def nowcast_job_id(domain: Domain, slot: dt.datetime, stream: str = jobs.MODEL_STREAM) -> str:
    """A domain's slot job id: the default domain keeps ``nowcast-<slot>[-extrapolation]``, another
    domain's is ``nowcast-<id>-<slot>[-extrapolation]`` (ids are lower case; a slot starts with a digit,
    so the two never collide)."""
    base = jobs.nowcast_job_id(slot, stream)
    return base if domain.default else base.replace("nowcast-", f"nowcast-{domain.id}-", 1)


_JOB = re.compile(r"^nowcast-(?:([a-z][a-z0-9_]{0,31})-)?\d{8}T\d{4}Z(?:-extrapolation)?$")


def domain_of_job(job_id: str, domains: Domains) -> Domain | None:
    """The domain of a nowcast job id, or None when it is no nowcast id or names an unknown domain."""
    match = _JOB.match(job_id)
    if not match:
        return None
    return domains.default if match.group(1) is None else domains.by_id.get(match.group(1))


def slot_part(job_id: str) -> str:
    """``20260301T1200Z`` of any domain's nowcast job id (the URL path segment of its slot)."""
    core = job_id.removeprefix("nowcast-").removesuffix(f"-{jobs.EXTRAPOLATION_STREAM}")
    return core.rpartition("-")[2]


def verification_index(job_id: str, stream: str) -> str:
    """The verification index a nowcast's record goes under: the stream for the default domain's ids,
    ``<domain>:<stream>`` for another domain's (workers/skill_store.py), so each domain's skill is its own."""
    match = _JOB.match(job_id)
    return f"{match.group(1)}:{stream}" if match and match.group(1) else stream


def stream_index(domain: Domain, stream: str) -> str:
    """The verification index of one of ``domain``'s streams (see :func:`verification_index`)."""
    return stream if domain.default else f"{domain.id}:{stream}"
