"""What sharing a slot's motion field saves: a slot's model and extrapolation jobs, with and without the store.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.motion_share --grid 256x256 --repeats 5 \
        --json results/motion_share.json

Per repeat, one fresh storm (seeded), 10 scans in, 20 leads out, the shipped checkpoint: the model job
(``workers.runtime.run_forecast``) and the extrapolation job (``run_extrapolation``) timed one after
the other, once each computing their own Lucas-Kanade field and once through
:class:`workers.motion_store.FileMotionStore` (the extrapolation job first computes and writes it, the
model job reads it). Reports median seconds of each job and of the pair, and the Lucas-Kanade time alone.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.machine import machine_description
from benchmarks.report import emit_json


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default="256x256")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    height, width = (int(n) for n in args.grid.lower().split("x"))

    import torch

    from model.baselines import estimate_motion, sharing_motion
    from model.data.synthetic import storm_frames
    from model.io.units import DEFAULT_SCALING
    from workers.motion_store import FileMotionStore
    from workers.runtime import get_model, run_extrapolation, run_forecast
    from workers.settings import WorkerSettings

    torch.set_num_threads(1)
    settings = WorkerSettings(device="cpu", precision="fp32", data_dir=Path(tempfile.mkdtemp()))
    loaded = get_model(settings)
    rows: dict[str, list[float]] = {"model_alone": [], "extrapolation_alone": [], "model_shared": [],
                                    "extrapolation_shared": [], "lucas_kanade": [], "store_read": []}
    scans = storm_frames([args.seed, 999], 10, height, width)
    run_forecast(settings, scans, 20)  # warm: the first forward pass and pysteps' imports
    for repeat in range(args.repeats):
        scans = storm_frames([args.seed, repeat], 10, height, width)
        started = time.perf_counter()
        estimate_motion(scans[-3:], zerovalue=DEFAULT_SCALING["dbz_min"])
        rows["lucas_kanade"].append(time.perf_counter() - started)
        for name, run in (("extrapolation_alone", run_extrapolation), ("model_alone", run_forecast)):
            started = time.perf_counter()
            run(settings, scans, 20)
            rows[name].append(time.perf_counter() - started)
        store = FileMotionStore(Path(tempfile.mkdtemp()), scope=f"bench-{repeat}")
        with sharing_motion(store):
            for name, run in (("extrapolation_shared", run_extrapolation), ("model_shared", run_forecast)):
                started = time.perf_counter()
                forecast = run(settings, scans, 20)
                rows[name].append(time.perf_counter() - started)
        assert (store.misses, store.hits) == (1, 1), (store.misses, store.hits)
        started = time.perf_counter()
        np.load(next(store.directory.glob("*.npy")))
        rows["store_read"].append(time.perf_counter() - started)
        assert forecast.dbz.shape == (20, height, width)
    medians = {name: round(statistics.median(values), 4) for name, values in rows.items()}
    pair_alone = medians["model_alone"] + medians["extrapolation_alone"]
    pair_shared = medians["model_shared"] + medians["extrapolation_shared"]
    emit_json({
        "benchmark": "motion_share", "grid": [height, width], "repeats": args.repeats, "seed": args.seed,
        "checkpoint": Path(settings.checkpoint).name, "model_frame": loaded.model.config.frame,
        "torch_threads": torch.get_num_threads(), "median_s": medians,
        "pair_alone_s": round(pair_alone, 4), "pair_shared_s": round(pair_shared, 4),
        "saved_s": round(pair_alone - pair_shared, 4), "machine": machine_description(),
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
    }, args.json)


if __name__ == "__main__":
    main()
