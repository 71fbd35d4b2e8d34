"""The served ensemble away from its calibration storms: flows that grow and decay their rain.

    OMP_NUM_THREADS=2 python -m benchmarks.ensemble_shift --storms 24 --json results/ensemble/shift.json

The ensemble's amplitudes are fitted on the synthetic source's storms (benchmarks.ensemble_calibration),
which live and die on their own. Half of the default model's training data are other kinds: a
developed storm field or rain with a composite's texture, set in motion by a drawn flow with one
region growing and another decaying (``model.training.lagrangian.evolving_storm``), and the real
composite cases are of that kind too. This scores, on ``--storms`` new cases of each of those two
kinds (drawn from entropy ``[seed, 99, i]``, which no training or validation split uses; 128 x 128,
10 scans in, 20 out), the deterministic default beside the served ensemble with each intensity
matching share of ``--shares`` (the rest of the calibration as served): CRPS per lead, the Brier
score summed at 20 and 30 dBZ at 30 and 60 minutes, and the spread-skill ratio at 30 and 60 minutes.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import logging
import time
from pathlib import Path

import numpy as np

from benchmarks.machine import machine_description
from benchmarks.report import emit_json

log = logging.getLogger("benchmarks.ensemble_shift")

KINDS = ("evolving", "textured")
CONTEXT, STEPS = 10, 20


def summary(result: dict) -> dict:
    """The scores this benchmark reports, from :meth:`EnsembleScores.compute`'s result."""
    brier = result["brier"]
    out = {"crps_dbz": [round(float(v), 4) for v in result["crps_dbz"]],
           "crps_summed": round(float(np.sum(result["crps_dbz"])), 3),
           "brier_summed_20_30dBZ_30_60min": round(float(sum(brier[t][k] for t in ("20dBZ", "30dBZ") for k in (4, 9))),
                                                   5)}
    ratio = result["spread_skill"]["ratio"]
    if ratio is not None and result["members"] > 1:
        out["spread_skill_30_60min"] = [round(float(ratio[4]), 3), round(float(ratio[9]), 3)]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ensemble_shift", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("model/checkpoints/radar_lagrangian.pt"))
    parser.add_argument("--storms", type=int, default=24, help="cases of each kind")
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument("--grid", type=int, default=128, help="square grid size, px")
    parser.add_argument("--shares", default="0,1", help="intensity matching shares to compare, comma-separated")
    parser.add_argument("--seed", type=int, default=0, help="the cases' entropy and, with the case index, the members'")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from model.checkpoint import load_checkpoint
    from model.ensemble import EnsembleSettings, forecast_ensemble_dbz
    from model.training.lagrangian import evolving_storm
    from model.verification.probabilistic import EnsembleScores

    shares = [float(v) for v in args.shares.split(",")]
    if not all(0.0 <= a <= 1.0 for a in shares):
        parser.error("--shares must be in [0, 1]")
    model, meta = load_checkpoint(args.checkpoint)
    model.eval()
    served = EnsembleSettings.for_checkpoint(args.checkpoint)
    variants = {"deterministic default": (1, served)}
    for share in shares:
        variants[f"ensemble, intensity matching {share:g}"] = (
            args.members, dataclasses.replace(served, intensity_matching=(share,)))
    started = last = time.perf_counter()
    kinds = {}
    for k, kind in enumerate(KINDS):
        scores = {name: EnsembleScores.init(STEPS, members) for name, (members, _) in variants.items()}
        for i in range(args.storms):
            entropy = [args.seed, 99, i]
            scans = evolving_storm(np.random.default_rng([*entropy, 1]), entropy, CONTEXT + STEPS, args.grid, args.grid,
                                   textured=kind == "textured")
            for name, (members, settings) in variants.items():
                forecast = forecast_ensemble_dbz(model, scans[:CONTEXT], STEPS, members=members, seed=args.seed + i,
                                                 settings=settings, scaling=meta["scaling"])
                scores[name].accum(scans[None, CONTEXT:], forecast[None])
            done = k * args.storms + i + 1
            now = time.perf_counter()
            if now - last > 20 or done == len(KINDS) * args.storms:
                rate = done / (now - started)
                log.info("%d / %d cases, %.2f cases/s, ETA %.0f s", done, len(KINDS) * args.storms, rate,
                         (len(KINDS) * args.storms - done) / rate)
                last = now
        kinds[kind] = {name: summary(score.compute()) for name, score in scores.items()}
    report = {
        "benchmark": "ensemble_shift", "date": dt.date.today().isoformat(), "machine": machine_description(),
        "checkpoint": str(args.checkpoint), "calibration": served.describe(), "storms_per_kind": args.storms,
        "grid": f"{args.grid}x{args.grid}", "context": CONTEXT, "steps": STEPS, "members": args.members,
        "seed": args.seed, "kinds": kinds, "seconds": round(time.perf_counter() - started, 1),
        "command": f"python -m benchmarks.ensemble_shift --storms {args.storms} --members {args.members} "
                   f"--grid {args.grid} --shares {args.shares} --seed {args.seed}",
    }
    emit_json(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
