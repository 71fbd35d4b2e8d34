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

import datetime as dt
import logging
import multiprocessing as mp
import resource
import statistics
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
                   quicklooks=settings.quicklooks, timings=timings)
    timings["write"] = time.perf_counter() - begun
    timings["total"] = time.perf_counter() - started
    # What the latency goal bounds: everything but the network's forward pass (for extrapolation,
    # everything but the extrapolation itself).
    timings["outside_forward"] = timings["total"] - timings.get("network", timings["inference"])
    return {k: round(v, 4) for k, v in timings.items()}


def _child(method: str, settings_kwargs: dict[str, Any], steps: int, repeats: int, threads: int | None,
           out: Any) -> None:
    """Runs in a spawned interpreter: cold run, warm runs, own peak RSS."""
    import torch

    if threads:
        # On a machine whose other core is busy, two torch threads wait on each other at every
        # operator; one thread then runs several times faster (docs/results.md, Worker speed).
        torch.set_num_threads(threads)
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


def measure(method: str, settings_kwargs: dict[str, Any], steps: int, repeats: int,
            threads: int | None = None) -> dict[str, Any]:
    context = mp.get_context("spawn")  # a fresh interpreter: its imports and memory are its own
    queue = context.Queue()
    process = context.Process(target=_child, args=(method, settings_kwargs, steps, repeats, threads, queue))
    process.start()
    result = queue.get()
    process.join()
    if process.exitcode:
        raise RuntimeError(f"{method} benchmark exited with status {process.exitcode}")
    return result


if __name__ == "__main__":  # the command line is cli/bench_nowcast.py
    from cli import run_script

    raise SystemExit(run_script("cli.bench_nowcast:main"))
