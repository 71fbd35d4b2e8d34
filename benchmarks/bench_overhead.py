"""What a warm scheduled nowcast spends beyond the model's own compute, through the real stack.

    .venv/bin/python -m benchmarks.bench_overhead --grid 256x256 --slots 6 \
        [--compare REV] --json results/bench/latency/overhead_256.json

Starts a throw-away redis-server and a real ``celery worker -P prefork -c 1`` with the shipped
checkpoint, writes a synthetic storm feed (``storm_frames([seed, 7])``) and sends the worker one
``workers.tasks.nowcast`` per slot, one at a time, after a warm-up slot (torch import, model load).
For each warm slot it records:

    wall      the task's run time as the worker logs it ("succeeded in X s": from the task's
              start to its result stored, so the final job record and products are included)
    compute   the model's own: ``network`` + ``lagrangian_motion`` + ``lagrangian_align`` +
              ``lagrangian_advect`` from the job's ``timings``
    overhead  wall - compute, the figure the 0.5 s goal bounds
    stages    every other entry of the job's ``timings`` (workers/tasks.py, workers/products.py),
              and ``final_record`` = wall - ``timings.job`` (the final record write and the
              task's return)

``--compare REV`` exports the git revision REV (``git archive``, nothing in the checkout changes)
and runs a second worker on that code, on its own Redis database and data directory. The two
workers take the slots in turns (ABBA), so both see the same load; the JSON gives each variant's
medians and the ratio of their overheads.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.machine import machine_description
from benchmarks.report import emit_json

ROOT = Path(__file__).resolve().parent.parent
START = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
COMPUTE_KEYS = ("network", "lagrangian_motion", "lagrangian_align", "lagrangian_advect")
# Entries of the job's timings that are sums of others (or the compute), not stages of their own.
SUMMARY_KEYS = ("inference", "write", "total", "job", "write_netcdf", "write_quicklooks", *COMPUTE_KEYS)
SUCCEEDED = re.compile(r"Task workers\.tasks\.nowcast\[(?P<id>[0-9a-f-]+)\] succeeded in (?P<s>[0-9.]+)s")


def write_feed(feed: Path, *, scans: int, grid: tuple[int, int], seed: int) -> None:
    """``scans`` synthetic storm scans (dBZ) at 6 minutes from START, as CF netCDF files."""
    from model.data.synthetic import storm_frames
    from model.io.netcdf import write_scans

    height, width = grid
    frames = storm_frames([seed, 7], scans, height, width)
    times = [START + dt.timedelta(minutes=6 * k) for k in range(scans)]
    write_scans(feed, frames, times, x=1000.0 * np.arange(width), y=1000.0 * np.arange(height),
                grid_mapping={"grid_mapping_name": "transverse_mercator", "longitude_of_central_meridian": 9.0,
                              "latitude_of_projection_origin": 0.0, "scale_factor_at_central_meridian": 0.9996,
                              "false_easting": 500000.0, "false_northing": 0.0})


def export_revision(revision: str, target: Path) -> Path:
    """The tree of git ``revision`` unpacked under ``target`` (read-only use of the repository)."""
    target.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", revision], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def start_worker(name: str, code: Path, env: dict[str, str], root: Path) -> tuple[subprocess.Popen, Path]:
    """One ``celery worker -c 1`` on the gpu queue, running the code under ``code``; its log file."""
    log = root / f"worker-{name}.log"
    process = subprocess.Popen([sys.executable, "-m", "celery", "-A", "workers.celery_app:app", "worker", "-P",
                                "prefork", "-c", "1", "--prefetch-multiplier", "1", "-Q", "gpu", "-n",
                                f"overhead-{name}@%h", "--loglevel", "INFO"],
                               env={**env, "PYTHONPATH": str(code)}, cwd=code, stdout=log.open("w"),
                               stderr=subprocess.STDOUT, start_new_session=True)
    return process, log


def _run_time(log: Path, task_id: str, timeout_s: float = 10.0) -> float:
    """The worker's own "succeeded in X s" for ``task_id`` (logged right after the result is stored)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for match in SUCCEEDED.finditer(log.read_text(errors="replace")):
            if match["id"] == task_id:
                return float(match["s"])
        time.sleep(0.05)
    raise RuntimeError(f"{log.name}: no success line for task {task_id}")


def one_slot(variant: dict[str, Any], slot: dt.datetime) -> dict[str, Any]:
    """Send the slot's model nowcast to ``variant``'s worker, wait for it, and split its time."""
    from workers import jobs

    sent = time.perf_counter()
    result = variant["app"].send_task("workers.tasks.nowcast", args=[f"{slot:%Y-%m-%dT%H:%M:%SZ}"], queue="gpu")
    summary = result.get(timeout=600)
    seen = time.perf_counter() - sent
    if summary["status"] != "successful":
        raise RuntimeError(f"{variant['name']} {slot:%H:%MZ}: {summary['status']}: {summary['message']}")
    record = jobs.get_job(variant["db"], job_id=summary["job_id"])
    for path in [record.products["netcdf"], record.products["observed"], record.products["gif"],
                 *record.products["png"].values(), *record.products["obs_png"].values()]:
        if not Path(path).is_file():  # the record must never name a file that is not there
            raise RuntimeError(f"{summary['job_id']}: the record names {path}, which is missing")
    timings = dict(record.timings)
    wall = _run_time(variant["log"], result.id)
    compute = sum(timings.get(key, 0.0) for key in COMPUTE_KEYS)
    stages = {key: value for key, value in timings.items() if key not in SUMMARY_KEYS}
    if "job" in timings:
        stages["final_record"] = round(wall - timings["job"], 4)
    return {"slot": f"{slot:%Y-%m-%dT%H:%MZ}", "wall_s": wall, "send_to_result_s": round(seen, 4),
            "compute_s": round(compute, 4), "overhead_s": round(wall - compute, 4),
            "compute": {key: timings[key] for key in COMPUTE_KEYS if key in timings},
            "stages": stages, "timings": timings, "source": record.source}


def _median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the warm runs: wall, compute, overhead, each stage, and every entry of the job's timings
    (a baseline revision may have only the coarser ``write_netcdf`` and ``write_quicklooks``)."""
    keys = sorted({key for run in runs for key in run["stages"]})
    timing_keys = sorted({key for run in runs for key in run["timings"]})
    return {"wall_s": round(statistics.median(r["wall_s"] for r in runs), 4),
            "compute_s": round(statistics.median(r["compute_s"] for r in runs), 4),
            "overhead_s": round(statistics.median(r["overhead_s"] for r in runs), 4),
            "stages": {key: round(statistics.median(r["stages"].get(key, 0.0) for r in runs), 4) for key in keys},
            "timings": {key: round(statistics.median(r["timings"].get(key, 0.0) for r in runs), 4)
                        for key in timing_keys}}


def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    import redis as redis_lib

    from benchmarks.scaleout import _redis
    from workers.celery_app import create_app
    from workers.settings import WorkerSettings

    grid = tuple(int(n) for n in args.grid.lower().split("x"))
    feed = root / "feed"
    write_feed(feed, scans=args.scans + 1 + args.slots, grid=grid, seed=args.seed)  # type: ignore[arg-type]
    redis_process, url = _redis(root)
    base = url.rsplit("/", 1)[0]
    codes = {"current": ROOT}
    if args.compare:
        codes["baseline"] = export_revision(args.compare, root / "baseline-code")
    checkpoint = str(Path(args.checkpoint).resolve())
    variants: list[dict[str, Any]] = []
    try:
        for index, (name, code) in enumerate(codes.items()):
            env = {k: v for k, v in os.environ.items() if not k.startswith("NOWCAST_")}
            redis_url = f"{base}/{index}"
            env.update({"NOWCAST_REDIS_URL": redis_url, "NOWCAST_DATA_DIR": str(root / f"data-{name}"),
                        "NOWCAST_FEED_DIR": str(feed), "NOWCAST_CHECKPOINT": checkpoint,
                        "NOWCAST_INPUT_SCANS": str(args.scans), "NOWCAST_LEAD_STEPS": str(args.steps),
                        "NOWCAST_TORCH_THREADS": str(args.threads), "NOWCAST_DEVICE": "cpu",
                        "NOWCAST_FEED_POLL_SECONDS": "0"})
            process, log = start_worker(name, code, env, root)
            variants.append({"name": name, "process": process, "log": log,
                             "app": create_app(WorkerSettings(redis_url=redis_url, data_dir=root / f"data-{name}")),
                             "db": redis_lib.Redis.from_url(redis_url), "runs": []})
        first = START + dt.timedelta(minutes=6 * (args.scans - 1))
        for variant in variants:  # the warm-up slot: torch import, model load, first-call caches
            variant["warmup"] = one_slot(variant, first)
        for k in range(args.slots):
            slot = first + dt.timedelta(minutes=6 * (k + 1))
            order = variants if k % 2 == 0 else variants[::-1]  # ABBA: neither variant always goes first
            for variant in order:
                variant["runs"].append(one_slot(variant, slot))
        report: dict[str, Any] = dict.fromkeys(codes)
        for variant in variants:
            report[variant["name"]] = {"code": "working tree" if variant["name"] == "current" else args.compare,
                                       "warm_median": _median_of(variant["runs"]), "warm_runs": variant["runs"],
                                       "warmup": variant["warmup"]}
        return report
    finally:
        for variant in variants:
            try:
                os.killpg(variant["process"].pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for variant in variants:
            try:
                variant["process"].wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(variant["process"].pid, signal.SIGKILL)
            variant["app"].close()
            variant["db"].close()
        redis_process.terminate()
        redis_process.wait(10)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default="256x256")
    parser.add_argument("--scans", type=int, default=10, help="input scans per nowcast")
    parser.add_argument("--steps", type=int, default=20, help="lead times per nowcast")
    parser.add_argument("--slots", type=int, default=6, help="warm slots timed per variant")
    parser.add_argument("--threads", type=int, default=0, help="NOWCAST_TORCH_THREADS (0: the worker's default)")
    parser.add_argument("--checkpoint", default=str(ROOT / "model" / "checkpoints" / "radar_lagrangian.pt"))
    parser.add_argument("--compare", default=None, help="a git revision to run beside the working tree")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the feed, products and worker logs (printed)")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="overhead-"))
    load_before = [round(v, 2) for v in os.getloadavg()]
    try:
        variants = run(args, root)
    finally:
        if args.keep:
            sys.stderr.write(f"kept {root}\n")
        else:
            shutil.rmtree(root, ignore_errors=True)
    report: dict[str, Any] = {
        "benchmark": "bench_overhead", "grid": [int(n) for n in args.grid.lower().split("x")],
        "scans": args.scans, "steps": args.steps, "slots": args.slots, "seed": args.seed,
        "checkpoint": Path(args.checkpoint).name, "goal_overhead_s": 0.5,
        "command": "python -m benchmarks.bench_overhead " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime()), "machine": machine_description(),
        "load_average_at_start": load_before, "variants": variants,
    }
    if variants.get("baseline"):
        before = variants["baseline"]["warm_median"]["overhead_s"]
        after = variants["current"]["warm_median"]["overhead_s"]
        report["overhead_ratio_baseline_over_current"] = round(before / after, 3) if after > 0 else None
    emit_json(report, args.json)


if __name__ == "__main__":
    main()
