"""What the calibrated family of perturbations can reach at best, per lead, read off a calibration's grid.

    python -m benchmarks.ensemble_ceiling results/ensemble/calibration_rearranged_48.json \
        --json results/ensemble/ceiling.json

A calibration (benchmarks.ensemble_calibration) scores every combination of amplitudes on its
grid at every lead on validation storms, with STEPS on the same storms. The selection then trades
CRPS against dispersion. This asks what no selection can get past: per lead,

- ``max_spread_skill``: the largest spread-skill ratio of any combination, whatever its CRPS;
- ``max_spread_skill_below_steps``: the largest among combinations whose CRPS is below STEPS';
- ``best_bss_below_steps``: per Brier threshold, the best Brier skill score against STEPS
  (1 - Brier / STEPS' Brier) among those same combinations.

If the first is under 0.8 at a lead, no amplitudes of that grid give a well-dispersed ensemble
there, and a selection rule cannot change it; the same goes for a best BSS under 0.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
from pathlib import Path

import numpy as np

from benchmarks.report import emit_json

log = logging.getLogger("benchmarks.ensemble_ceiling")


def ceiling(calibration: dict) -> dict:
    """The per-lead ceilings of one calibration JSON (its grid and its STEPS reference)."""
    reference = calibration.get("steps_reference")
    if not reference or not calibration.get("grid_brier"):
        raise ValueError("the calibration has no STEPS reference or no Brier scores: run it with --with-steps")
    crps = np.asarray(calibration["grid_crps_dbz"], dtype=np.float64)[1:]  # row 0: the deterministic forecast
    ratio = np.asarray(calibration["grid_spread_skill"], dtype=np.float64)[1:]
    brier = np.asarray(calibration["grid_brier"], dtype=np.float64)[1:]  # (combos, steps, thresholds)
    steps_crps = np.asarray(reference["crps_dbz"], dtype=np.float64)
    steps_brier = np.asarray(reference["brier"], dtype=np.float64)  # (steps, thresholds)
    below = crps < steps_crps[None]
    masked_ratio = np.where(below, ratio, -np.inf)
    skill = 1.0 - brier / np.maximum(steps_brier[None], 1e-12)
    masked_skill = np.where(below[..., None], skill, -np.inf)

    def finite(values: np.ndarray) -> list:
        return [None if not np.isfinite(v) else round(float(v), 3) for v in values]

    return {
        "max_spread_skill": finite(ratio.max(axis=0)),
        "max_spread_skill_below_steps": finite(masked_ratio.max(axis=0)),
        "steps_spread_skill": finite(np.asarray(reference["spread_skill"], dtype=np.float64)),
        "best_bss_below_steps": {f"{t:g}": finite(masked_skill[..., j].max(axis=0))
                                 for j, t in enumerate(calibration["brier_thresholds_dbz"])},
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ensemble_ceiling", description=__doc__.splitlines()[0])
    parser.add_argument("calibration", type=Path, help="a benchmarks.ensemble_calibration JSON")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        calibration = json.loads(args.calibration.read_text())
        result = ceiling(calibration)
    except (OSError, json.JSONDecodeError, KeyError, ValueError) as exc:
        parser.error(f"{args.calibration}: {exc}")
    minutes = int(calibration.get("timestep_minutes", 6))
    report = {"benchmark": "ensemble_ceiling", "date": dt.date.today().isoformat(),
              "calibration": str(args.calibration), "sequences": calibration.get("sequences"),
              "lead_minutes": [minutes * (k + 1) for k in range(len(result["max_spread_skill"]))], **result}
    emit_json(report, args.json)
    for k in (4, 9):
        if k < len(result["max_spread_skill"]):
            log.info("%d min: spread-skill at most %s (%s with CRPS below STEPS'; STEPS %s); best BSS there %s",
                     minutes * (k + 1), result["max_spread_skill"][k], result["max_spread_skill_below_steps"][k],
                     result["steps_spread_skill"][k],
                     {t: v[k] for t, v in result["best_bss_below_steps"].items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
