"""CSI of a checkpoint and of extrapolation on the real-rain cases, as JSON.

    python -m benchmarks.real_rain [--checkpoint model/checkpoints/radar_lagrangian.pt] [--json out.json]

The MeteoSwiss composite in tests/data/ set in motion by each flow of
``model.data.evolving.REAL_RAIN_FLOWS`` (6 scans given, 20 forecast); CSI at 20 and 30 dBZ at
30 and 60 minutes for the checkpoint and for optical-flow extrapolation, the numbers the model
card quotes and tests/model/test_default_model.py asserts on.

``trend_response`` asks whether the model reads the growth: each flow again with its growth,
with none and with the growth reversed, and per quarter where the trend acts (north-west and
south-east), the mean change from extrapolation over its echo (above 15 dBZ) at 30 and 60
minutes, of the model and of the truth, in dB. A model that reads the trend follows the truth's
sign; one with a bias changes every case alike.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import numpy as np

from benchmarks.report import emit_json
from model.baselines import extrapolation
from model.checkpoint import load_checkpoint
from model.data.evolving import REAL_RAIN_FLOWS, real_rain_case
from model.forecast import forecast_dbz
from model.io.odim import read_odim
from model.verification.metrics import SkillScores
from workers.settings import REPO_ROOT, SHIPPED_CHECKPOINT

ODIM = REPO_ROOT / "tests" / "data" / "RFO_example_h5_grid.h5"
LEADS = {"30 min": 5, "60 min": 10}


def csi(truth, forecast, thresholds: tuple[str, ...] = ("20dBZ", "30dBZ"), digits: int = 3
        ) -> dict[str, dict[str, float]]:
    """CSI of one forecast (K, H, W) against its truth, per threshold and lead of :data:`LEADS`."""
    scores = SkillScores.init(truth.shape[0])
    scores.accum(truth[None], forecast[None])
    result = scores.compute()["csi"]
    return {t: {label: round(float(result[t][k - 1]), digits) for label, k in LEADS.items()} for t in thresholds}


def trend_response(model, scaling, field, flow: str) -> dict[str, dict]:
    """Mean change from extrapolation (dB) of model and truth per quarter and lead, for +g, 0 and -g."""
    growth = REAL_RAIN_FLOWS[flow][3]
    out = {}
    for label, g in (("as given", growth), ("no growth", 0.0), ("reversed", -growth)):
        context, truth = real_rain_case(field, flow, growth_db_per_scan=g)
        forecast = forecast_dbz(model, context, truth.shape[0], scaling=scaling)
        baseline = extrapolation(context, truth.shape[0])
        half = baseline.shape[-1] // 2
        quarters = {"north-west": np.s_[:half, :half], "south-east": np.s_[half:, half:]}
        case = {"growth_db_per_scan": g, "csi_30dBZ": csi(truth, forecast, ("30dBZ",))["30dBZ"],
                "csi_30dBZ_extrapolation": csi(truth, baseline, ("30dBZ",))["30dBZ"]}
        for name, at in quarters.items():
            case[name] = {}
            for lead, k in LEADS.items():
                echo = baseline[k - 1][at] > 15.0
                case[name][lead] = {
                    "model_db": round(float((forecast[k - 1][at] - baseline[k - 1][at])[echo].mean()), 2),
                    "truth_db": round(float((truth[k - 1][at] - baseline[k - 1][at])[echo].mean()), 2)}
        out[label] = case
    return out


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.real_rain", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=SHIPPED_CHECKPOINT)
    parser.add_argument("--json", type=Path, help="write the table here as well as to stdout")
    args = parser.parse_args()
    model, meta = load_checkpoint(args.checkpoint)
    field = read_odim(ODIM).dbz[0]
    flows = {}
    for flow in REAL_RAIN_FLOWS:
        context, truth = real_rain_case(field, flow)
        flows[flow] = {"model": csi(truth, forecast_dbz(model, context, truth.shape[0], scaling=meta["scaling"])),
                       "extrapolation": csi(truth, extrapolation(context, truth.shape[0])),
                       "trend_response": trend_response(model, meta["scaling"], field, flow)}
    report = {"checkpoint": str(args.checkpoint), "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "flows": flows}
    emit_json(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
