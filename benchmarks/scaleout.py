"""Scale-out: N domains at a sped-up clock against 1, 2 and 3 worker processes, and a worker SIGKILLed mid-run.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.scaleout --domains 4 --grid 256x256 --workers 1,2,3 \
        --slots 6 --period 8 --kill-run 2 --json results/scaleout.json

Each worker is its own ``celery worker -P prefork -c 1`` process (as on separate machines), sharing
only a private redis-server and the product store (one data directory). The benchmark plays beat on
a clock sped up so that one 6-minute slot lasts ``--period`` wall seconds: at every slot it sends,
for every domain, the slot's model and extrapolation tasks to the domain's queues, the moment the
slot's scan "arrives" (the feeds are written beforehand). It reports slots per minute (domain-slots
whose two products were written, per wall minute from the first send to the last product), the
arrival-to-product latency (send to the model job's ``finished``) percentiles, and missed slots (a
domain-slot whose model product was not written within one period of its arrival, or not at all).
In the run named by ``--kill-run`` the pool child of worker 0 is SIGKILLed halfway; every job must
still end successful exactly once (one "successful" line in the workers' logs, one product).
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
INPUT_SCANS = 10


def _write_feeds(root: Path, count: int, grid: tuple[int, int], scans: int) -> Path:
    from model.data.synthetic import storm_frames
    from model.io.netcdf import write_scans

    lines = []
    height, width = grid
    for index in range(count):
        domain = f"d{index}"
        frames = storm_frames([index, 7], scans, height, width)
        times = [START + dt.timedelta(minutes=6 * k) for k in range(scans)]
        write_scans(root / "feeds" / domain, frames, times, x=1000.0 * np.arange(width),
                    y=1000.0 * np.arange(height),
                    grid_mapping={"grid_mapping_name": "transverse_mercator", "longitude_of_central_meridian": 9.0,
                                  "latitude_of_projection_origin": 0.0, "scale_factor_at_central_meridian": 0.9996,
                                  "false_easting": 500000.0, "false_northing": 0.0})
        lines += ["[[domain]]", f'id = "{domain}"', f'feed_dir = "feeds/{domain}"', ""]
    path = root / "domains.toml"
    path.write_text("\n".join(lines))
    return path


def _redis(root: Path) -> tuple[subprocess.Popen, str]:
    from stack.launcher import find_redis_server, free_port, redis_ping

    port = free_port()
    (root / "redis").mkdir(exist_ok=True)
    process = subprocess.Popen([find_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", str(root / "redis")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not redis_ping("127.0.0.1", port, None):
        if time.monotonic() > deadline:
            raise RuntimeError("redis-server did not start")
        time.sleep(0.1)
    return process, f"redis://127.0.0.1:{port}/0"


def _worker(index: int, env: dict[str, str], root: Path, tag: str) -> tuple[subprocess.Popen, Path, str]:
    name = f"bench{index}-{tag}@%h"
    log = root / f"worker{index}-{tag}.log"
    process = subprocess.Popen([sys.executable, "-m", "celery", "-A", "workers.celery_app:app", "worker", "-P",
                                "prefork", "-c", "1", "--prefetch-multiplier", "1", "-Q", "gpu,cpu", "-n", name,
                                "--loglevel", "INFO"], env=env, cwd=root, stdout=log.open("w"),
                               stderr=subprocess.STDOUT, start_new_session=True)
    return process, log, name.replace("%h", os.uname().nodename)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def run(domains: int, workers: int, slots: int, period: float, root: Path, domains_file: Path, redis_url: str,
        checkpoint: str | None, kill: bool) -> dict[str, Any]:
    import redis as redis_lib

    from workers import jobs
    from workers.celery_app import create_app
    from workers.domains import load_domains, nowcast_job_id
    from workers.settings import WorkerSettings

    tag = f"w{workers}"
    data_dir = root / f"data-{tag}"
    db = redis_lib.Redis.from_url(redis_url)
    db.flushall()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOWCAST_")}
    env.update({"NOWCAST_REDIS_URL": redis_url, "NOWCAST_DATA_DIR": str(data_dir), "NOWCAST_DOMAINS": str(domains_file),
                "NOWCAST_DEVICE": "cpu", "NOWCAST_PRECISION": "fp32", "NOWCAST_TORCH_THREADS": "1",
                "OMP_NUM_THREADS": "1", "NOWCAST_LEASE_S": "10", "PYTHONPATH": str(ROOT)})
    if checkpoint:
        env["NOWCAST_CHECKPOINT"] = checkpoint
    known = load_domains(domains_file, settings=WorkerSettings())
    started = [_worker(i, env, root, tag) for i in range(workers)]
    app = create_app(WorkerSettings(redis_url=redis_url, data_dir=data_dir))
    try:
        deadline = time.monotonic() + 120
        names = [name for _, _, name in started]
        answered: set[str] = set()
        while set(names) - answered:
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers {sorted(set(names) - answered)} did not answer ping")
            answered |= {name for reply in app.control.ping(destination=names, timeout=1.0) for name in reply}
        # Warm every worker once (torch import, model load) outside the timed run, as a running service is:
        # one slot per worker, sent together so that each worker takes one.
        warm_slot = START + dt.timedelta(minutes=6 * (INPUT_SCANS - 1))
        warm = [app.send_task("workers.tasks.nowcast", args=[f"{warm_slot:%Y-%m-%dT%H:%M:%SZ}"],
                              kwargs={"domain": f"d{i % domains}"}, queue="gpu") for i in range(workers)]
        for result in warm:
            result.get(timeout=300)
        stale = list(db.scan_iter("nowcast:*"))
        if stale:
            db.delete(*stale)
        sent: dict[str, float] = {}
        first_slot = START + dt.timedelta(minutes=6 * INPUT_SCANS)
        t0 = time.time()
        killed = None
        for k in range(slots):
            target = t0 + k * period
            time.sleep(max(0.0, target - time.time()))
            slot = first_slot + dt.timedelta(minutes=6 * k)
            for d in range(domains):
                iso = f"{slot:%Y-%m-%dT%H:%M:%SZ}"
                app.send_task("workers.tasks.nowcast", args=[iso], kwargs={"domain": f"d{d}"}, queue="gpu")
                app.send_task("workers.tasks.nowcast_extrapolation", args=[iso], kwargs={"domain": f"d{d}"},
                              queue="cpu")
                sent[nowcast_job_id(known.items[d], slot)] = time.time()
            if kill and killed is None and k == slots // 2:
                time.sleep(min(1.0, period / 4))  # into the slot's first jobs: the child is mid-task
                children = _children(started[0][0].pid)
                if children:
                    os.kill(children[0], signal.SIGKILL)
                    killed = {"worker": names[0], "child_pid": children[0], "at_slot": k}
        expected = list(sent) + [f"{job}-extrapolation" for job in sent]
        wait_until = time.time() + max(240.0, 3 * period * slots)
        records: dict[str, Any] = {}
        while time.time() < wait_until:
            records = {job: jobs.get_job(db, job_id=job) for job in expected}
            if all(r is not None and r.status in jobs.FINISHED_STATUSES for r in records.values()):
                break
            time.sleep(0.5)

        def finished(record: Any) -> float | None:
            if record is None or record.status != "successful" or not record.finished:
                return None
            return dt.datetime.fromisoformat(record.finished.replace("Z", "+00:00")).timestamp()

        latencies, missed, done_pairs, last = [], 0, 0, t0
        for job, at in sent.items():
            model, extra = finished(records.get(job)), finished(records.get(f"{job}-extrapolation"))
            if model is None or model - at > period:
                missed += 1
            if model is not None:
                latencies.append(model - at)
            if model is not None and extra is not None:
                done_pairs += 1
                last = max(last, model, extra)
        logs = "".join(log.read_text(errors="replace") for _, log, _ in started)
        successes = re.findall(r"job (nowcast-\S+) successful:", logs)
        successes = [job for job in successes if job in records]  # not the warm-up jobs
        twice = sorted({job for job in successes if successes.count(job) > 1})
        not_successful = sorted(job for job, r in records.items() if r is None or r.status != "successful")
        products = sum(1 for r in records.values() if r is not None and r.products.get("netcdf")
                       and Path(r.products["netcdf"]).is_file())
        minutes = max(1e-9, (last - t0) / 60)
        return {
            "workers": workers, "domains": domains, "slots": slots, "period_s": period,
            "domain_slots": len(sent), "completed_domain_slots": done_pairs,
            "slots_per_minute": round(done_pairs / minutes, 2),
            "latency_s": {"p50": round(float(np.percentile(latencies, 50)), 2) if latencies else None,
                          "p90": round(float(np.percentile(latencies, 90)), 2) if latencies else None,
                          "p99": round(float(np.percentile(latencies, 99)), 2) if latencies else None,
                          "max": round(max(latencies), 2) if latencies else None},
            "missed_slots": missed, "jobs": len(expected), "products": products,
            "not_successful": not_successful, "done_twice": twice, "killed": killed,
            "attempts_over_1": sorted(job for job, r in records.items() if r is not None and r.attempts > 1),
            "median_model_job_s": round(statistics.median(
                [r.timings.get("total", 0.0) for j, r in records.items() if r and r.timings and
                 not j.endswith("extrapolation")] or [0.0]), 3),
        }
    finally:
        for process, _, _ in started:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for process, _, _ in started:
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        app.close()
        db.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", type=int, default=4)
    parser.add_argument("--grid", default="256x256")
    parser.add_argument("--workers", default="1,2,3")
    parser.add_argument("--slots", type=int, default=6)
    parser.add_argument("--period", type=float, default=8.0, help="wall seconds per 6-minute slot")
    parser.add_argument("--kill-run", type=int, default=2,
                        help="SIGKILL a pool child in the run with this many workers (0: none)")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the feeds, products and worker logs (printed)")
    args = parser.parse_args(argv)
    grid = tuple(int(n) for n in args.grid.lower().split("x"))
    root = Path(tempfile.mkdtemp(prefix="scaleout-"))
    domains_file = _write_feeds(root, args.domains, grid, INPUT_SCANS + args.slots)  # type: ignore[arg-type]
    redis_process, url = _redis(root)
    try:
        runs = [run(args.domains, int(w), args.slots, args.period, root, domains_file, url, args.checkpoint,
                    int(w) == args.kill_run) for w in args.workers.split(",")]
    finally:
        redis_process.terminate()
        redis_process.wait(10)
        if args.keep:
            sys.stderr.write(f"kept {root}\n")
        else:
            shutil.rmtree(root, ignore_errors=True)
    emit_json({"benchmark": "scaleout", "grid": list(grid), "speed": round(360.0 / args.period, 2),
               "command": "python -m benchmarks.scaleout " + " ".join(sys.argv[1:] if argv is None else argv),
               "seed": "storm_frames([domain, 7])", "runs": runs, "machine": machine_description(),
               "date": time.strftime("%Y-%m-%d", time.gmtime())}, args.json)


if __name__ == "__main__":
    main()
