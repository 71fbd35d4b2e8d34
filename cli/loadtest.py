"""A bounded load test of a running API: concurrent clients mixing submissions and status polls.

``python -m benchmarks.loadtest``: the command line of benchmarks/loadtest.py
(see there for what it measures).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from benchmarks.loadtest import run

# The library module's logger: the report line keeps the name it has always been logged under.
logger = logging.getLogger("benchmarks.loadtest")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loadtest", description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    parser.add_argument("--submit-fraction", type=float, default=0.1, help="share of requests that submit")
    parser.add_argument("--scans", type=int, default=10, help="frames per submission (the API's input_scans)")
    parser.add_argument("--grid", type=int, default=32, help="pixels per side of submitted frames")
    parser.add_argument("--timestep", type=int, default=6, help="the API's cadence, minutes")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--drain", type=float, default=0.0, help="seconds to wait for jobs to finish")
    parser.add_argument("--output", type=Path, default=Path("loadtest.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    report = run(args)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    logger.info("wrote %s: %d requests, p95 status read %.1f ms, %d server errors, %d lost jobs",
                args.output, report["requests"], report["status_read_ms"]["p95"] or float("nan"),
                report["server_errors"], len(report["lost_jobs"]))
    ok = not report["server_errors"] and not report["lost_jobs"] and not report["transport_errors"]
    return 0 if ok else 1
