"""Time the forecast product's netCDF write per compression setting.

``python -m benchmarks.bench_netcdf_encoding``: the command line of benchmarks/bench_netcdf_encoding.py
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

from benchmarks.bench_netcdf_encoding import SETTINGS, synthetic_forecast, time_setting
from benchmarks.machine import machine_description

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_netcdf_encoding",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default="256x256", help="HxW of the forecast")
    parser.add_argument("--steps", type=int, default=20, help="lead times")
    parser.add_argument("--repeats", type=int, default=5, help="timed writes per setting (median)")
    parser.add_argument("--noisy", action="store_true", help="full-mantissa fields, like a network's output")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, default=Path("bench_netcdf_encoding.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    height, width = (int(v) for v in args.grid.lower().split("x"))
    dbz = synthetic_forecast(height, width, args.steps, args.seed, noisy=args.noisy)
    with tempfile.TemporaryDirectory(prefix="bench-netcdf-") as tmp:
        results = [time_setting(Path(tmp), dbz, setting, args.repeats) for setting in SETTINGS]
    report = {"command": "python -m benchmarks.bench_netcdf_encoding " + " ".join(
                  argv if argv is not None else sys.argv[1:]),
              "grid": [height, width], "lead_steps": args.steps, "noisy": args.noisy, "repeats": args.repeats,
              "raw_bytes": int(dbz.nbytes * 2), "machine": machine_description(),
              "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "results": results}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    for result in results:
        log.info("%-55s write %.3f s, read one lead %.3f s, %.1f MB", result["compression"], result["write_s"],
                 result["read_one_lead_s"], result["bytes"] / 1e6)
    return 0
