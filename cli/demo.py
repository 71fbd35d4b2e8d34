"""``make demo``: the whole stack, one forecast through the API, and the URLs to look at.

    python -m stack.demo [--port 8000] [--data-dir ./var] [--speed 60] [--grid 128x128] [--once]

The command line of stack/demo.py (what the demo does, step by step, is described there).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from model import InputError
from stack.demo import run_demo


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m stack.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000, help="API port (default 8000)")
    parser.add_argument("--data-dir", type=Path, default=Path("./var"), help="the stack's data directory")
    parser.add_argument("--speed", type=float, default=60.0, help="feed speed-up (default 60: a scan per 6 s)")
    parser.add_argument("--grid", default="128x128", help="feed grid HxW (default 128x128)")
    parser.add_argument("--steps", type=int, help="lead times to forecast (default: the service's)")
    parser.add_argument(
        "--input-scans",
        type=int,
        default=int(os.environ.get("NOWCAST_INPUT_SCANS", "10")),
        help="scans to upload (default NOWCAST_INPUT_SCANS or 10)",
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds for start-up and for the job")
    parser.add_argument(
        "--once",
        "--exit-after-submit",
        dest="once",
        action="store_true",
        help="stop the stack and exit once the forecast has finished",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    return run_demo(args.data_dir, port=args.port, speed=args.speed, grid=args.grid, steps=args.steps,
                    input_scans=args.input_scans, timeout=args.timeout, once=args.once)


def script(argv: Sequence[str] | None = None) -> int:
    """``python -m stack.demo``: ``main`` with logging to stderr and bad input as one line, exit 2."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return main(argv)
    except InputError as error:
        sys.stderr.write(f"demo: error: {error}\n")
        return 2
