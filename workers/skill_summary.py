"""Scores over a window of verification records, and the source policy that reads them.

Interface (no torch; the API imports this)
-----------------------------------------
summarize(records, *, lead=None, thresholds=None) -> dict    per-lead and pooled scores of one stream
choose_source(r, settings) -> PolicyDecision                  which stream ``/nowcasts/latest`` serves
pooled_csi(records, threshold) -> (CSI or None, slots)        all leads of all records in one table

Every number is computed from merged sums (``SkillScores.merge``, then ``compute``): a window's
CSI is the CSI of its pooled contingency table, never a mean of per-slot ratios. Undefined
ratios (no event observed or forecast) are ``None`` in the JSON. Leads of ensemble products also
carry ``ensemble``: their probabilistic scores (CRPS, Brier, reliability) from merged
``EnsembleScores`` sums; a lead without ensemble products has no such key.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import redis

from model.verification.metrics import SkillScores, json_safe
from model.verification.probabilistic import EnsembleScores
from workers import jobs, skill_store
from workers.settings import WorkerSettings


def _merge(a: SkillScores | None, b: SkillScores) -> SkillScores:
    return b if a is None else a.merge(b)


def _scores(skill: SkillScores, thresholds: list[str] | None) -> dict[str, Any]:
    """{threshold: {csi, pod, far, bias, fss {scale: value}, hits, misses, false_alarms,
    correct_negatives}} of a one-lead SkillScores (several slots merged into it)."""
    computed = skill.compute()
    out: dict[str, Any] = {}
    for name in computed["thresholds"]:
        if thresholds is not None and name not in thresholds:
            continue
        counts = computed["contingency"]
        out[name] = {
            "csi": computed["csi"][name][0], "pod": computed["pod"][name][0], "far": computed["far"][name][0],
            "bias": computed["bias"][name][0],
            "fss": {scale: values[0] for scale, values in computed["fss"][name].items()},
            **{kind: int(counts[kind][name][0]) for kind in counts},
        }
    return json_safe(out)


def _pooled(skill: SkillScores) -> SkillScores:
    """Every lead of a (L, ...) SkillScores summed into one row: the window's overall table."""
    def total(values: np.ndarray) -> np.ndarray:
        return values.sum(axis=0, keepdims=True)

    return SkillScores(skill.thresholds, skill.scales, total(skill.hits), total(skill.misses),
                       total(skill.false_alarms), total(skill.correct_negatives), total(skill.fss_fct_sq),
                       total(skill.fss_fct_obs), total(skill.fss_obs_sq), total(skill.abs_error_sum),
                       total(skill.sq_error_sum), total(skill.valid_pixels), skill.count)


def _ensemble_scores(groups: dict[int, tuple[EnsembleScores, int]], thresholds: list[str] | None
                     ) -> dict[str, Any]:
    """One lead's probabilistic scores, from the member count with the most slots behind it.

    ``groups``: {members: (merged one-lead EnsembleScores, slots)}. Sums of different member counts
    do not merge (their probability levels differ), so a window that spans a change of
    ``NOWCAST_MEMBERS`` reports the larger group and says which.
    """
    members = max(groups, key=lambda m: (groups[m][1], m))
    scores, slots = groups[members]
    computed = scores.compute()
    names = [name for name in computed["thresholds"] if thresholds is None or name in thresholds]
    return json_safe({
        "members": members, "slots": slots, "floor_dbz": computed["floor_dbz"], "pixels": computed["pixels"][0],
        "crps_dbz": computed["crps_dbz"][0],
        "spread_dbz": computed["spread_skill"]["spread_dbz"][0], "rmse_dbz": computed["spread_skill"]["rmse_dbz"][0],
        "spread_skill_ratio": computed["spread_skill"]["ratio"][0],
        "brier": {name: computed["brier"][name][0] for name in names},
        "base_rate": {name: computed["base_rate"][name][0] for name in names},
        "brier_skill_climatology": {name: computed["brier_skill_climatology"][name][0] for name in names},
        "reliability": {name: {"probability": computed["reliability"][name]["probability"],
                               "forecasts": computed["reliability"][name]["forecasts"][0],
                               "observed": computed["reliability"][name]["observed"][0],
                               "observed_frequency": computed["reliability"][name]["observed_frequency"][0]}
                        for name in names},
    })


def summarize(records: list[skill_store.VerificationRecord], *, lead: int | None = None,
              thresholds: list[str] | None = None) -> dict[str, Any]:
    """Per-lead scores of one stream's records and all leads pooled, with the slots behind each.

    ``slots`` counts the slots whose lead was scored; ``missing`` those whose scan never came;
    ``fallback`` those the model's stream made by extrapolation (not scored as the model).
    """
    per_lead: dict[int, dict[str, Any]] = {}
    pooled: SkillScores | None = None
    scored_slots: set[str] = set()
    for record in records:
        if not record.meta:
            continue
        table = skill_store.thresholds_of(record.meta)
        scales = skill_store.scales_of(record.meta)
        for minutes, entry in record.leads.items():
            if lead is not None and minutes != lead:
                continue
            slot = per_lead.setdefault(minutes, {"skill": None, "slots": 0, "missing": 0, "fallback": 0})
            status = entry["status"]
            if status == "scored":
                one = skill_store.skill_of(entry, table, scales)
                slot["skill"] = _merge(slot["skill"], one)
                slot["slots"] += 1
                if "ensemble" in entry:
                    members = skill_store.ensemble_of(entry)
                    groups = slot.setdefault("ensemble", {})
                    merged, count = groups.get(members.members, (None, 0))
                    groups[members.members] = (members if merged is None else merged.merge(members), count + 1)
                pooled = _merge(pooled, one)
                scored_slots.add(record.meta["slot"])
            else:
                slot[status] += 1
    leads = []
    for minutes in sorted(per_lead):
        item = per_lead[minutes]
        leads.append({"lead_minutes": minutes, "slots": item["slots"], "missing": item["missing"],
                      "fallback": item["fallback"],
                      "scores": _scores(item["skill"], thresholds) if item["skill"] is not None else {}})
        if item.get("ensemble"):
            leads[-1]["ensemble"] = _ensemble_scores(item["ensemble"], thresholds)
    return {
        "slots": len(scored_slots),
        "products": sum(1 for record in records if record.meta),
        "missing_scans": sum(item["missing"] for item in per_lead.values()),
        "fallback_leads": sum(item["fallback"] for item in per_lead.values()),
        "leads": leads,
        "all_leads": _scores(_pooled(pooled), thresholds) if pooled is not None else {},
    }


def pooled_csi(records: list[skill_store.VerificationRecord], threshold: str) -> float | None:
    """CSI of one contingency table pooled over every scored lead of ``records``; None if undefined."""
    hits = misses = false_alarms = 0
    for record in records:
        names = [name for name, _ in skill_store.thresholds_of(record.meta)] if record.meta else []
        if threshold not in names:
            continue
        k = names.index(threshold)
        for entry in record.leads.values():
            if entry["status"] == "scored":
                sums = entry["sums"]
                hits += sums["hits"][k]
                misses += sums["misses"][k]
                false_alarms += sums["false_alarms"][k]
    total = hits + misses + false_alarms
    return hits / total if total else None


@dataclass
class PolicyDecision:
    """What ``/nowcasts/latest`` serves and why."""

    policy: str  # the setting: model | extrapolation | best
    served: str  # the stream: model | extrapolation
    reason: str
    csi: dict[str, float | None] = field(default_factory=dict)  # pooled CSI per stream ("best" only)
    slots: int = 0  # slots behind the comparison
    threshold: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return json_safe({"policy": self.policy, "served": self.served, "reason": self.reason, "csi": self.csi,
                          "slots": self.slots, "threshold": self.threshold})


def _comparable(record: skill_store.VerificationRecord) -> bool:
    """Fully verified with at least one scored lead (a fallback or all-missing slot compares nothing)."""
    return record.complete and any(entry["status"] == "scored" for entry in record.leads.values())


def choose_source(r: redis.Redis, settings: WorkerSettings, *, index: Callable[[str], str] | None = None
                  ) -> PolicyDecision:
    """The stream to serve under ``settings.source_policy``; ``index(stream)`` names a domain's
    verification index of the stream (workers/domains.py; default: the stream, the default domain's).

    ``best`` compares the streams on the same slots: the newest ``policy_slots`` slots verified in
    both, each stream's CSI at ``policy_threshold_dbz`` pooled over those slots and all leads. With
    fewer than ``policy_min_slots`` such slots, or a tie, the model is served.
    """
    policy = settings.source_policy
    if policy != "best":
        return PolicyDecision(policy, policy, f"NOWCAST_SOURCE_POLICY={policy}")
    threshold = f"{settings.policy_threshold_dbz:g}dBZ"
    depth = settings.policy_slots * 3 + 10  # room for slots verified in one stream only
    indexes = {stream: index(stream) if index else stream for stream in jobs.STREAMS}
    by_slot = {stream: {rec.meta.get("slot"): rec for rec in skill_store.latest_records(r, stream=indexes[stream],
                                                                                         count=depth)
                        if _comparable(rec)} for stream in jobs.STREAMS}
    common = sorted(set(by_slot[jobs.MODEL_STREAM]) & set(by_slot[jobs.EXTRAPOLATION_STREAM]), reverse=True)
    common = common[: settings.policy_slots]
    csi = {stream: pooled_csi([by_slot[stream][slot] for slot in common], threshold) for stream in jobs.STREAMS}
    if len(common) < settings.policy_min_slots:
        return PolicyDecision(policy, jobs.MODEL_STREAM,
                              f"best: only {len(common)} slot(s) verified in both streams, fewer than the "
                              f"{settings.policy_min_slots} needed; serving the model", csi, len(common), threshold)
    model_csi = csi[jobs.MODEL_STREAM]
    extrapolation_csi = csi[jobs.EXTRAPOLATION_STREAM]
    if extrapolation_csi is not None and (model_csi is None or extrapolation_csi > model_csi):
        served = jobs.EXTRAPOLATION_STREAM
    else:
        served = jobs.MODEL_STREAM
    def text(value: float | None) -> str:
        return "undefined" if value is None else f"{value:.3f}"

    return PolicyDecision(policy, served,
                          f"best: CSI at {threshold} over the last {len(common)} slots verified in both, "
                          f"model {text(model_csi)}, extrapolation {text(extrapolation_csi)}", csi,
                          len(common), threshold)


def window(now: dt.datetime, hours: float = 24.0) -> tuple[dt.datetime, dt.datetime]:
    """The default window: the last ``hours`` of slots up to ``now``."""
    return now - dt.timedelta(hours=hours), now
