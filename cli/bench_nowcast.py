"""Time one scheduled nowcast end to end (scans on disk -> products written), PredRNN vs extrapolation.

``python -m benchmarks.bench_nowcast``: the command line of benchmarks/bench_nowcast.py
(see there for what it measures).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
import tempfile
from pathlib import Path

from benchmarks.bench_nowcast import REPO_ROOT, measure, random_checkpoint, write_feed
from benchmarks.machine import machine_description

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_nowcast", description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default="256x256", help="HxW of the synthetic feed")
    parser.add_argument("--scans", type=int, default=10, help="input scans (context)")
    parser.add_argument("--steps", type=int, default=20, help="lead steps (6 min each)")
    parser.add_argument("--repeats", type=int, default=2, help="warm runs after the cold one")
    parser.add_argument("--checkpoint", type=Path, default=REPO_ROOT / "model" / "checkpoints" / "radar_lagrangian.pt")
    parser.add_argument("--preset", default="radar_lagrangian_cpu", help="architecture when the checkpoint is absent")
    parser.add_argument("--no-quicklooks", action="store_true", help="netCDF only (no PNG/GIF)")
    parser.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="auto",
                        help="as the workers' NOWCAST_PRECISION (default auto, the workers' default)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads in the worker (default: torch's)")
    parser.add_argument("--methods", default="predrnn,extrapolation", help="comma-separated: predrnn, extrapolation")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, default=Path("bench_nowcast.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    height, width = (int(v) for v in args.grid.lower().split("x"))
    with tempfile.TemporaryDirectory(prefix="bench-nowcast-") as tmp:
        data_dir = Path(tmp)
        write_feed(data_dir / "feed", scans=args.scans, height=height, width=width, seed=args.seed)
        checkpoint, weights, architecture = args.checkpoint, "shipped checkpoint", None
        if not checkpoint.is_file():
            checkpoint = data_dir / "random.pt"
            architecture = random_checkpoint(checkpoint, args.preset)
            weights = f"random weights, {args.preset} architecture (no checkpoint at {args.checkpoint})"
        settings_kwargs = {"data_dir": str(data_dir), "checkpoint": str(checkpoint), "device": "cpu",
                           "precision": args.precision, "input_scans": args.scans, "lead_steps": args.steps,
                           "max_lead_steps": max(60, args.steps), "quicklooks": not args.no_quicklooks}
        results = [measure(method, settings_kwargs, args.steps, args.repeats, args.threads)
                   for method in args.methods.split(",")]
    report = {
        "command": "python -m benchmarks.bench_nowcast " + " ".join(argv if argv is not None else sys.argv[1:]),
        "grid": [height, width], "input_scans": args.scans, "lead_steps": args.steps, "repeats": args.repeats,
        "quicklooks": not args.no_quicklooks, "precision_setting": args.precision,
        "weights": weights, "architecture": architecture,
        "threads_setting": args.threads, "machine": machine_description(),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "results": results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    for result in results:
        log.info("%-13s cold %.2f s, warm %.2f s (inference %.2f s%s), peak RSS %.0f MiB", result["method"],
                 result["cold"]["total"], result["warm_median"].get("total", float("nan")),
                 result["warm_median"].get("inference", float("nan")),
                 f", {result['precision']}" if result["precision"] else "", result["peak_rss_mib"])
    return 0
