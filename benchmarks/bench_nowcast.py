"""Time one scheduled nowcast end to end (scans on disk -> products written), PredRNN vs extrapolation.

    python -m benchmarks.bench_nowcast --grid 256x256 --scans 10 --steps 20 --json bench_nowcast.json

Writes a synthetic storm feed (model.data.synthetic) as CF scans, then, for each method, in a fresh
spawned interpreter (so imports, model load and peak memory are that method's own):

    select the newest complete sequence (workers.feeds) -> read and validate (model.io.netcdf)
    -> forecast (workers.runtime: PredRNN on the checkpoint, or pysteps extrapolation)
    -> write forecast.nc + PNG per lead + GIF (workers.products)

This is the body of ``workers.tasks.nowcast`` minus the Redis bookkeeping (a few milliseconds).
The first run of a process is reported as ``cold`` (torch import, model load, warm-up); the median
of ``--repeats`` further runs as ``warm``. Peak memory is the child's maximum resident set size.
Without the shipped checkpoint, a random-weight model with the ``--preset`` architecture stands in
(inference cost does not depend on the weights); the JSON says which.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import multiprocessing as mp
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
SLOT = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


def write_feed(feed: Path, *, scans: int, height: int, width: int, seed: int) -> None:
    import numpy as np

    from model.data.synthetic import StormGenerator
    from model.io.netcdf import write_scans

    frames = StormGenerator(np.random.default_rng(seed), height, width).frames(scans)
    times = [SLOT - dt.timedelta(minutes=6 * (scans - 1 - k)) for k in range(scans)]
    write_scans(feed, frames, times, x=1000.0 * np.arange(width), y=1000.0 * np.arange(height),
                grid_mapping={"grid_mapping_name": "transverse_mercator", "longitude_of_central_meridian": 9.0,
                              "latitude_of_projection_origin": 0.0, "scale_factor_at_central_meridian": 0.9996,
                              "false_easting": 500000.0, "false_northing": 0.0})


def random_checkpoint(path: Path, preset: str) -> dict[str, Any]:
    """A random-weight checkpoint with the architecture of ``model/training/configs/<preset>.toml``."""
    import torch

    from model.checkpoint import save_checkpoint
    from model.network.predrnn import PredRNN, PredRNNConfig

    with open(REPO_ROOT / "model" / "training" / "configs" / f"{preset}.toml", "rb") as handle:
        config = PredRNNConfig.from_dict(tomllib.load(handle)["model"])
    torch.manual_seed(0)
    save_checkpoint(path, PredRNN(config))
    return config.to_dict()


def _one_run(settings: Any, method: str, steps: int, product_dir: Path) -> dict[str, float]:
    from model.io.netcdf import read_scans
    from workers import runtime
    from workers.feeds import select_sequence
    from workers.products import write_products

    started = time.perf_counter()
    timings: dict[str, float] = {}
    selection = select_sequence(settings.feed_dir, slot=SLOT, input_scans=settings.input_scans,
                                timestep_minutes=settings.timestep_minutes,
                                stale_after_minutes=settings.stale_after_minutes)
    sequence = read_scans(selection.paths, timestep_minutes=settings.timestep_minutes,
                          min_scans=settings.input_scans, max_grid=settings.max_grid).tail(settings.input_scans)
    timings["read"] = time.perf_counter() - started
    if method == "predrnn":
        forecast = runtime.run_forecast(settings, sequence.dbz, steps)
        if forecast.source != "predrnn":
            raise RuntimeError(f"the model did not run: {forecast.fallback_reason}")
    else:
        begun = time.perf_counter()
        dbz = runtime.extrapolate(sequence.dbz, steps, settings.timestep_minutes)
        forecast = runtime.Forecast(dbz, "extrapolation", runtime.EXTRAPOLATION_MODEL, "", "", None,
                                    {"inference": time.perf_counter() - begun})
    timings.update(forecast.timings)
    begun = time.perf_counter()
    write_products(product_dir, forecast, sequence,
                   lead_minutes=[float(settings.timestep_minutes * (k + 1)) for k in range(steps)],
                   quicklooks=settings.quicklooks)
    timings["write"] = time.perf_counter() - begun
    timings["total"] = time.perf_counter() - started
    return {k: round(v, 4) for k, v in timings.items()}


def _child(method: str, settings_kwargs: dict[str, Any], steps: int, repeats: int, out: Any) -> None:
    """Runs in a spawned interpreter: cold run, warm runs, own peak RSS."""
    import torch

    from model.network.precision import resolve as resolve_precision
    from workers.settings import WorkerSettings

    settings = WorkerSettings(**settings_kwargs)
    product_root = Path(settings_kwargs["data_dir"]) / "products"
    cold = _one_run(settings, method, steps, product_root / f"{method}-cold")
    warm = [_one_run(settings, method, steps, product_root / f"{method}-{k}") for k in range(repeats)]
    median = {key: round(statistics.median(run[key] for run in warm), 4) for key in warm[0]} if warm else {}
    out.put({"method": method, "cold": cold, "warm_median": median, "warm_runs": warm,
             "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
             "torch_threads": torch.get_num_threads(),
             "precision": resolve_precision(settings.precision, torch.device("cpu")) if method == "predrnn" else None})


def measure(method: str, settings_kwargs: dict[str, Any], steps: int, repeats: int) -> dict[str, Any]:
    context = mp.get_context("spawn")  # a fresh interpreter: its imports and memory are its own
    queue = context.Queue()
    process = context.Process(target=_child, args=(method, settings_kwargs, steps, repeats, queue))
    process.start()
    result = queue.get()
    process.join()
    if process.exitcode:
        raise RuntimeError(f"{method} benchmark exited with status {process.exitcode}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_nowcast", description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default="256x256", help="HxW of the synthetic feed")
    parser.add_argument("--scans", type=int, default=10, help="input scans (context)")
    parser.add_argument("--steps", type=int, default=20, help="lead steps (6 min each)")
    parser.add_argument("--repeats", type=int, default=2, help="warm runs after the cold one")
    parser.add_argument("--checkpoint", type=Path, default=REPO_ROOT / "model" / "checkpoints" / "radar_v2.pt")
    parser.add_argument("--preset", default="radar_v2_cpu", help="architecture when the checkpoint is absent")
    parser.add_argument("--no-quicklooks", action="store_true", help="netCDF only (no PNG/GIF)")
    parser.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="auto",
                        help="as the workers' NOWCAST_PRECISION (default auto, the workers' default)")
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
        results = [measure(method, settings_kwargs, args.steps, args.repeats)
                   for method in ("predrnn", "extrapolation")]
    report = {
        "command": "python -m benchmarks.bench_nowcast " + " ".join(argv if argv is not None else sys.argv[1:]),
        "grid": [height, width], "input_scans": args.scans, "lead_steps": args.steps, "repeats": args.repeats,
        "quicklooks": not args.no_quicklooks, "precision_setting": args.precision,
        "weights": weights, "architecture": architecture,
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpu_count": os.cpu_count(),
                    # Other work on the machine inflates every number; the load says how much.
                    "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()]},
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


if __name__ == "__main__":
    raise SystemExit(main())
