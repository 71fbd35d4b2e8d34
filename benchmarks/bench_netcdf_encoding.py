"""Time the forecast product's netCDF write (and one lead's read) per compression setting.

    python -m benchmarks.bench_netcdf_encoding --grid 256x256 --steps 20 [--noisy] --json OUT.json

A synthetic storm forecast (model.data.synthetic), (steps, H, W) dBZ, is written by
``model.io.netcdf.write_forecast`` with each zlib level and with and without the byte shuffle,
``--repeats`` times (median), one lead time per chunk. The read is one lead's reflectivity through
xarray, as a client fetching a single frame would do. Sizes are the files' bytes.
"""

from __future__ import annotations

import datetime as dt
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

SLOT = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
SETTINGS = [{"zlib": False}] + [{"zlib": True, "complevel": level, "shuffle": shuffle}
                                for level in (1, 2, 4, 6, 9) for shuffle in (False, True)]


def synthetic_forecast(height: int, width: int, steps: int, seed: int, *, noisy: bool = False) -> np.ndarray:
    """(steps, H, W) float32 dBZ of moving storms.

    ``noisy`` adds 0.3 dBZ of Gaussian noise everywhere: every value then has a full mantissa and no
    pixel sits at the floor, as in a network's output, which compresses worse and slower than the
    extrapolation's fields (whose no-echo pixels are all one value).
    """
    from model.data.synthetic import StormGenerator

    rng = np.random.default_rng(seed)
    frames = StormGenerator(rng, height, width).frames(steps)
    if noisy:
        frames = frames + rng.normal(0.0, 0.3, frames.shape)
    return frames.astype(np.float32)


def time_setting(directory: Path, dbz: np.ndarray, compression: dict[str, Any], repeats: int) -> dict[str, Any]:
    """Median write and one-lead read seconds and the file size of one compression setting."""
    import xarray as xr

    from model.io.netcdf import Grid, write_forecast

    steps, height, width = dbz.shape
    grid = Grid("y", "x", (height, width), y=1000.0 * np.arange(height), x=1000.0 * np.arange(width))
    path = directory / "forecast.nc"
    writes, reads = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        write_forecast(path, dbz, reference_time=SLOT, lead_minutes=[6.0 * (k + 1) for k in range(steps)],
                       grid=grid, model="synthetic", model_version="", checkpoint_sha256="", source="persistence",
                       input_times=[SLOT], compression=compression)
        writes.append(time.perf_counter() - started)
        started = time.perf_counter()
        with xr.open_dataset(path, engine="netcdf4") as ds:
            ds["reflectivity"].isel(time=steps // 2).values  # noqa: B018 - the read is what is timed
        reads.append(time.perf_counter() - started)
    return {"compression": compression, "write_s": round(statistics.median(writes), 4),
            "read_one_lead_s": round(statistics.median(reads), 4), "bytes": path.stat().st_size}


if __name__ == "__main__":  # the command line is cli/bench_netcdf_encoding.py
    from cli import run_script

    raise SystemExit(run_script("cli.bench_netcdf_encoding:main"))
