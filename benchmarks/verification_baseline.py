"""The slot verification as it was before the shared truth, kept so a benchmark can time both in one run.

    baseline_accum(skill, truth_dbz, pred_dbz)      SkillScores sums with scipy box filters, per forecast
    verify_product_baseline(settings, r, record, *, scans, now) -> {outcome: count}

Its files are read through ``read_scans`` (the benchmark gives it a ``ScanCache(lean=False)``), and
the product whole. Every forecast pays for its own observed events and fractions (two ``uniform_filter`` passes per
threshold and scale, float64), and every lead is one HSETNX round trip. Only the benchmark and the
tests that compare the two paths call this; the sweep uses :mod:`workers.verification`.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import redis
from scipy.ndimage import uniform_filter

from model.io.netcdf import read_scans
from model.verification.metrics import SkillScores
from workers import jobs, skill_store
from workers.settings import WorkerSettings
from workers.verification import SCALES, THRESHOLDS, ScanCache


def _fractions(events: np.ndarray, scale: int) -> np.ndarray:
    binary = events.astype(np.float64)
    if scale <= 1:
        return binary
    return uniform_filter(binary, size=(1, 1, scale, scale), mode="constant", cval=0.0)


def baseline_accum(skill: SkillScores, truth_dbz: np.ndarray, pred_dbz: np.ndarray) -> None:
    """``SkillScores.accum`` as it was: floating-point box filters on both fields of every pair."""
    truth = np.asarray(truth_dbz, dtype=np.float64)
    pred = np.asarray(pred_dbz, dtype=np.float64)
    axes = (0, 2, 3)
    valid = np.isfinite(truth) & np.isfinite(pred)
    error = np.where(valid, pred - truth, 0.0)
    skill.abs_error_sum += np.sum(np.abs(error), axis=axes)
    skill.sq_error_sum += np.sum(error * error, axis=axes)
    skill.valid_pixels += np.sum(valid, axis=axes)
    for k, (_, threshold) in enumerate(skill.thresholds):
        obs_event = truth >= threshold
        fct_event = pred >= threshold
        skill.hits[:, k] += np.sum(obs_event & fct_event & valid, axis=axes)
        skill.misses[:, k] += np.sum(obs_event & ~fct_event & valid, axis=axes)
        skill.false_alarms[:, k] += np.sum(~obs_event & fct_event & valid, axis=axes)
        skill.correct_negatives[:, k] += np.sum(~obs_event & ~fct_event & valid, axis=axes)
        for s, scale in enumerate(skill.scales):
            fct_frac = _fractions(fct_event, scale)
            obs_frac = _fractions(obs_event, scale)
            skill.fss_fct_sq[:, k, s] += np.sum(fct_frac * fct_frac, axis=axes)
            skill.fss_fct_obs[:, k, s] += np.sum(fct_frac * obs_frac, axis=axes)
            skill.fss_obs_sq[:, k, s] += np.sum(obs_frac * obs_frac, axis=axes)
    skill.count += truth.shape[0]


def verify_product_baseline(settings: WorkerSettings, r: redis.Redis, record: jobs.JobRecord, *, scans: ScanCache,
                            now: dt.datetime) -> dict[str, int]:
    """The old ``verify_product`` for a product whose scans have all arrived (the benchmark's case)."""
    outcome = {"scored": 0, "missing": 0, "fallback": 0, "waiting": 0}
    product = read_scans(Path(record.products["netcdf"]), timestep_minutes=settings.timestep_minutes)
    reference = skill_store.parse_iso(record.reference_time or record.slot or "")
    valid_times = [value.astype("datetime64[s]").astype(dt.datetime).replace(tzinfo=dt.UTC)
                   for value in product.times]
    lead_minutes = [int(round((t - reference).total_seconds() / 60)) for t in valid_times]
    skill_store.write_meta(r, job_id=record.job_id, meta={
        "job_id": record.job_id, "slot": record.slot, "stream": jobs.nowcast_stream(record.job_id),
        "product_source": record.source, "reference_time": record.reference_time, "n_leads": len(lead_minutes),
        "lead_minutes": lead_minutes, "thresholds": [[n, v] for n, v in THRESHOLDS], "scales": list(SCALES)})
    truth = np.stack([scans.get(valid) for valid in valid_times])  # type: ignore[misc]
    skill = SkillScores.init(len(valid_times), THRESHOLDS, SCALES)
    baseline_accum(skill, truth[None], product.dbz[None])
    for row, (lead, valid) in enumerate(zip(lead_minutes, valid_times, strict=True)):
        entry = {"status": "scored", "valid_time": valid.strftime("%Y-%m-%dT%H:%M:%SZ"),
                 "sums": skill_store.sums_of(skill, row)}
        if skill_store.write_lead(r, job_id=record.job_id, lead_minutes=lead, entry=entry):
            outcome["scored"] += 1
    skill_store.mark_complete(r, job_id=record.job_id)
    return outcome
