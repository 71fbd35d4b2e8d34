"""Which measure of a case, read off its context alone, tells how wrong its forecast will be.

    OMP_NUM_THREADS=1 python -m benchmarks.predictability --sequences 48 --flows 12 \
        --json results/ensemble/predictability.json

The ensemble widens its members by a factor read off the case's context (model/ensemble.py). This
scores candidate measures against the error the deterministic default then makes on the same
cases: the calibration's validation storms and, with ``--flows``, its flows of each kind
(benchmarks.ensemble_calibration's cases, never test data). Per case:

- ``motion_change``: what the served ensemble uses (model.ensemble.motion_change, px/scan^2).
- ``hindcast_mae_<h>``: extrapolation (model.baselines.extrapolation, its 3-scan motion) from the
  context without its newest ``h`` scans, scored against the newest scan: MAE in dBZ, below 0 dBZ
  counted as 0 dBZ. The context's own forecast error, ``h`` scans ahead.
- ``hindcast_miss_<h>``: the same hindcast's 1 - CSI at 20 dBZ.
- ``hindcast_relative_<h>``: the hindcast's MAE over the newest scan's mean echo (dBZ at or above
  0 dBZ): the error per unit of rain, since a case with more rain has more of both.

and the outcomes: the deterministic default's MAE (dBZ, as above) and 1 - CSI at 20 dBZ at 30 and
60 minutes, and ``best_offset_<lead>``: the motion offset (px, of the calibration grid) whose
members (``--members``, offsets only, intensities matched as served, seed ``seed + case``) have
the least CRPS on this case at that lead. The offset is what the case's factor scales, so this
is the outcome a measure must rank. The JSON has every case's values, the Spearman rank correlation of each measure with
each outcome over all cases and over the storms alone, and each measure's median per kind of case
(how well it tells storms from flows).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import time
from pathlib import Path

import numpy as np

from benchmarks.ensemble_calibration import KINDS, SCORE_FLOOR_DBZ, validation_batches
from benchmarks.machine import machine_description
from benchmarks.report import emit_json

log = logging.getLogger("benchmarks.predictability")

HINDCAST_STEPS = (3, 6)
OUTCOME_LEADS = {"30min": 5, "60min": 10}  # 6-minute scans
THRESHOLD_DBZ = 20.0


def mae(forecast_dbz: np.ndarray, truth_dbz: np.ndarray) -> float:
    """Mean absolute error in dBZ, below :data:`SCORE_FLOOR_DBZ` counted as that floor."""
    return float(np.mean(np.abs(np.maximum(forecast_dbz, SCORE_FLOOR_DBZ) - np.maximum(truth_dbz, SCORE_FLOOR_DBZ))))


def miss(forecast_dbz: np.ndarray, truth_dbz: np.ndarray) -> float:
    """1 - CSI at :data:`THRESHOLD_DBZ`; 0 where neither field has any such echo."""
    f, t = forecast_dbz >= THRESHOLD_DBZ, truth_dbz >= THRESHOLD_DBZ
    union = np.count_nonzero(f | t)
    return 0.0 if union == 0 else 1.0 - np.count_nonzero(f & t) / union


def context_measures(context_dbz: np.ndarray, floor: float) -> dict[str, float]:
    """Every candidate measure of one case, from its context (T, H, W) in dBZ alone."""
    from model.baselines import estimate_motion, extrapolation
    from model.ensemble import motion_change
    from model.network.lagrangian import MOTION_FRAMES

    velocity = estimate_motion(context_dbz[-MOTION_FRAMES:], zerovalue=floor)
    out = {"motion_change": float(motion_change(context_dbz, velocity, zerovalue=floor) or np.nan)}
    echo = float(np.mean(np.maximum(context_dbz[-1], SCORE_FLOOR_DBZ)))
    for h in HINDCAST_STEPS:
        if context_dbz.shape[0] - h < MOTION_FRAMES:
            continue
        hindcast = extrapolation(context_dbz[:-h], h, zerovalue=floor)[-1]
        out[f"hindcast_mae_{h}"] = mae(hindcast, context_dbz[-1])
        out[f"hindcast_miss_{h}"] = miss(hindcast, context_dbz[-1])
        out[f"hindcast_relative_{h}"] = out[f"hindcast_mae_{h}"] / max(echo, 1e-3)
    return out


def best_offsets(lagrangian_dbz: np.ndarray, motion, previous_dbz: np.ndarray, newest_dbz: np.ndarray,
                 truth_dbz: np.ndarray, members: int, seed: int, floor: float, cap: float) -> dict[str, float]:
    """Per outcome lead, the offset of the calibration grid whose members have the least CRPS here."""
    from benchmarks.ensemble_calibration import DISPLACEMENTS_PX, crps_per_lead
    from model.ensemble import EnsembleSettings, apply_perturbations, draw_perturbations, match_intensities

    steps = max(OUTCOME_LEADS.values())
    settings = EnsembleSettings()
    draws = draw_perturbations(previous_dbz, newest_dbz, members, seed, settings.cascade_levels, centred=True)
    matched = match_intensities(lagrangian_dbz[:steps], newest_dbz, 1.0)
    crps = np.array([crps_per_lead(apply_perturbations(matched, motion, draws, np.full(steps, d), np.zeros(steps),
                                                       floor, cap), truth_dbz[:steps])[0]
                     for d in DISPLACEMENTS_PX])  # (offsets, steps)
    return {f"best_offset_{name}": float(DISPLACEMENTS_PX[int(np.argmin(crps[:, lead - 1]))])
            for name, lead in OUTCOME_LEADS.items()}


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation (NaN pairs dropped)."""
    from scipy.stats import spearmanr

    keep = np.isfinite(x) & np.isfinite(y)
    return round(float(spearmanr(x[keep], y[keep]).statistic), 3) if keep.sum() > 2 else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.predictability", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("model/checkpoints/radar_lagrangian.pt"))
    parser.add_argument("--sequences", type=int, default=48, help="validation storms")
    parser.add_argument("--flows", type=int, default=12, help="cases of each kind of flow")
    parser.add_argument("--grid", default="128x128")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="as benchmarks.ensemble_calibration's, for its flows")
    parser.add_argument("--members", type=int, default=20, help="members of the best-offset search")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.sequences < 3:
        parser.error("--sequences must be at least 3 to rank anything")
    if max(OUTCOME_LEADS.values()) > args.steps:
        parser.error(f"--steps must be at least {max(OUTCOME_LEADS.values())}")
    if not args.checkpoint.is_file():
        parser.error(f"{args.checkpoint}: no such checkpoint")

    import torch

    from model.checkpoint import load_checkpoint
    from model.ensemble import newest_pair
    from model.forecast import forecast_lagrangian_frames
    from model.io.units import model_to_dbz

    model, meta = load_checkpoint(args.checkpoint)
    model.eval()
    source, batches = validation_batches(args)
    scaling = meta.get("scaling") or source.scaling
    floor, cap = float(scaling["dbz_min"]), float(scaling["dbz_max"])
    total = args.sequences + 2 * args.flows
    cases: list[dict] = []
    started = last = time.perf_counter()
    for batch in batches:
        context, truth = batch[:, : source.input_length], batch[:, source.input_length:]
        with torch.inference_mode():
            predicted, motions = forecast_lagrangian_frames(model, context, args.steps, "fp32", torch.device("cpu"),
                                                      scaling=scaling)
        for i in range(batch.shape[0]):
            kind = KINDS[0] if len(cases) < args.sequences else KINDS[1]
            forecast_dbz = model_to_dbz(predicted[i, :, 0], scaling)
            truth_dbz = model_to_dbz(truth[i, :, 0], scaling)
            row = {"kind": kind, **context_measures(model_to_dbz(context[i, :, 0], scaling), floor)}
            for name, lead in OUTCOME_LEADS.items():
                row[f"mae_{name}"] = mae(forecast_dbz[lead - 1], truth_dbz[lead - 1])
                row[f"miss_{name}"] = miss(forecast_dbz[lead - 1], truth_dbz[lead - 1])
            motion = None if motions is None else motions[i]
            previous, newest = (model_to_dbz(f, scaling) for f in newest_pair(context[i, :, 0], motion))
            row.update(best_offsets(forecast_dbz, motion, previous, newest, truth_dbz, args.members,
                                    args.seed + len(cases), floor, cap))
            cases.append({k: (round(v, 5) if isinstance(v, float) else v) for k, v in row.items()})
        now = time.perf_counter()
        if now - last > 20:
            rate = len(cases) / (now - started)
            log.info("%d / %d cases, %.2f cases/s, ETA %.0f s", len(cases), total, rate, (total - len(cases)) / rate)
            last = now

    measures = [k for k in cases[0] if k == "motion_change" or k.startswith("hindcast_")]
    outcomes = [k for k in cases[0] if k.startswith(("mae_", "miss_", "best_offset_"))]

    def column(name: str, rows: list[dict]) -> np.ndarray:
        return np.array([r[name] for r in rows], dtype=np.float64)

    storms = [r for r in cases if r["kind"] == KINDS[0]]
    result = {
        "benchmark": "predictability",
        "date": dt.date.today().isoformat(),
        "machine": machine_description(),
        "config": {"checkpoint": str(args.checkpoint), "sequences": args.sequences, "flows": args.flows,
                   "grid": args.grid, "steps": args.steps, "seed": args.seed, "members": args.members,
                   "hindcast_steps": list(HINDCAST_STEPS), "threshold_dbz": THRESHOLD_DBZ},
        "spearman_all": {m: {o: spearman(column(m, cases), column(o, cases)) for o in outcomes} for m in measures},
        "spearman_storms": {m: {o: spearman(column(m, storms), column(o, storms)) for o in outcomes}
                            for m in measures},
        "median_by_kind": {m: {k: round(float(np.nanmedian(column(m, [r for r in cases if r["kind"] == k]))), 4)
                               for k in KINDS if any(r["kind"] == k for r in cases)} for m in measures + outcomes},
        "cases": cases,
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
    emit_json(result, args.json)
    for scope in ("spearman_all", "spearman_storms"):
        log.info("%s: %s", scope, json.dumps(result[scope]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
