"""Synthetic radar echoes: seedable storms in dBZ, a training source and ``nowcast synth``.

The command line of ``nowcast synth``: write a synthetic radar feed as CF netCDF scans (see model/data/synthetic.py).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from model import InputError
from model.data.synthetic import parse_grid, parse_start, write_feed

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nowcast synth", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="directory for scan_YYYYmmddTHHMMZ.nc files")
    parser.add_argument("--scans", required=True, type=int, help="number of 6-minute scans")
    parser.add_argument("--grid", default="256x256", help="H x W in pixels (1 km each), e.g. 256x256")
    parser.add_argument("--seed", type=int, default=0, help="storm seed (same seed, same scans)")
    parser.add_argument("--start", default=None,
                        help="first scan time, ISO-8601 UTC (default: the feed ends at the latest 6-min slot)")
    parser.add_argument("--pixel-km", type=float, default=1.0, help="grid spacing in km")
    return parser


def main(argv: list[str]) -> int:

    args = build_parser().parse_args(argv)
    try:
        height, width = parse_grid(args.grid)
        if args.scans < 1:
            raise ValueError(f"--scans must be at least 1, got {args.scans}")
        if args.pixel_km <= 0:
            raise ValueError(f"--pixel-km must be positive, got {args.pixel_km}")
        start = parse_start(args.start, args.scans)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"{args.out}: exists and is not a directory")
    written = write_feed(args.out, args.scans, height, width, seed=args.seed, start=start,
                         pixel_metres=args.pixel_km * 1000.0)
    log.info("wrote %d scans (%dx%d, seed %d) from %s to %s", len(written), height, width, args.seed,
             start.isoformat(), args.out)
    return 0
