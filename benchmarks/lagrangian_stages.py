"""Seconds of each stage of a Lagrangian nowcast: motion, alignment, network, advection.

    OMP_NUM_THREADS=1 python -m benchmarks.lagrangian_stages

The shipped default model on a synthetic storm, 256 x 256, 10 scans in, 20 out, bf16: one cold run,
then the median of three warm runs of ``model.forecast.forecast_dbz`` with its stage timings.
The motion field alone is then timed five times each, alternating, through pysteps' own
``dense_lucaskanade`` and through :func:`model.motion.dense_lucaskanade` (the same numbers), so
the gain of the faster interpolation is a ratio taken in one run. Writes
results/bench/lagrangian_stages_256.json with the CPU flags and the machine's load.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from model.checkpoint import load_checkpoint
from model.data.synthetic import storm_frames
from model.forecast import forecast_dbz
from workers.settings import SHIPPED_CHECKPOINT

log = logging.getLogger(__name__)
OUT = Path("results/bench/lagrangian_stages_256.json")


def motion_ratio(frames: np.ndarray, repeats: int = 5) -> dict[str, float]:
    """Median seconds of pysteps' dense Lucas-Kanade and of model.motion's, alternating."""
    from model.baselines import _import_pysteps, declustering_scale
    from model.motion import dense_lucaskanade

    pysteps = _import_pysteps()
    frames = np.maximum(frames, -10.0)
    options = {"decl_scale": declustering_scale(frames.shape[1:])}  # estimate_motion's choice
    seconds: dict[str, list[float]] = {"pysteps": [], "model.motion": []}
    for _ in range(repeats):
        for name, method in (("pysteps", pysteps.motion.lucaskanade.dense_lucaskanade),
                             ("model.motion", dense_lucaskanade)):
            started = time.perf_counter()
            method(frames, **options)
            seconds[name].append(time.perf_counter() - started)
    result = {name: round(float(np.median(values)), 4) for name, values in seconds.items()}
    result["ratio"] = round(result["pysteps"] / result["model.motion"], 2)
    return result


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    model, meta = load_checkpoint(SHIPPED_CHECKPOINT)
    scans = storm_frames([0, 5, 5], 10, 256, 256)
    runs = []
    for _ in range(4):
        timings: dict[str, float] = {}
        started = time.perf_counter()
        forecast_dbz(model, scans, 20, scaling=meta["scaling"], precision="bf16", timings=timings)
        timings["total"] = time.perf_counter() - started
        runs.append(timings)
    warm = runs[1:]
    median = {key: round(float(np.median([run[key] for run in warm])), 3) for key in warm[0]}
    motion = motion_ratio(scans[-3:].astype(np.float64))
    cpuinfo = Path("/proc/cpuinfo").read_text()
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")]
    model_name = names[0] if names else ""
    report = {
        "command": "OMP_NUM_THREADS=1 python -m benchmarks.lagrangian_stages",
        "grid": [256, 256], "scans": 10, "steps": 20, "precision": "bf16", "threads": os.environ.get("OMP_NUM_THREADS"),
        "warm_median_s": median,
        "lagrangian_steps_s": round(sum(median[k] for k in ("lagrangian_motion", "lagrangian_align",
                                                            "lagrangian_advect")), 3),
        "motion_field_s": motion,
        "cpu": model_name, "flags": [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f in cpuinfo],
        # Other work on the machine inflates every number; the load says how much.
        "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()],
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2) + "\n")
    log.info("wrote %s: Lagrangian steps %.3f s, network %.3f s", OUT, report["lagrangian_steps_s"], median["network"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
