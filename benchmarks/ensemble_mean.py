"""How good a single field is the ensemble's mean? Its CSI beside the deterministic default's, as JSON.

    OMP_NUM_THREADS=1 python -m benchmarks.ensemble_mean --json results/ensemble/mean.json

A centred ensemble around a well-placed deterministic forecast smooths that forecast when it is
averaged, so its mean loses CSI at the thresholds forecasters use. This measures how much, and
whether the offsets or the way of averaging are to blame. On the real composite cases
(``model.data.composite.RealRainCases``, 6 scans in, 20 out) it runs the served ensemble with its
offsets scaled by each factor of ``--offset-scales`` (the rest of the calibration as served) and
scores, at 20 and 30 dBZ at 30 and 60 minutes, the CSI of:

- ``dbz_mean``: the members' mean reflectivity in dBZ (``model.members.ensemble_mean``, served);
- ``rain_rate_mean``: the members' mean rain rate (Marshall-Palmer, Z = 200 R^1.6) back in dBZ,
  the expected rain a hydrologist sums;
- ``probability_matched_mean``: the dBZ mean's pattern with the members' pooled values
  (Ebert 2001), whose rain area is the members' mean rain area;

beside the deterministic default's. Nothing is chosen from these numbers: the cases are test cases.
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
from benchmarks.real_rain import LEADS
from benchmarks.report import emit_json

log = logging.getLogger("benchmarks.ensemble_mean")

THRESHOLDS = ("20dBZ", "30dBZ")


def rain_rate_mean(members_dbz: np.ndarray) -> np.ndarray:
    """(M, ...) dBZ -> (...) dBZ of the members' mean Marshall-Palmer rain rate."""
    rate = (10.0 ** (members_dbz / 10.0) / 200.0) ** (1.0 / 1.6)
    return (10.0 * np.log10(200.0 * rate.mean(axis=0) ** 1.6)).astype(np.float32)


def probability_matched_mean(members_dbz: np.ndarray) -> np.ndarray:
    """(M, K, H, W) dBZ -> (K, H, W): per lead, the dBZ mean's ranks given every M-th pooled member value."""
    mean = members_dbz.mean(axis=0)
    count = members_dbz.shape[0]
    out = np.empty_like(mean)
    for k in range(mean.shape[0]):
        pooled = np.sort(members_dbz[:, k].ravel())[count // 2 :: count]
        flat = out[k].reshape(-1)
        flat[np.argsort(mean[k].ravel(), kind="stable")] = pooled
    return out


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ensemble_mean", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("model/checkpoints/radar_lagrangian.pt"))
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument("--offset-scales", default="1,0.5,0.25,0.1",
                        help="factors on the served offsets, comma-separated")
    parser.add_argument("--seed", type=int, default=0, help="case i's members use seed + i")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from model.checkpoint import load_checkpoint
    from model.data.composite import RealRainCases
    from model.ensemble import EnsembleSettings, forecast_ensemble_frames
    from model.forecast import forecast_frames
    from model.io.units import model_to_dbz
    from model.verification.metrics import SkillScores

    started = time.perf_counter()
    model, _ = load_checkpoint(args.checkpoint)
    served = EnsembleSettings.for_checkpoint(args.checkpoint)
    source = RealRainCases()
    scaling = source.scaling
    cases = list(source.eval_batches("test", 1))
    truths = [model_to_dbz(batch[0, source.input_length:, 0], scaling) for batch in cases]

    def table(forecasts: list[np.ndarray]) -> dict[str, dict[str, float]]:
        scores = SkillScores.init(truths[0].shape[0])
        for truth, forecast in zip(truths, forecasts, strict=True):
            scores.accum(truth[None], forecast[None])
        csi = scores.compute()["csi"]
        return {t: {label: round(float(csi[t][k - 1]), 3) for label, k in LEADS.items()} for t in THRESHOLDS}

    steps = truths[0].shape[0]
    deterministic = [model_to_dbz(forecast_frames(model, batch[:, : source.input_length], steps, "fp32", "cpu",
                                                  scaling=scaling)[0, :, 0], scaling) for batch in cases]
    report = {"benchmark": "ensemble_mean", "date": dt.date.today().isoformat(), "machine": machine_description(),
              "checkpoint": str(args.checkpoint), "calibration": served.describe(), "cases": len(cases),
              "members": args.members, "seed": args.seed, "deterministic": table(deterministic), "ensembles": []}
    for factor in (float(v) for v in args.offset_scales.split(",")):
        settings = dataclasses.replace(served, displacement_px=tuple(factor * v for v in served.displacement_px))
        members = [model_to_dbz(forecast_ensemble_frames(model, batch[:, : source.input_length], steps,
                                                         members=args.members, seed=args.seed + i, settings=settings,
                                                         scaling=scaling)[0, :, :, 0], scaling)
                   for i, batch in enumerate(cases)]
        report["ensembles"].append({
            "offset_scale": factor,
            "dbz_mean": table([m.mean(axis=0) for m in members]),
            "rain_rate_mean": table([rain_rate_mean(m) for m in members]),
            "probability_matched_mean": table([probability_matched_mean(m) for m in members]),
        })
        log.info("offsets x %g done, %.0f s", factor, time.perf_counter() - started)
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["command"] = (f"python -m benchmarks.ensemble_mean --checkpoint {args.checkpoint} --members {args.members}"
                         f" --offset-scales {args.offset_scales} --seed {args.seed}")
    emit_json(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
