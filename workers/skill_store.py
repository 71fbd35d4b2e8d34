"""Verification records in Redis: the raw skill sums of every (slot, stream, lead), written once.

Interface (keyword-only functions over a ``redis.Redis`` client; no torch, the API imports this)
--------------------------------------------------------------------------------------------
write_meta(r, *, job_id, meta)                    the product's description (first writer wins)
write_lead(r, *, job_id, lead_minutes, entry) -> bool   HSETNX: False when that lead already has one
write_leads(r, *, job_id, entries) -> {lead: bool}       many leads' HSETNX in one round trip
read_record(r, *, job_id) -> VerificationRecord | None
complete(r, *, job_id) / completed(r, job_ids) -> [bool]   every lead has an entry
records_between(r, *, stream, since, until) -> [VerificationRecord]   oldest slot first
prune(r, *, before) -> int                        retention: drop records of slots before ``before``
skill_of(entry, thresholds, scales) -> SkillScores  one lead's sums as a mergeable object
ensemble_sums_of(scores, row) / ensemble_of(entry) -> EnsembleScores   an ensemble lead's probabilistic sums

Layout: one hash per product, ``nowcast:verif:<job_id>``, with a ``meta`` field and one
``lead:<MMM>`` field per lead time (MMM minutes after the reference time); a sorted set per
stream, ``nowcast:verif:index:<stream>``, scored by the slot's epoch seconds; and the set
``nowcast:verif:complete``. Each lead entry is one of::

    {"status": "scored",   "valid_time": ISO, "sums": {hits: [K], misses: [K], false_alarms: [K],
                            correct_negatives: [K], fss_fct_sq: [K][S], fss_fct_obs: [K][S],
                            fss_obs_sq: [K][S], abs_error_sum, sq_error_sum, valid_pixels}}
    {"status": "scored", ..., "ensemble": {members, thresholds [[name, dBZ]], pixels, crps_sum,
                            variance_sum, mean_sq_error_sum, forecasts: [K][M+1], observed: [K][M+1],
                            ranks: [M+1]}}   an ensemble product: its mean in "sums", its members here
    {"status": "missing",  "valid_time": ISO, "reason": "..."}    the scan never came (or is unusable)
    {"status": "fallback", "valid_time": ISO}   the model's stream made this product by extrapolation

Sums, not scores, are stored, so any window merges exactly (``SkillScores.merge``). Floats go
through JSON as ``repr``, which round-trips float64 exactly.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import redis

from model.verification.metrics import SkillScores
from model.verification.probabilistic import EnsembleScores

KEY_PREFIX = "nowcast:verif:"
COMPLETE_KEY = f"{KEY_PREFIX}complete"
LEAD_STATUSES = ("scored", "missing", "fallback")
COUNT_NAMES = ("hits", "misses", "false_alarms", "correct_negatives")
FSS_NAMES = ("fss_fct_sq", "fss_fct_obs", "fss_obs_sq")


@dataclass
class VerificationRecord:
    """One product's verification: ``meta`` (job_id, slot, stream, product_source, reference_time,
    n_leads, thresholds [[name, dBZ]], scales [pixels]) and ``leads`` {lead minutes: entry}."""

    job_id: str
    meta: dict[str, Any]
    leads: dict[int, dict[str, Any]] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return bool(self.meta) and len(self.leads) >= int(self.meta.get("n_leads", 0))


def _record_key(job_id: str) -> str:
    return f"{KEY_PREFIX}{job_id}"


def _index_key(stream: str) -> str:
    return f"{KEY_PREFIX}index:{stream}"


def _lead_field(lead_minutes: int) -> str:
    return f"lead:{int(lead_minutes):03d}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _epoch(moment: dt.datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp()


def parse_iso(text: str) -> dt.datetime:
    """ISO-8601 (``Z`` allowed) -> aware UTC datetime."""
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def write_meta(r: redis.Redis, *, job_id: str, meta: dict[str, Any]) -> None:
    """Describe the product once and index it under its stream by slot time."""
    slot = parse_iso(meta["slot"])
    with r.pipeline(transaction=True) as pipe:
        pipe.hsetnx(_record_key(job_id), "meta", json.dumps(meta, separators=(",", ":")))
        # A domain other than the default indexes under "<domain>:<stream>" (workers/domains.py), so that
        # each domain's window is its own and the plain stream stays the default domain's.
        pipe.zadd(_index_key(meta.get("index") or meta["stream"]), {job_id: _epoch(slot)})
        pipe.execute()


def write_lead(r: redis.Redis, *, job_id: str, lead_minutes: int, entry: dict[str, Any]) -> bool:
    """Record one lead's outcome unless it already has one (exactly once, whoever writes first)."""
    if entry.get("status") not in LEAD_STATUSES:
        raise ValueError(f"lead status must be one of {LEAD_STATUSES}, not {entry.get('status')!r}")
    return bool(r.hsetnx(_record_key(job_id), _lead_field(lead_minutes), json.dumps(entry, separators=(",", ":"))))


def write_leads(r: redis.Redis, *, job_id: str, entries: dict[int, dict[str, Any]]) -> dict[int, bool]:
    """:func:`write_lead` for several leads in one pipeline; each HSETNX stays atomic on its own, so a
    writer killed halfway leaves whole entries that the next sweep keeps, and writes the rest."""
    for entry in entries.values():
        if entry.get("status") not in LEAD_STATUSES:
            raise ValueError(f"lead status must be one of {LEAD_STATUSES}, not {entry.get('status')!r}")
    if not entries:
        return {}
    with r.pipeline(transaction=False) as pipe:
        for lead_minutes, entry in entries.items():
            pipe.hsetnx(_record_key(job_id), _lead_field(lead_minutes), json.dumps(entry, separators=(",", ":")))
        written = pipe.execute()
    return {lead: bool(flag) for lead, flag in zip(entries, written, strict=True)}


def mark_complete(r: redis.Redis, *, job_id: str) -> None:
    r.sadd(COMPLETE_KEY, job_id)


def completed(r: redis.Redis, job_ids: list[str]) -> list[bool]:
    """Whether each product is fully verified (every lead has an entry)."""
    if not job_ids:
        return []
    return [bool(flag) for flag in r.smismember(COMPLETE_KEY, job_ids)]


def _from_hash(job_id: str, raw: dict[Any, Any]) -> VerificationRecord:
    meta: dict[str, Any] = {}
    leads: dict[int, dict[str, Any]] = {}
    for key, value in raw.items():
        name = _text(key)
        if name == "meta":
            meta = json.loads(_text(value))
        elif name.startswith("lead:"):
            leads[int(name.removeprefix("lead:"))] = json.loads(_text(value))
    return VerificationRecord(job_id, meta, dict(sorted(leads.items())))


def read_record(r: redis.Redis, *, job_id: str) -> VerificationRecord | None:
    raw = r.hgetall(_record_key(job_id))
    return _from_hash(job_id, raw) if raw else None


def records_between(r: redis.Redis, *, stream: str, since: dt.datetime, until: dt.datetime
                    ) -> list[VerificationRecord]:
    """The stream's records with ``since <= slot < until``, oldest slot first."""
    ids = [_text(i) for i in r.zrangebyscore(_index_key(stream), _epoch(since), f"({_epoch(until)}")]
    with r.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hgetall(_record_key(job_id))
        raws = pipe.execute()
    return [_from_hash(job_id, raw) for job_id, raw in zip(ids, raws, strict=True) if raw]


def latest_records(r: redis.Redis, *, stream: str, count: int) -> list[VerificationRecord]:
    """The stream's ``count`` newest records by slot, newest first."""
    ids = [_text(i) for i in r.zrevrange(_index_key(stream), 0, count - 1)]
    with r.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hgetall(_record_key(job_id))
        raws = pipe.execute()
    return [_from_hash(job_id, raw) for job_id, raw in zip(ids, raws, strict=True) if raw]


def prune(r: redis.Redis, *, streams: tuple[str, ...], before: dt.datetime) -> int:
    """Delete the records of slots before ``before`` (the retention); returns how many went."""
    removed = 0
    for stream in streams:
        index = _index_key(stream)
        ids = [_text(i) for i in r.zrangebyscore(index, "-inf", f"({_epoch(before)}")]
        if not ids:
            continue
        with r.pipeline(transaction=True) as pipe:
            pipe.delete(*[_record_key(job_id) for job_id in ids])
            pipe.zrem(index, *ids)
            pipe.srem(COMPLETE_KEY, *ids)
            pipe.execute()
        removed += len(ids)
    return removed


def sums_of(skill: SkillScores, row: int) -> dict[str, Any]:
    """Row ``row`` (one lead) of a :class:`SkillScores`' sums as plain JSON numbers."""
    sums: dict[str, Any] = {name: getattr(skill, name)[row].tolist() for name in COUNT_NAMES + FSS_NAMES}
    sums["abs_error_sum"] = float(skill.abs_error_sum[row])
    sums["sq_error_sum"] = float(skill.sq_error_sum[row])
    sums["valid_pixels"] = int(skill.valid_pixels[row])
    return sums


def skill_of(entry: dict[str, Any], thresholds: tuple[tuple[str, float], ...], scales: tuple[int, ...]
             ) -> SkillScores:
    """A scored lead entry as a one-lead, one-sequence :class:`SkillScores` (merge these for windows)."""
    sums = entry["sums"]
    counts = [np.asarray([sums[name]], dtype=np.int64) for name in COUNT_NAMES]
    fss = [np.asarray([sums[name]], dtype=np.float64) for name in FSS_NAMES]
    errors = [np.asarray([sums[name]], dtype=np.float64) for name in ("abs_error_sum", "sq_error_sum")]
    return SkillScores(thresholds, scales, *counts, *fss, *errors,
                       np.asarray([sums["valid_pixels"]], dtype=np.int64), 1)


ENSEMBLE_FLOATS = ("crps_sum", "variance_sum", "mean_sq_error_sum")
ENSEMBLE_COUNTS = ("forecasts", "observed", "ranks")


def ensemble_sums_of(scores: EnsembleScores, row: int) -> dict[str, Any]:
    """Row ``row`` (one lead) of an :class:`EnsembleScores`' sums as plain JSON numbers."""
    sums: dict[str, Any] = {"members": scores.members,
                            "thresholds": [[name, value] for name, value in scores.thresholds],
                            "pixels": int(scores.pixels[row])}
    sums.update({name: float(getattr(scores, name)[row]) for name in ENSEMBLE_FLOATS})
    sums.update({name: getattr(scores, name)[row].tolist() for name in ENSEMBLE_COUNTS})
    return sums


def ensemble_of(entry: dict[str, Any]) -> EnsembleScores:
    """A scored ensemble lead's sums as a one-lead, one-sequence :class:`EnsembleScores` (merge for windows)."""
    sums = entry["ensemble"]
    thresholds = tuple((str(name), float(value)) for name, value in sums["thresholds"])
    floats = [np.asarray([sums[name]], dtype=np.float64) for name in ENSEMBLE_FLOATS]
    counts = [np.asarray([sums[name]], dtype=np.int64) for name in ENSEMBLE_COUNTS]
    return EnsembleScores(int(sums["members"]), thresholds, np.asarray([sums["pixels"]], dtype=np.int64),
                          *floats, *counts, count=1)


def thresholds_of(meta: dict[str, Any]) -> tuple[tuple[str, float], ...]:
    return tuple((str(name), float(value)) for name, value in meta["thresholds"])


def scales_of(meta: dict[str, Any]) -> tuple[int, ...]:
    return tuple(int(scale) for scale in meta["scales"])
