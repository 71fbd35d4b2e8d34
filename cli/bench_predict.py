"""Whole-process timing of ``nowcast predict``: each run a fresh interpreter, fp32 against bf16.

``python -m benchmarks.bench_predict``: the command line of benchmarks/bench_predict.py
(see there for what it measures).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.bench import machine_info, parse_grid, write_report
from benchmarks.bench_predict import FORECAST_LOG, VARIANTS
from benchmarks.machine import machine_description
from model.checkpoint import to_official
from model.network.predrnn import PredRNN, PredRNNConfig

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_predict", description=__doc__.splitlines()[0])
    parser.add_argument("--num-hidden", default="64,64,64")
    parser.add_argument("--grid", default="256x256", help="HxW in pixels")
    parser.add_argument("--input-length", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (every variant once per round)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS of every predict process (default: torch's)")
    parser.add_argument("--json", type=Path, help="write the report here")
    return parser


def predict_command(checkpoint: Path, frames: Path, output: Path, args: argparse.Namespace,
                    height: int, width: int) -> list[str]:
    """``nowcast predict`` for the authors' checkpoint, with their run.py flag names."""
    return [sys.executable, "-m", "cli", "predict", "--checkpoint", str(checkpoint), "--official",
            "--model-name", "predrnn_v2", "--num-hidden", args.num_hidden, "--filter-size", "5",
            "--patch-size", "4", "--img-channel", "1", "--layer-norm", "0", "--img-width", str(max(height, width)),
            "--input-length", str(args.input_length), "--total-length", str(args.input_length + args.steps),
            "--input", str(frames), "--steps", str(args.steps), "--output", str(output)]


def run_once(command: list[str], threads: int | None = None) -> tuple[float, float | None]:
    """Wall seconds of one process, and the forecast seconds it logged."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)} if threads else None
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"nowcast predict failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    match = FORECAST_LOG.search(done.stderr)
    return wall, float(match.group(2)) if match else None


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    height, width = parse_grid(args.grid)
    variants = args.variants.split(",")
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    torch.manual_seed(args.seed)
    config = PredRNNConfig(version="v2", num_hidden=args.num_hidden.split(","), filter_size=5, patch_size=4,
                           input_length=args.input_length, output_length=args.steps, height=height, width=width)
    model = PredRNN(config)
    frames = np.random.default_rng(args.seed).random((1, args.input_length, 1, height, width), dtype=np.float32)

    timings: dict[str, dict[str, list[float]]] = {name: {"wall_s": [], "forecast_s": []} for name in variants}
    with tempfile.TemporaryDirectory(prefix="bench_predict_") as tmp:
        work = Path(tmp)
        checkpoint = work / "model.ckpt-0"
        torch.save(to_official(model), checkpoint)
        np.save(work / "frames.npy", frames)
        base = predict_command(checkpoint, work / "frames.npy", work / "out.npy", args, height, width)
        commands = {name: [*base[:-1], str(work / f"{name}.npy"), *VARIANTS[name]] for name in variants}
        for name in variants:  # untimed: page cache, oneDNN's first-use costs on disk
            run_once(commands[name], args.threads)
        for round_index in range(args.repeats):
            for name in variants:
                wall, forecast = run_once(commands[name], args.threads)
                timings[name]["wall_s"].append(wall)
                if forecast is not None:
                    timings[name]["forecast_s"].append(forecast)
                log.info("round %d %-20s %.2f s (forecast %s s)", round_index, name, wall, forecast)
        outputs = {name: np.load(work / f"{name}.npy") for name in variants}

    results: dict[str, Any] = {}
    for name in variants:
        wall = timings[name]["wall_s"]
        forecast = timings[name]["forecast_s"]
        results[name] = {"flags": VARIANTS[name], "wall_s": wall, "median_wall_s": statistics.median(wall),
                         "forecast_s": forecast, "median_forecast_s": statistics.median(forecast) if forecast else None}
    if "fp32" in results:
        reference = results["fp32"]
        for name in variants:
            entry = results[name]
            entry["speedup_whole_process"] = reference["median_wall_s"] / entry["median_wall_s"]
            if reference["median_forecast_s"] and entry["median_forecast_s"]:
                entry["speedup_forecast"] = reference["median_forecast_s"] / entry["median_forecast_s"]
            entry["max_abs_diff_vs_fp32"] = float(np.abs(outputs[name] - outputs["fp32"]).max())
    report = {
        "command": "python -m benchmarks.bench_predict " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "predict_command": " ".join(["nowcast", *base[3:]]).replace(str(work), "$TMP") + " [variant flags]",
        "checkpoint": f"authors' format {{'net_param': ...}}, random weights (seed {args.seed})",
        "config": config.to_dict(),
        "parameters": model.num_parameters(),
        "grid": [height, width],
        "batch": 1,
        "repeats": args.repeats,
        "threads_setting": args.threads,
        "machine": {**machine_info(), **machine_description()},
        "results": results,
    }
    write_report(args.json, report)
    for name in variants:
        entry = results[name]
        log.info("%-20s median %.2f s whole process, %s s forecast%s", name, entry["median_wall_s"],
                 entry["median_forecast_s"],
                 f", {entry['speedup_whole_process']:.2f}x fp32" if "speedup_whole_process" in entry else "")
    return 0
