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
import json
import logging
import random
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
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


if __name__ == "__main__":
    raise SystemExit(main())
