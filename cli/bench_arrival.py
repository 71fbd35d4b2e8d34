"""Time from a scan landing in the feed to its nowcast being readable through the API, on the real stack.

``python -m benchmarks.bench_arrival``: the command line of benchmarks/bench_arrival.py
(see there for what it measures).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import secrets
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks.bench_arrival import REPO_ROOT, measure_slot, start_redis, start_stack, stop_stack, wait_ready
from benchmarks.machine import machine_description

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_arrival", description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default="256x256", help="HxW of the synthetic feed")
    parser.add_argument("--slots", type=int, default=2, help="scan slots to time after the first (6 min each)")
    parser.add_argument("--poll-seconds", type=float, default=2.0, help="NOWCAST_FEED_POLL_SECONDS of beat")
    parser.add_argument("--checkpoint", type=Path, default=REPO_ROOT / "model" / "checkpoints" / "radar_v2.pt")
    parser.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="auto")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--redis-port", type=int, default=6391)
    parser.add_argument("--json", type=Path, default=Path("bench_arrival.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import redis

    from workers.schedule import floor_to_step

    base = f"http://127.0.0.1:{args.port}"
    redis_url = f"redis://127.0.0.1:{args.redis_port}/0"
    env = {"NOWCAST_API_KEYS": secrets.token_urlsafe(24), "NOWCAST_FEED_POLL_SECONDS": str(args.poll_seconds),
           "NOWCAST_CHECKPOINT": str(args.checkpoint.resolve()), "NOWCAST_PRECISION": args.precision}
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-arrival-") as tmp:
        data_dir = Path(tmp) / "var"
        data_dir.mkdir()
        redis_process = start_redis(args.redis_port, Path(tmp))
        stack = start_stack(data_dir, args.port, args.grid, redis_url, env)
        r = redis.Redis.from_url(redis_url)
        try:
            wait_ready(base, stack, timeout=300)
            slot = floor_to_step(dt.datetime.now(dt.UTC), 6)
            for _ in range(args.slots):
                slot += dt.timedelta(minutes=6)
                log.info("waiting for the %s scan", f"{slot:%H:%MZ}")
                result = measure_slot(base, r, data_dir / "feed", slot, first_lead=6, timeout=6 * 60 + 120)
                log.info("%s: readable %.2f s after landing, compute %.2f s, %.2f s beyond compute",
                         result["slot"], result["landed_to_readable_s"], result["compute_s"],
                         result["beyond_compute_s"])
                results.append(result)
        except Exception:
            log.error("the stack's output:\n%s", (Path(tmp) / "stack.log").read_text(errors="replace")[-4000:])
            raise
        finally:
            stop_stack(stack)
            r.close()
            redis_process.terminate()
            redis_process.wait(timeout=30)
    report = {"command": "python -m benchmarks.bench_arrival " + " ".join(argv if argv is not None else sys.argv[1:]),
              "grid": args.grid, "poll_seconds": args.poll_seconds, "checkpoint": str(args.checkpoint),
              "precision_setting": args.precision, "machine": machine_description(),
              "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "results": results,
              "max_beyond_compute_s": max(x["beyond_compute_s"] for x in results) if results else None,
              "median_landed_to_readable_s": statistics.median(x["landed_to_readable_s"] for x in results)
              if results else None}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0
