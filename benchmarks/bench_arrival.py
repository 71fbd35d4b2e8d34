"""Time from a scan landing in the feed to its nowcast being readable through the API, on the real stack.

    python -m benchmarks.bench_arrival --grid 256x256 --slots 2 --json OUT.json

Starts ``nowcast up`` (Redis, worker, beat, synthetic feed, API) in a fresh data directory at feed
speed 1 (the feed and beat share the wall clock), then for each of the next ``--slots`` scan slots:

    landed    the scan file's modification time (written atomically: renamed into place whole)
    readable  the first ``GET /jobs/nowcast-<slot>/results?f=png&lead=<first lead>`` answered 200
    compute   the job record's ``timings.total`` (read, forecast, products)

and reports ``readable - landed`` and ``readable - landed - compute`` (what the schedule and the
queue add). The slot the stack starts in is left out: its scan is written at start-up, before the
worker has loaded the model.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
POLL_S = 0.02  # how often the feed and the API are looked at


def http_get(url: str, timeout: float = 2.0) -> tuple[int | None, bytes]:
    """(status, body); status None when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - localhost only
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError):
        return None, b""


def start_redis(port: int, log_dir: Path) -> subprocess.Popen:
    """A throw-away redis-server (no persistence) that the stack and this script share."""
    from stack.launcher import find_redis_server, redis_ping

    log = open(log_dir / "redis.log", "wb")  # noqa: SIM115 - lives as long as the child
    process = subprocess.Popen([find_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no"], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while not redis_ping("127.0.0.1", port, None):
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError("redis-server did not start")
        time.sleep(0.1)
    return process


def start_stack(data_dir: Path, port: int, grid: str, redis_url: str, env: dict[str, str]) -> subprocess.Popen:
    """``nowcast up`` as a child in its own process group (stopped by :func:`stop_stack`)."""
    command = [sys.executable, "-m", "cli", "up", "--data-dir", str(data_dir), "--port", str(port),
               "--grid", grid, "--redis-url", redis_url, "--quiet"]
    log = open(data_dir.parent / "stack.log", "wb")  # noqa: SIM115 - lives as long as the child
    return subprocess.Popen(command, cwd=REPO_ROOT, env={**os.environ, **env}, stdout=log,
                            stderr=subprocess.STDOUT, process_group=0)


def stop_stack(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)  # nowcast up stops its children in order
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def wait_ready(base: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nowcast up exited with status {process.returncode}")
        if http_get(f"{base}/readyz")[0] == 200:
            return
        time.sleep(0.25)
    raise RuntimeError(f"{base}/readyz not ready after {timeout} s")


def measure_slot(base: str, r: Any, feed_dir: Path, slot: dt.datetime, first_lead: int,
                 timeout: float) -> dict[str, Any]:
    """Wait for ``slot``'s scan and then for its PNG through the API; the times in seconds.

    ``r`` is a redis.Redis on the stack's database: the job record holds the worker's timings.
    """
    from model.io.netcdf import SCAN_NAME
    from workers.jobs import get_job, nowcast_job_id

    scan = feed_dir / SCAN_NAME.format(slot)
    deadline = time.time() + timeout
    while not scan.is_file():
        if time.time() > deadline:
            raise RuntimeError(f"{scan.name} never landed")
        time.sleep(POLL_S)
    landed = scan.stat().st_mtime
    job_id = nowcast_job_id(slot)
    url = f"{base}/jobs/{job_id}/results?f=png&lead={first_lead}"
    while http_get(url)[0] != 200:
        if time.time() > deadline:
            raise RuntimeError(f"{url} never answered 200")
        time.sleep(POLL_S)
    readable = time.time()
    record = get_job(r, job_id=job_id)
    timings = dict(record.timings or {}) if record is not None else {}
    compute = float(timings.get("total", float("nan")))
    return {"slot": f"{slot:%Y-%m-%dT%H:%MZ}", "job_id": job_id, "landed_to_readable_s": round(readable - landed, 3),
            "compute_s": round(compute, 3), "beyond_compute_s": round(readable - landed - compute, 3),
            "timings": {k: round(float(v), 4) for k, v in timings.items()},
            "source": record.source if record is not None else None,
            "created": record.created if record is not None else None}


if __name__ == "__main__":  # the command line is cli/bench_arrival.py
    from cli import run_script

    raise SystemExit(run_script("cli.bench_arrival:main"))
