"""Time the verification of one slot as the cpu-queue sweep does it; writes JSON.

    python -m benchmarks.bench_verification --grid 256x256 --leads 20 --repeats 5 --json out.json

One slot = two products (the model's and the extrapolation stream's), each of ``--leads`` lead
times, scored against the scans at their valid times for 3 thresholds (20 / 30 / 40 dBZ) and 3 FSS
scales (1, 5, 15 pixels) by :func:`workers.verification.verify_product`, exactly the sweep's code:
read the product netCDF, read each scan once (shared by both products, as in a sweep), derive the
observed events once for both products, accumulate :class:`SkillScores`, write every lead's sums to
Redis with HSETNX in one pipeline. Redis is a private
``redis-server`` started here on a free port (AOF off: the write path, not the disk, is timed).

``--path both`` (the default) also times the code before the shared truth and the lean reader
(:mod:`benchmarks.verification_baseline`: every file read through ``read_scans``, per-forecast
scipy box filters, one round trip per lead), alternating the two in every repeat so a loaded
machine slows both alike. The reads alone are timed for each path with its own reader (the lean
reader, or ``read_scans``), so ``reads_speedup`` is the read path's ratio from the same run.

Reported: the median and every repeat in seconds of wall time and of this process's CPU time (the
redis-server's own time is not in it), the netCDF reads alone, the skill accumulation alone, one
lead of both products read as a steady-state sweep reads it, the limit (0.5 s per slot), the
baseline and the ratios (whole slot, CPU time, reads alone, one lead), the load average before and
after, the CPU (model name and flags from /proc/cpuinfo), date and command.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import redis

from benchmarks.verification_baseline import baseline_accum, verify_product_baseline
from model.data.synthetic import SITE_GRID_MAPPING, StormGenerator
from model.io.lean_reader import open_frames
from model.io.netcdf import read_scans, write_forecast, write_scans
from model.verification.metrics import ObservedEvents, SkillScores
from workers import jobs, skill_store, verification
from workers.feeds import list_scans
from workers.settings import WorkerSettings

LIMIT_S = 0.5
START = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def cpu_info() -> dict[str, Any]:
    """The CPU's model name and flags from /proc/cpuinfo (first processor), and the core count."""
    info: dict[str, Any] = {"cpu": platform.processor() or platform.machine(), "flags": [],
                            "cpu_count": os.cpu_count(), "python": platform.python_version()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                info["flags"] = line.split(":", 1)[1].split()
                break
    except OSError:
        pass
    return info


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("bench_verification: redis-server is not on PATH (Debian: apt-get install redis-server)")
    port = _free_port()
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", str(directory)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    for _ in range(200):
        try:
            client.ping()
            return process, f"redis://127.0.0.1:{port}/0"
        except redis.ConnectionError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("bench_verification: redis-server did not start")


def build_slot(settings: WorkerSettings, r: redis.Redis, grid: tuple[int, int], leads: int) -> list[jobs.JobRecord]:
    """A feed of 1 + ``leads`` storm scans and the slot's two products (truth displaced by 1 and 3 px)."""
    height, width = grid
    frames = StormGenerator(np.random.default_rng(0), height, width).frames(leads + 1)  # (1 + L, H, W) dBZ
    x = (np.arange(width) - (width - 1) / 2.0) * 1000.0
    y = ((height - 1) / 2.0 - np.arange(height)) * 1000.0
    times = [START + dt.timedelta(minutes=6 * k) for k in range(leads + 1)]
    write_scans(settings.feed_dir, frames, times, x=x, y=y, grid_mapping=dict(SITE_GRID_MAPPING))
    grid_of = read_scans(settings.feed_dir / f"scan_{START:%Y%m%dT%H%M}Z.nc").grid
    records = []
    for stream, source, shift in (("model", "predrnn", 1), ("extrapolation", "extrapolation", 3)):
        job_id = jobs.nowcast_job_id(START, stream)
        dbz = np.roll(frames[1:], shift, axis=-1)
        directory = settings.product_dir(job_id)
        directory.mkdir(parents=True)
        path = write_forecast(directory / "forecast.nc", dbz, reference_time=START,
                              lead_minutes=[6.0 * (k + 1) for k in range(leads)], grid=grid_of, model="bench",
                              model_version="bench", checkpoint_sha256="", source=source, input_times=[START])
        jobs.create_job(r, job_id=job_id, kind="nowcast", steps=leads, input_path=None, model_version="bench",
                        slot=START)
        records.append(jobs.update_job(r, job_id=job_id, status="successful", products={"netcdf": str(path)},
                                       source=source, reference_time=f"{START:%Y-%m-%dT%H:%M:%SZ}"))
    return records


PATHS = ("shared", "baseline")


def _clear(r: redis.Redis, records: list[jobs.JobRecord]) -> None:
    for record in records:
        r.delete(f"{skill_store.KEY_PREFIX}{record.job_id}")
    r.delete(skill_store.COMPLETE_KEY)


def time_slot(path: str, settings: WorkerSettings, r: redis.Redis, records: list[jobs.JobRecord], leads: int
              ) -> dict[str, float]:
    """One slot verified from a cold scan cache by ``path``.

    Returns seconds of wall time (``whole``) and of this process's CPU time (``cpu``, which a loaded
    machine inflates far less), then, timed apart, the netCDF reads alone (``reads``: the slot's scans
    and both products), the skill accumulation alone (``accum``), and one lead of both products
    (``one_lead``), what a steady-state sweep reads of them.
    """
    shared = path == "shared"
    verify = verification.verify_product if shared else verify_product_baseline
    _clear(r, records)
    now = START + dt.timedelta(days=1)
    started, started_cpu = time.perf_counter(), time.process_time()
    scans = verification.ScanCache(list_scans(settings.feed_dir), settings.timestep_minutes, lean=shared)
    for record in records:
        outcome = verify(settings, r, record, scans=scans, now=now)
        assert outcome["scored"] == leads, outcome
    timing = {"whole": time.perf_counter() - started, "cpu": time.process_time() - started_cpu}
    # The reads alone, each path with its own reader: the lean reader (shared) or read_scans (baseline).
    started = time.perf_counter()
    cold = verification.ScanCache(list_scans(settings.feed_dir), settings.timestep_minutes, lean=shared)
    truth = np.stack([cold.get(START + dt.timedelta(minutes=6 * (k + 1))) for k in range(leads)])[None]
    forecasts = [_read_product(Path(record.products["netcdf"]), shared)[None] for record in records]
    timing["reads"] = time.perf_counter() - started
    started = time.perf_counter()
    if path == "shared":
        observed = ObservedEvents.of(truth, verification.THRESHOLDS, verification.SCALES)
        for forecast in forecasts:
            SkillScores.init(leads, verification.THRESHOLDS, verification.SCALES).accum_observed(observed, forecast)
    else:
        for forecast in forecasts:
            baseline_accum(SkillScores.init(leads, verification.THRESHOLDS, verification.SCALES), truth, forecast)
    timing["accum"] = time.perf_counter() - started
    # The steady state: a new scan settles one lead of each open product, so a sweep reads one lead
    # of both products (the lean reader) where the code before read both whole (read_scans).
    started = time.perf_counter()
    for record in records:
        _read_lead(Path(record.products["netcdf"]), leads // 2, shared)
    timing["one_lead"] = time.perf_counter() - started
    return timing


def _read_product(path: Path, lean: bool) -> np.ndarray:
    """Every lead of a product, by the lean reader or by read_scans."""
    if not lean:
        return read_scans(path).dbz
    with open_frames(path) as frames:
        return frames.read(list(range(frames.times.size)))


def _read_lead(path: Path, index: int, lean: bool) -> np.ndarray:
    """One lead of a product: read alone by the lean reader, or cut from the whole product by read_scans."""
    if not lean:
        return read_scans(path).dbz[index]
    with open_frames(path) as frames:
        return frames.read([index])[0]


def _summary(timings: list[dict[str, float]]) -> dict[str, Any]:
    def median(name: str) -> float:
        return round(statistics.median(t[name] for t in timings), 4)

    return {"seconds": [round(t["whole"], 4) for t in timings], "median_s": median("whole"),
            "min_s": round(min(t["whole"] for t in timings), 4),
            "cpu_seconds": [round(t["cpu"], 4) for t in timings], "cpu_median_s": median("cpu"),
            "reads_only_median_s": median("reads"), "accum_only_median_s": median("accum"),
            "one_lead_reads_median_s": median("one_lead"), "limit_s": LIMIT_S,
            "within_limit": median("whole") <= LIMIT_S}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_verification", description=__doc__.split("\n")[0])
    parser.add_argument("--grid", default="256x256", help="HxW (default 256x256)")
    parser.add_argument("--leads", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--path", choices=(*PATHS, "both"), default="both",
                        help="shared: the sweep's code (one truth per slot); baseline: the code before it; both "
                             "(default): alternate them in one run, for the ratio")
    parser.add_argument("--json", type=Path, help="write the report here")
    args = parser.parse_args(argv)
    height, width = (int(v) for v in args.grid.lower().split("x"))
    paths = PATHS if args.path == "both" else (args.path,)
    timings: dict[str, list[dict[str, float]]] = {path: [] for path in paths}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-verification-") as tmp:
        process, url = start_redis(Path(tmp))
        try:
            r = redis.Redis.from_url(url)
            settings = WorkerSettings(redis_url=url, data_dir=Path(tmp) / "data")
            records = build_slot(settings, r, (height, width), args.leads)
            for repeat in range(args.repeats + 1):  # the first round warms the imports and file caches
                for path in paths:  # alternated, so both paths see the same load
                    timing = time_slot(path, settings, r, records, args.leads)
                    if repeat > 0:
                        timings[path].append(timing)
        finally:
            process.terminate()
            process.wait(timeout=10)
    load_after = os.getloadavg()
    main_path = paths[0]
    report: dict[str, Any] = {
        "benchmark": "verification of one slot (both streams)",
        "command": " ".join(["python -m benchmarks.bench_verification", *(argv if argv is not None else sys.argv[1:])]),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": cpu_info(),
        "load_average": {"before": [round(v, 2) for v in load_before], "after": [round(v, 2) for v in load_after]},
        "config": {"grid": [height, width], "leads": args.leads, "sources": 2,
                   "thresholds_dbz": [v for _, v in verification.THRESHOLDS], "fss_scales": list(verification.SCALES),
                   "repeats": args.repeats, "paths": list(paths)},
        "path": main_path,
        "result": _summary(timings[main_path]),
    }
    if len(paths) == 2:
        report["baseline"] = _summary(timings["baseline"])
        report["speedup"] = round(report["baseline"]["median_s"] / report["result"]["median_s"], 2)
        report["cpu_speedup"] = round(report["baseline"]["cpu_median_s"] / report["result"]["cpu_median_s"], 2)
        report["reads_speedup"] = round(report["baseline"]["reads_only_median_s"]
                                        / report["result"]["reads_only_median_s"], 2)
        report["one_lead_reads_speedup"] = round(report["baseline"]["one_lead_reads_median_s"]
                                                 / report["result"]["one_lead_reads_median_s"], 2)
    text = json.dumps(report, indent=2) + "\n"
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text)
    result = report["result"]
    sys.stderr.write(f"verified one slot in {result['median_s']:.3f} s median ({main_path} path, limit {LIMIT_S} s), "
                     f"{result['cpu_median_s']:.3f} s of CPU; reads alone {result['reads_only_median_s']:.3f} s, "
                     f"SkillScores alone {result['accum_only_median_s']:.3f} s\n")
    if "baseline" in report:
        sys.stderr.write(f"baseline path {report['baseline']['median_s']:.3f} s median in the same run "
                         f"({report['baseline']['cpu_median_s']:.3f} s of CPU): {report['speedup']:.2f} x "
                         f"({report['cpu_speedup']:.2f} x in CPU time); reads alone "
                         f"{report['baseline']['reads_only_median_s']:.3f} s through read_scans, "
                         f"{report['reads_speedup']:.2f} x the lean reader's; one lead of both products "
                         f"{report['baseline']['one_lead_reads_median_s']:.4f} s, "
                         f"{report['one_lead_reads_speedup']:.2f} x\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
