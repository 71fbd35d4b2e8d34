"""Live verification: every scheduled product scored against the scans that arrive at its valid times.

Interface
---------
sweep(settings, r, *, now, budget_s=None) -> dict       one pass over the recent nowcast products
verify_product(settings, r, record, *, scans, now) -> dict   the leads of one product that can be settled
THRESHOLDS, SCALES                                        20 / 30 / 40 dBZ; FSS windows of 1, 5, 15 pixels

For each lead of a product the outcome is settled once and stored by :mod:`workers.skill_store`:

- the scan at the valid time is in the feed: ``scored`` with the raw contingency counts, FSS sums
  and error sums of :class:`model.verification.metrics.SkillScores`, the same code as
  ``nowcast evaluate``;
- the scan is not there ``verification_grace_minutes`` after the valid time, cannot be read, or lies
  on another grid (shape, coordinates or grid mapping): ``missing`` with the reason; it is never
  scored as a miss and never filled in;
- otherwise the lead waits for a later sweep.

A model-stream product that the fallback made (``source = "extrapolation"``) is ``fallback`` on
every lead: it equals the slot's extrapolation product, which is scored in its own stream, and the
model's numbers stay the network's. An ensemble product (members > 1) is scored twice per lead:
its ensemble mean through ``SkillScores`` as above (the deterministic numbers), and its members
through :class:`model.verification.probabilistic.EnsembleScores` (CRPS, Brier scores at 20 / 30 /
40 dBZ, reliability counts, in dBZ floored at 0 dBZ), whose sums go into the same lead entry under
``ensemble``. Each lead is written with HSETNX, so a repeated or concurrent
sweep, a redelivered task or a restart settles nothing twice and resumes where it stopped.

Files are read by :mod:`model.io.lean_reader` (netCDF4 alone, bit for bit what ``read_scans``
gives): a product's header first, then only the frames of the leads being scored.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import redis

from model.io.lean_reader import Frames, open_frames, read_scan_frame
from model.io.netcdf import Grid, RadarInputError, read_scans
from model.verification.metrics import FSS_SCALES, ObservedEvents, SkillScores
from model.verification.probabilistic import EnsembleScores
from workers import jobs, skill_store
from workers.domains import Domain, domain_settings, domains_for, stream_index, verification_index
from workers.feeds import list_scans
from workers.settings import WorkerSettings

log = logging.getLogger(__name__)

THRESHOLDS: tuple[tuple[str, float], ...] = (("20dBZ", 20.0), ("30dBZ", 30.0), ("40dBZ", 40.0))
SCALES: tuple[int, ...] = FSS_SCALES  # pixels: 1 (pointwise), 5, 15


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _utc(value: np.datetime64) -> dt.datetime:
    return value.astype("datetime64[s]").astype(dt.datetime).replace(tzinfo=dt.UTC)


class ScanCache:
    """Observed scans read once per sweep: {valid time: (H, W) dBZ} or the reason it is unusable.

    It also keeps the observed events of the last set of valid times scored: a slot's model and
    extrapolation products have the same valid times, and the sweep takes them one after the other.
    ``lean=False`` reads through read_scans, the path before the lean reader (the benchmark's baseline).
    """

    def __init__(self, scans: dict[dt.datetime, Path], timestep_minutes: int, *, lean: bool = True) -> None:
        self.scans = scans
        self.timestep_minutes = timestep_minutes
        self.lean = lean
        self._read: dict[dt.datetime, np.ndarray | str] = {}
        self._grids: dict[dt.datetime, Grid] = {}
        self._observed: tuple[tuple[dt.datetime, ...], ObservedEvents] | None = None

    def _read_scan(self, path: Path) -> tuple[np.ndarray, Grid]:
        if self.lean:
            return read_scan_frame(path, timestep_minutes=self.timestep_minutes)
        scan = read_scans(path, timestep_minutes=self.timestep_minutes)
        return scan.dbz[0], scan.grid

    def get(self, moment: dt.datetime) -> np.ndarray | str | None:
        """The scan's dBZ, a reason string when it cannot be used, or None when it is not there."""
        if moment not in self.scans:
            return None
        if moment not in self._read:
            try:
                self._read[moment], self._grids[moment] = self._read_scan(self.scans[moment])
            except RadarInputError as exc:
                self._read[moment] = f"scan unusable: {exc}"
        return self._read[moment]

    def grid(self, moment: dt.datetime) -> Grid:
        """The grid of a scan :meth:`get` returned as an array."""
        return self._grids[moment]

    def observed(self, moments: list[dt.datetime]) -> ObservedEvents:
        """The observed events at these valid times (every one a usable scan), as one (1, L, H, W) batch."""
        key = tuple(moments)
        if self._observed is None or self._observed[0] != key:
            truth = np.stack([self.get(moment) for moment in moments])  # type: ignore[misc]
            self._observed = key, ObservedEvents.of(truth[None], THRESHOLDS, SCALES)
        return self._observed[1]


def _meta(record: jobs.JobRecord, stream: str, lead_minutes: list[int], members: int = 1) -> dict[str, Any]:
    meta = {"job_id": record.job_id, "slot": record.slot, "stream": stream, "product_source": record.source,
            "reference_time": record.reference_time, "n_leads": len(lead_minutes), "lead_minutes": lead_minutes,
            "thresholds": [[name, value] for name, value in THRESHOLDS], "scales": list(SCALES)}
    if members > 1:
        meta["members"] = members
    index = verification_index(record.job_id, stream)
    if index != stream:  # another domain than the default: its own window of slots
        meta["index"], meta["domain"] = index, record.domain
    return meta


def _still_waiting(existing: skill_store.VerificationRecord | None, scans: ScanCache, now: dt.datetime,
                   grace: dt.timedelta) -> int:
    """How many leads of an already described product wait with nothing new to settle them; 0 if any can be settled.

    The scans come every timestep and the sweep runs more often, so most sweeps find no new scan for a
    product's open leads: this answer, from the stored description alone, spares reading its netCDF.
    """
    if existing is None or "lead_minutes" not in existing.meta or not existing.meta.get("reference_time"):
        return 0
    reference = skill_store.parse_iso(existing.meta["reference_time"])
    open_valid = [reference + dt.timedelta(minutes=int(lead)) for lead in existing.meta["lead_minutes"]
                  if int(lead) not in existing.leads]
    if any(valid in scans.scans or now >= valid + grace for valid in open_valid):
        return 0
    return len(open_valid)


def _settle(settings: WorkerSettings, record: jobs.JobRecord, product: Frames, lead_minutes: list[int],
            done: set[int], scans: ScanCache, now: dt.datetime, outcome: dict[str, int]
            ) -> tuple[dict[int, dict[str, Any]], list[int]]:
    """The entries of the leads settled without scoring (lead minutes -> entry), and the frames to score.

    Counts the leads that wait in ``outcome``. Decided from the product's times and grid alone, so
    that only the frames to score are read.
    """
    stream = jobs.nowcast_stream(record.job_id)
    fallback = stream == jobs.MODEL_STREAM and record.source != "predrnn"
    grace = dt.timedelta(minutes=settings.verification_grace_minutes)
    entries: dict[int, dict[str, Any]] = {}
    to_score: list[int] = []
    for index, (lead, value) in enumerate(zip(lead_minutes, product.times, strict=True)):
        valid = _utc(value)
        if lead in done:
            continue
        if fallback:
            entries[lead] = {"status": "fallback", "valid_time": _iso(valid)}
            continue
        truth = scans.get(valid)
        difference = None if truth is None or isinstance(truth, str) else _grid_difference(scans.grid(valid), product)
        if isinstance(truth, str):
            entries[lead] = {"status": "missing", "valid_time": _iso(valid), "reason": truth}
        elif difference is not None:
            entries[lead] = {"status": "missing", "valid_time": _iso(valid), "reason": difference}
        elif truth is not None:
            to_score.append(index)
        elif now >= valid + grace:
            entries[lead] = {"status": "missing", "valid_time": _iso(valid),
                             "reason": f"no scan for {_iso(valid)} in the feed {settings.verification_grace_minutes} "
                                       "min after its valid time"}
        else:
            outcome["waiting"] += 1
    return entries, to_score


def _grid_difference(scan: Grid, product: Frames) -> str | None:
    """Why a scan cannot be scored against the product's fields, or None when both lie on one grid."""
    if scan.shape != product.grid.shape:
        return f"scan grid {scan.shape} differs from the product's {product.grid.shape}"
    difference = product.grid.same_as(scan)
    return None if difference is None else f"scan grid differs from the product's: {difference}"


def verify_product(settings: WorkerSettings, r: redis.Redis, record: jobs.JobRecord, *, scans: ScanCache,
                   now: dt.datetime) -> dict[str, int]:
    """Settle what can be settled of one successful nowcast product; returns counts by outcome."""
    existing = skill_store.read_record(r, job_id=record.job_id)
    done = set(existing.leads) if existing else set()
    outcome = {"scored": 0, "missing": 0, "fallback": 0, "waiting": 0}
    grace = dt.timedelta(minutes=settings.verification_grace_minutes)
    waiting = _still_waiting(existing, scans, now, grace)
    if waiting:
        outcome["waiting"] = waiting
        return outcome
    netcdf = Path(record.products.get("netcdf") or settings.product_dir(record.job_id) / "forecast.nc")
    reference = skill_store.parse_iso(record.reference_time or record.slot or "")
    try:
        # The header first; then only the frames of the leads to score, as a product lives through
        # some 20 sweeps that each settle one or two of its leads.
        with open_frames(netcdf, timestep_minutes=settings.timestep_minutes) as product:
            valid_times = [_utc(t) for t in product.times]
            lead_minutes = [int(round((t - reference).total_seconds() / 60)) for t in valid_times]
            entries, to_score = _settle(settings, record, product, lead_minutes, done, scans, now, outcome)
            forecast = product.read(to_score) if to_score else None  # an ensemble's mean
            members = product.read_members(to_score) if to_score and product.members > 1 else None
            member_count = product.members
    except (RadarInputError, OSError) as exc:
        log.warning("verification: %s unreadable (%s); trying again next sweep", netcdf, exc)
        return {"scored": 0, "missing": 0, "fallback": 0, "waiting": 1}
    if existing is None or not existing.meta:
        skill_store.write_meta(r, job_id=record.job_id,
                               meta=_meta(record, jobs.nowcast_stream(record.job_id), lead_minutes, member_count))
    if forecast is not None:
        # One accumulation over every lead that can be scored: the lead axis of SkillScores holds them.
        # The observed side comes from the cache, shared with the slot's other product.
        skill = SkillScores.init(len(to_score), THRESHOLDS, SCALES)
        skill.accum_observed(scans.observed([valid_times[i] for i in to_score]), forecast[None])
        ensemble = None
        if members is not None:
            truth = np.stack([scans.get(valid_times[i]) for i in to_score])  # type: ignore[misc]
            ensemble = EnsembleScores.init(len(to_score), int(members.shape[0]), THRESHOLDS)
            ensemble.accum(truth[None], members[None])
        for row, index in enumerate(to_score):
            entries[lead_minutes[index]] = {"status": "scored", "valid_time": _iso(valid_times[index]),
                                            "sums": skill_store.sums_of(skill, row)}
            if ensemble is not None:
                entries[lead_minutes[index]]["ensemble"] = skill_store.ensemble_sums_of(ensemble, row)
    for lead, written in skill_store.write_leads(r, job_id=record.job_id, entries=entries).items():
        if written:
            outcome[entries[lead]["status"]] += 1
    if outcome["waiting"] == 0:
        skill_store.mark_complete(r, job_id=record.job_id)
    return outcome


def sweep(settings: WorkerSettings, r: redis.Redis, *, now: dt.datetime, budget_s: float | None = None
          ) -> dict[str, Any]:
    """Prune old records, then verify the recent successful products not yet complete, oldest first.

    Stops starting new products after ``budget_s`` seconds (the next sweep goes on), so one sweep
    stays well inside the task's time limit after an outage.
    """
    started = time.perf_counter()
    budget = settings.task_soft_time_limit_s / 2 if budget_s is None else budget_s
    summary: dict[str, Any] = {"products": 0, "pending": 0, "pruned": 0,
                               "leads": {"scored": 0, "missing": 0, "fallback": 0, "waiting": 0}}
    # Each domain (workers/domains.py) against its own feed and in its own index: a domain whose feed
    # is gone or unreadable is logged and the others are verified all the same.
    for domain in domains_for(settings):
        try:
            part = _sweep_domain(domain_settings(settings, domain), r, domain, now=now, started=started,
                                 budget=budget)
        except (OSError, RadarInputError) as exc:
            log.warning("verification of domain %s failed this sweep: %s", domain.id, exc)
            continue
        for name in ("products", "pending", "pruned"):
            summary[name] += part[name]
        for name, count in part["leads"].items():
            summary["leads"][name] += count
    return {**summary, "seconds": round(time.perf_counter() - started, 4)}


def _sweep_domain(settings: WorkerSettings, r: redis.Redis, domain: Domain, *, now: dt.datetime, started: float,
                  budget: float) -> dict[str, Any]:
    """:func:`sweep` for one domain, with that domain's settings (its feed and cadence)."""
    retention_start = now - dt.timedelta(days=settings.verification_retention_days)
    pruned = skill_store.prune(r, streams=tuple(stream_index(domain, s) for s in jobs.STREAMS),
                               before=retention_start)
    listing = {"kind": "nowcast"} if domain.default else {"domain": domain.id}
    records, _ = jobs.list_jobs(r, limit=settings.verification_lookback, **listing)  # type: ignore[arg-type]
    candidates = [rec for rec in records if rec.status == "successful" and rec.slot
                  and skill_store.parse_iso(rec.slot) >= retention_start]
    flags = skill_store.completed(r, [rec.job_id for rec in candidates])
    pending = sorted((rec for rec, done in zip(candidates, flags, strict=True) if not done),
                     key=lambda rec: rec.slot or "")
    totals = {"scored": 0, "missing": 0, "fallback": 0, "waiting": 0}
    feed = Path(settings.feed_dir or settings.data_dir / "feed")
    scans = ScanCache(list_scans(feed) if feed.is_dir() else {}, settings.timestep_minutes) if pending else None
    visited = 0
    for rec in pending:
        if time.perf_counter() - started > budget:
            break
        assert scans is not None
        for name, count in verify_product(settings, r, rec, scans=scans, now=now).items():
            totals[name] += count
        visited += 1
    return {"products": visited, "pending": len(pending) - visited, "pruned": pruned, "leads": totals}
