"""``nowcast up`` and the feed child it starts: the command lines of the local stack (package ``stack``).

nowcast up [--port 8000] [--host 127.0.0.1] [--data-dir ./var] [--speed 1] [--redis-url URL]
           [--grid 128x128] [--domains FILE] [--ready-timeout 180] [--quiet]
python -m stack.launcher feed --feed-dir DIR [--speed X] [--grid HxW]

What they start and how they stop: stack/launcher.py and stack/feed.py.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from model import InputError
from stack.feed import run_feed
from stack.launcher import StackOptions, run_stack


def parse_grid(text: str) -> tuple[int, int]:
    """``"128x96"`` -> (H, W) = (128, 96)."""
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--grid must look like 128x128, got {text!r}") from None
    if height < 8 or width < 8:
        raise argparse.ArgumentTypeError(f"--grid must be at least 8x8, got {text!r}")
    return height, width


def feed_main(argv: Sequence[str]) -> int:
    """The feed child: ``python -m stack.launcher feed --feed-dir DIR [--speed X] [--grid HxW]``."""
    parser = argparse.ArgumentParser(prog="python -m stack.launcher feed", description="synthetic radar feed")
    parser.add_argument("--feed-dir", type=Path, required=True)
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--grid", type=parse_grid, default=(128, 128))
    parser.add_argument("--timestep-minutes", type=int, default=int(os.environ.get("NOWCAST_TIMESTEP_MINUTES", "6")))
    parser.add_argument(
        "--history",
        type=int,
        default=int(os.environ.get("NOWCAST_INPUT_SCANS", "10")) + 2,
        help="slots written at start when missing (default input scans + 2)",
    )
    parser.add_argument("--keep", type=int, default=480, help="scans kept on disk (default 480: two days)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--projection", default=None, help="the grid's CRS: a PROJ string or EPSG:<code>")
    args = parser.parse_args(list(argv))
    return run_feed(args.feed_dir, speed=args.speed, grid=args.grid, timestep_minutes=args.timestep_minutes,
                    history=args.history, keep=args.keep, seed=args.seed, projection=args.projection)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nowcast up", description="Run the whole stack locally: redis, worker, beat, feed and API."
    )
    parser.add_argument("--host", default="127.0.0.1", help="API listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="API port (default 8000)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("NOWCAST_DATA_DIR", "./var")),
        help="inputs, products, feed, beat state, Redis AOF and logs (reused by the next run)",
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="feed clock speed-up: 60 writes a 6-minute scan every 6 s (default 1)",
    )
    parser.add_argument("--redis-url", help="use this Redis instead of starting a private one")
    parser.add_argument("--grid", type=parse_grid, default=(128, 128), help="feed grid HxW (default 128x128)")
    parser.add_argument("--domains", type=Path, default=None,
                        help="domains file (TOML, docs/domains.md): one synthetic feed per domain with a grid")
    parser.add_argument("--ready-timeout", type=float, default=180.0, help="seconds to wait for /readyz")
    parser.add_argument("--quiet", action="store_true", help="child output only in DATA_DIR/logs")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.speed <= 0:
        raise InputError(f"--speed must be positive, got {args.speed}")
    if not 0 < args.port < 65536:
        raise InputError(f"--port must be 1-65535, got {args.port}")
    options = StackOptions(
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        speed=args.speed,
        redis_url=args.redis_url,
        grid=args.grid,
        domains=args.domains,
        ready_timeout=args.ready_timeout,
        quiet=args.quiet,
    )
    return run_stack(options)
