"""Does probability matching help the default model? CSI with and without it, as JSON.

    OMP_NUM_THREADS=1 python -m benchmarks.probability_matching [--checkpoint CKPT] [--storms 100] \
        [--json results/radar_lagrangian/probability_matching.json]

Probability matching (pysteps ``nonparam_match_empirical_cdf``) keeps the ranks of each forecast
frame and gives it the intensity distribution of the newest observed scan, which is what
extrapolation forecasts: a network that lets intense echo shrink or spread gets its area back.
This scores, on the same sequences, extrapolation, the checkpoint and the checkpoint matched
frame by frame to the newest scan:

- the synthetic *validation* storms (128 x 128, 10 scans given, 20 forecast; not the test storms
  of the results table, so that a decision taken on these numbers does not touch that table);
- the real-rain cases of ``model.data.evolving.REAL_RAIN_FLOWS``.

CSI at 20, 30 and 40 dBZ at 30 and 60 minutes, with the machine and the date.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.machine import machine_description
from benchmarks.real_rain import LEADS, ODIM, csi
from benchmarks.report import emit_json
from model.baselines import extrapolation
from model.checkpoint import load_checkpoint
from model.data.evolving import REAL_RAIN_FLOWS, real_rain_case
from model.data.synthetic import SyntheticRadar
from model.forecast import forecast_dbz
from model.io.odim import read_odim
from model.verification.evaluate import as_forecaster, run_methods
from model.verification.metrics import json_safe
from workers.settings import SHIPPED_CHECKPOINT

log = logging.getLogger(__name__)
THRESHOLDS = ("20dBZ", "30dBZ", "40dBZ")


def matched(forecast: np.ndarray, newest: np.ndarray) -> np.ndarray:
    """(K, H, W) forecast with each frame given the value distribution of ``newest`` (H, W)."""
    from pysteps.postprocessing.probmatching import nonparam_match_empirical_cdf

    return np.stack([nonparam_match_empirical_cdf(frame, newest) for frame in forecast]).astype(np.float32)


def table(by_threshold: dict) -> dict:
    """CSI per threshold and lead of :data:`LEADS` from a ``SkillScores`` result's "csi"."""
    return {t: {label: round(float(by_threshold[t][k - 1]), 4) for label, k in LEADS.items()} for t in THRESHOLDS}


def synthetic(model, storms: int) -> dict:
    source = SyntheticRadar(height=128, width=128, input_length=10, output_length=20, valid_sequences=storms)
    _, network = as_forecaster(model, source.scaling)
    started, done, last = time.perf_counter(), 0, {}

    def network_logged(context: np.ndarray, steps: int) -> np.ndarray:
        nonlocal done
        last["context"], last["pred"] = context, network(context, steps)
        done += context.shape[0]
        elapsed = time.perf_counter() - started
        log.info("synthetic: %d/%d storms, %.2f storms/s, ETA %.0f s", done, storms, done / elapsed,
                 elapsed / done * (storms - done))
        return last["pred"]

    def network_matched(context: np.ndarray, steps: int) -> np.ndarray:
        # run_methods gives every method the same batch in turn: match the network's own forecast.
        pred = last["pred"] if last.get("context") is context else network(context, steps)
        return np.stack([matched(p[:, 0], c[-1, 0])[:, None] for p, c in zip(pred, context, strict=True)])

    methods = {"extrapolation": as_forecaster("extrapolation", source.scaling)[1], "model": network_logged,
               "model + probability matching": network_matched}
    results, _, _ = run_methods(methods, source, "valid", "nowcast", batch_size=8)
    return {name: table(r["nowcast"]["csi"]) for name, r in results.items()}


def real_rain(model, scaling) -> dict:
    field = read_odim(ODIM).dbz[0]
    flows = {}
    for flow in REAL_RAIN_FLOWS:
        context, truth = real_rain_case(field, flow)
        ours = forecast_dbz(model, context, truth.shape[0], scaling=scaling)
        flows[flow] = {}
        for name, forecast in (("extrapolation", extrapolation(context, truth.shape[0])), ("model", ours),
                               ("model + probability matching", matched(ours, context[-1]))):
            flows[flow][name] = csi(truth, forecast, THRESHOLDS, digits=4)
    return flows


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m benchmarks.probability_matching",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=SHIPPED_CHECKPOINT)
    parser.add_argument("--storms", type=int, default=100, help="synthetic validation storms (default 100)")
    parser.add_argument("--json", type=Path, help="write the report here as well as to stdout")
    args = parser.parse_args()
    model, meta = load_checkpoint(args.checkpoint)
    report = {"command": "python -m benchmarks.probability_matching " + " ".join(sys.argv[1:]),
              "checkpoint": str(args.checkpoint), "synthetic_validation_storms": args.storms,
              "synthetic": synthetic(model, args.storms),
              "real_rain": real_rain(model, meta["scaling"]),
              "machine": machine_description(), "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    emit_json(json_safe(report), args.json)  # NaN (no echo at a threshold) -> null
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
