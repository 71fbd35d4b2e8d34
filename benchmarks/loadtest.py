"""A bounded load test of a running API: concurrent clients mixing submissions and status polls.

    python -m benchmarks.loadtest --url http://127.0.0.1:8000 --api-key KEY \\
        --clients 20 --duration 30 --output loadtest.json

Each client is a thread with its own HTTP connection. It first submits one forecast, then loops
until the deadline: with probability ``--submit-fraction`` it submits a new, unique JSON sequence
(``--scans`` frames of ``--grid`` x ``--grid`` pixels), otherwise it reads the status of a random job
submitted so far (``GET /jobs/{jobID}``). Afterwards every submitted job is looked up again: a job
that the API acknowledged but cannot find is *lost*. ``--drain S`` waits up to S seconds for the
jobs to finish and reports their final states.

The JSON report holds the request counts, status-code histogram, server errors, lost jobs and the
latency percentiles (ms) of status reads and submissions. The exit status is 1 when any request got
a 5xx, failed at the transport level, or a job was lost.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import random
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

logger = logging.getLogger("benchmarks.loadtest")


@dataclass
class Tally:
    """What all clients observed; appended to under one lock."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    status_ms: list[float] = field(default_factory=list)
    submit_ms: list[float] = field(default_factory=list)
    codes: Counter[str] = field(default_factory=Counter)
    transport_errors: list[str] = field(default_factory=list)
    job_ids: list[str] = field(default_factory=list)

    def record(self, kind: str, code: int, ms: float, job_id: str | None = None) -> None:
        with self.lock:
            (self.submit_ms if kind == "submit" else self.status_ms).append(ms)
            self.codes[f"{kind} {code}"] += 1
            if job_id is not None and job_id not in self.job_ids:
                self.job_ids.append(job_id)


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (linear interpolation), None for no values."""
    return float(np.percentile(values, q)) if values else None


def sequence_body(seed: int, *, scans: int, grid: int, timestep: int, steps: int) -> dict[str, Any]:
    """A unique, valid JSON forecast request: a drifting blob, times ending at a seed-derived slot."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:grid, 0:grid]
    frames = [
        (10 + 40 * np.exp(-((yy - grid / 2) ** 2 + (xx - 2 - t) ** 2) / 20) + rng.normal(0, 1, (grid, grid)))
        .round(1)
        .tolist()
        for t in range(scans)
    ]
    # Distinct times per seed as well as distinct values: the job id is a hash of both.
    end = dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=timestep * (seed % 100_000))
    times = [(end - dt.timedelta(minutes=timestep * (scans - 1 - i))).isoformat() for i in range(scans)]
    return {"frames": frames, "shape": [scans, grid, grid], "dtype": "float32", "timestep_minutes": timestep,
            "units": "dBZ", "times": times, "steps": steps}


def _client(index: int, args: argparse.Namespace, tally: Tally, deadline: float) -> None:
    rng = random.Random(index)
    headers = {"X-API-Key": args.api_key}
    counter = 0
    with httpx.Client(base_url=args.url, timeout=60) as http:
        submit_next = True
        while time.monotonic() < deadline:
            try:
                if submit_next or rng.random() < args.submit_fraction:
                    counter += 1
                    body = sequence_body(index * 1_000_000 + counter, scans=args.scans, grid=args.grid,
                                         timestep=args.timestep, steps=args.steps)
                    started = time.perf_counter()
                    response = http.post("/forecast", json=body, headers=headers)
                    elapsed = (time.perf_counter() - started) * 1000
                    job_id = response.json().get("jobID") if response.status_code in (200, 201) else None
                    tally.record("submit", response.status_code, elapsed, job_id)
                    submit_next = False
                else:
                    with tally.lock:
                        job_id = rng.choice(tally.job_ids) if tally.job_ids else None
                    if job_id is None:
                        submit_next = True
                        continue
                    started = time.perf_counter()
                    response = http.get(f"/jobs/{job_id}")
                    tally.record("status", response.status_code, (time.perf_counter() - started) * 1000)
            except httpx.HTTPError as exc:
                with tally.lock:
                    tally.transport_errors.append(f"{exc.__class__.__name__}: {exc}")


def _final_states(args: argparse.Namespace, job_ids: list[str]) -> tuple[Counter[str], list[str]]:
    """Look every acknowledged job up again (waiting up to --drain s for them to finish)."""
    deadline = time.monotonic() + args.drain
    with httpx.Client(base_url=args.url, timeout=60) as http:
        while True:
            states: Counter[str] = Counter()
            lost: list[str] = []
            for job_id in job_ids:
                response = http.get(f"/jobs/{job_id}")
                if response.status_code != 200:
                    lost.append(job_id)
                else:
                    states[response.json()["status"]] += 1
            unfinished = states["accepted"] + states["running"]
            if not unfinished or time.monotonic() >= deadline:
                return states, lost
            time.sleep(2)


def run(args: argparse.Namespace) -> dict[str, Any]:
    tally = Tally()
    deadline = time.monotonic() + args.duration
    threads = [threading.Thread(target=_client, args=(i, args, tally, deadline), daemon=True)
               for i in range(args.clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - started
    states, lost = _final_states(args, list(tally.job_ids))
    server_errors = sum(n for key, n in tally.codes.items() if key.split()[1].startswith("5"))
    report = {
        "url": args.url,
        "clients": args.clients,
        "duration_s": round(wall, 2),
        "submit_fraction": args.submit_fraction,
        "input": {"scans": args.scans, "grid": args.grid, "steps": args.steps},
        "requests": len(tally.status_ms) + len(tally.submit_ms),
        "requests_per_s": round((len(tally.status_ms) + len(tally.submit_ms)) / wall, 1),
        "status_reads": len(tally.status_ms),
        "submissions": len(tally.submit_ms),
        "jobs_acknowledged": len(tally.job_ids),
        "codes": dict(sorted(tally.codes.items())),
        "server_errors": server_errors,
        "transport_errors": len(tally.transport_errors),
        "transport_error_examples": tally.transport_errors[:5],
        "lost_jobs": lost,
        "final_states": dict(states),
        "status_read_ms": {
            "p50": percentile(tally.status_ms, 50),
            "p95": percentile(tally.status_ms, 95),
            "p99": percentile(tally.status_ms, 99),
            "mean": statistics.fmean(tally.status_ms) if tally.status_ms else None,
        },
        "submit_ms": {"p50": percentile(tally.submit_ms, 50), "p95": percentile(tally.submit_ms, 95)},
    }
    return report


if __name__ == "__main__":  # the command line is cli/loadtest.py
    from cli import run_script

    raise SystemExit(run_script("cli.loadtest:main"))
