"""How much of an ensemble's Brier score is rain no member has? From a ``nowcast evaluate`` JSON.

    python -m benchmarks.ensemble_misses results/ensemble/eval_synthetic_128.json [--json OUT]

The reliability counts of ``model.verification.probabilistic`` are per probability level k / M,
so level 0 is exactly the pixels where no member reaches the threshold. There a pixel costs the
Brier score 1 if the threshold is observed and 0 if not. This prints, per ensemble method, threshold
and lead of :data:`benchmarks.real_rain.LEADS`, the share of the Brier score that those missed
events make: the part that spreading the members' values cannot reach, only new rain can.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from benchmarks.real_rain import LEADS
from benchmarks.report import emit_json


def missed_share(reliability: dict, lead: int) -> float:
    """Share of the Brier score at ``lead`` (1-based) from level-0 pixels where the event was observed."""
    counts = np.asarray(reliability["forecasts"][lead - 1], dtype=np.float64)
    observed = np.asarray(reliability["observed"][lead - 1], dtype=np.float64)
    probability = np.asarray(reliability["probability"], dtype=np.float64)
    # Sum over a level's pixels of (p - o)^2 = n p^2 - 2 p o + o.
    brier = counts * probability**2 - 2.0 * probability * observed + observed
    return float(observed[0] / brier.sum()) if brier.sum() > 0 else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ensemble_misses", description=__doc__.splitlines()[0])
    parser.add_argument("evaluation", type=Path, help="a nowcast evaluate --json file")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    try:
        methods = json.loads(args.evaluation.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SystemExit(f"{args.evaluation}: not a readable evaluation JSON ({exc})") from exc
    report: dict = {"benchmark": "ensemble_misses", "evaluation": str(args.evaluation), "methods": {}}
    for name, result in methods.items():
        scores = result.get("probabilistic") if isinstance(result, dict) else None
        if not scores or scores.get("members", 1) < 2:
            continue
        report["methods"][name] = {
            threshold: {label: round(missed_share(reliability, lead), 3) for label, lead in LEADS.items()}
            for threshold, reliability in scores["reliability"].items()}
    if not report["methods"]:
        raise SystemExit(f"{args.evaluation}: no ensemble method with reliability counts in it")
    emit_json(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
