"""Time and memory of a 20-member ensemble nowcast beside pysteps STEPS, each a whole process.

    python -m benchmarks.ensemble_speed --grid 256x256 --members 20 --repeats 3 --json results/ensemble/speed_256.json
    python -m benchmarks.ensemble_speed --grid 512x512 --members 20 --repeats 1 --json results/ensemble/speed_512.json

Each run is a fresh interpreter (``--run predrnn|steps``) that makes the same synthetic storm
(10 scans, seeded), loads what it needs (torch and the checkpoint, or pysteps), forecasts 20 scan
intervals with ``--members`` members and writes them to a scratch .npy; the parent measures its
wall time and its peak resident memory (``wait4``'s ``ru_maxrss``) and reads the stages the child
timed. The two methods alternate, so that a load on the machine falls on both alike; the ratio is
of medians. ``--threads`` is the torch / OpenMP thread count of both (2: the machine's cores).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("benchmarks.ensemble_speed")


def child(method: str, grid: tuple[int, int], members: int, steps: int, checkpoint: Path, out: Path) -> None:
    """One whole nowcast in this process; prints its stage timings as JSON on the last line."""
    started = time.perf_counter()
    from model.data.synthetic import storm_frames

    context = storm_frames([7, 1], 10, *grid)  # (10, H, W) dBZ, the same storm for both methods
    stages: dict[str, float] = {}
    if method == "predrnn":
        from model.checkpoint import load_checkpoint
        from model.ensemble import EnsembleSettings, forecast_ensemble_dbz
        from model.network.precision import resolve

        model, meta = load_checkpoint(checkpoint)
        precision = resolve("auto", __import__("torch").device("cpu"))
        stages["imports_and_load"] = time.perf_counter() - started
        forecast_started = time.perf_counter()
        members_dbz = forecast_ensemble_dbz(model.eval(), context, steps, members=members, seed=0,
                                            settings=EnsembleSettings.for_checkpoint(checkpoint),
                                            scaling=meta["scaling"], precision=precision, timings=stages)
        stages["precision_bf16"] = float(precision == "bf16")
    else:
        from model.baselines import _import_pysteps, steps_ensemble

        _import_pysteps()
        stages["imports_and_load"] = time.perf_counter() - started
        forecast_started = time.perf_counter()
        members_dbz = steps_ensemble(context, steps, members=members, seed=0,
                                     num_workers=int(os.environ.get("OMP_NUM_THREADS", "1")))
    stages["forecast"] = time.perf_counter() - forecast_started
    np.save(out, members_dbz)
    sys.stdout.write(json.dumps(stages) + "\n")


def run_once(method: str, args: argparse.Namespace, scratch: Path) -> dict[str, float]:
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    command = [sys.executable, "-m", "benchmarks.ensemble_speed", "--run", method, "--grid", args.grid,
               "--members", str(args.members), "--steps", str(args.steps), "--checkpoint", str(args.checkpoint),
               "--out", str(scratch / f"{method}.npy")]
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    stdout, stderr = process.stdout.read(), process.stderr.read()  # type: ignore[union-attr]
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{method} run failed:\n{stderr[-2000:]}")
    stages = json.loads(stdout.strip().splitlines()[-1])
    return {"wall_s": round(wall, 3), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            **{k: round(v, 3) for k, v in stages.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ensemble_speed", description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default="256x256")
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checkpoint", type=Path, default=Path("model/checkpoints/radar_lagrangian.pt"))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--run", choices=["predrnn", "steps"], help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    grid = tuple(int(v) for v in args.grid.split("x"))
    if args.run:
        child(args.run, grid, args.members, args.steps, args.checkpoint, args.out)  # type: ignore[arg-type]
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from benchmarks.machine import machine_description
    from benchmarks.report import emit_json

    runs: dict[str, list[dict[str, float]]] = {"predrnn_ensemble": [], "steps": []}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            for name, method in (("predrnn_ensemble", "predrnn"), ("steps", "steps")):
                runs[name].append(run_once(method, args, Path(scratch)))
                log.info("repeat %d/%d %s: %.1f s, %.0f MB", repeat + 1, args.repeats, name,
                         runs[name][-1]["wall_s"], runs[name][-1]["peak_rss_mb"])
    median = {name: statistics.median(r["wall_s"] for r in rs) for name, rs in runs.items()}
    report = {
        "benchmark": "ensemble_speed", "date": dt.date.today().isoformat(), "machine": machine_description(),
        "load_average_end": os.getloadavg(), "grid": args.grid, "members": args.members, "steps": args.steps,
        "threads": args.threads, "checkpoint": str(args.checkpoint), "runs": runs,
        "median_wall_s": median, "ratio_predrnn_over_steps": round(median["predrnn_ensemble"] / median["steps"], 3),
        "peak_rss_mb": {name: max(r["peak_rss_mb"] for r in rs) for name, rs in runs.items()},
    }
    emit_json(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
