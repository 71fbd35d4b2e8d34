"""The fault suite as a benchmark: bad inputs, Redis outages and a mixed load with worker kills,
against a private stack of real processes (``benchmarks/faultstack.py``); writes a JSON report.

    python -m benchmarks.bench_faults --clients 20 --seconds 60 --json results/hardening/faults.json

Phases:

1. ``bad_inputs``: a catalogue of hostile or broken requests; each must answer 4xx problem+json
   and leave no job and no file behind.
2. ``outage``: Redis paused (SIGSTOP), then killed and restarted (AOF); every request meanwhile
   must answer 503 with ``Retry-After`` (readiness too), and the job accepted before must survive.
3. ``load``: ``--clients`` threads for ``--seconds`` mixing submissions (new and repeated inputs),
   status and result reads, listings and DELETEs, while the worker's pool child is SIGKILLed every
   ``--kill-every`` seconds. Then every acknowledged job is looked up again (*lost*: not found) and
   the worker log is searched for a job completed twice (*duplicated*).

Exit status 1 when a phase saw a 5xx where it must not, a transport error, a lost or a duplicated job.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import random
import re
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.faultstack import FaultStack

GRID, SCANS, STEPS = 16, 4, 3
STACK_ENV = {"NOWCAST_INPUT_SCANS": str(SCANS), "NOWCAST_LEAD_STEPS": str(STEPS), "NOWCAST_MAX_GRID": "64",
             "NOWCAST_MAX_SCANS": "12", "NOWCAST_LEASE_S": "10", "NOWCAST_REDIS_TIMEOUT_SECONDS": "1",
             "NOWCAST_RETRY_BACKOFF_S": "0.5", "NOWCAST_LOG_FORMAT": "text"}


def body(seed: int, **overrides: Any) -> dict[str, Any]:
    """A valid JSON request, unique per seed (values and times)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:GRID, 0:GRID]
    frames = [(10 + 35 * np.exp(-((yy - 8) ** 2 + (xx - 3 - t) ** 2) / 10) + rng.normal(0, 0.5, (GRID, GRID)))
              .round(2).tolist() for t in range(SCANS)]
    end = dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=6 * (seed % 100_000))
    times = [(end - dt.timedelta(minutes=6 * (SCANS - 1 - i))).isoformat() for i in range(SCANS)]
    document = {"frames": frames, "shape": [SCANS, GRID, GRID], "timestep_minutes": 6, "units": "dBZ",
                "times": times, "steps": STEPS}
    document.update(overrides)
    return document


def tiny_checkpoint(path: Path) -> Path:
    import torch

    from model.checkpoint import save_checkpoint
    from model.network.predrnn import PredRNN, PredRNNConfig

    torch.manual_seed(0)
    config = PredRNNConfig(num_hidden=[8, 8], filter_size=3, patch_size=4, input_length=SCANS, output_length=STEPS)
    save_checkpoint(path, PredRNN(config))
    return path


# ------------------------------------------------------------------------------------- bad inputs


def bad_requests() -> list[tuple[str, str, str, dict[str, Any]]]:
    """(case, method, path, httpx keyword arguments), each to be refused with a 4xx."""
    nan_axis = json.dumps(body(1))[:-1] + ', "grid": {"x": [' + ", ".join(["NaN"] * GRID) + '], "y": ' + \
        json.dumps([float(i) for i in range(GRID)]) + "}}"
    cases: list[tuple[str, str, str, dict[str, Any]]] = [
        ("nested 1000 deep", "POST", "/forecast", {"content": b"[" * 1000 + b"]" * 1000}),
        ("nested 100000 deep", "POST", "/forecast", {"content": b"[" * 100_000 + b"]" * 100_000}),
        ("nested on the OGC execution", "POST", "/processes/nowcast/execution", {"content": b"[" * 5000}),
        ("not JSON", "POST", "/forecast", {"content": b"{frames: nope"}),
        ("empty frames", "POST", "/forecast", {"json": body(1, frames=[], times=None)}),
        ("100000 frames of 1x1", "POST", "/forecast",
         {"json": {"frames": [[[1.0]]] * 100_000, "shape": [100_000, 1, 1], "timestep_minutes": 6, "units": "dBZ"}}),
        ("grid too large", "POST", "/forecast", {"json": {**body(1), "frames": [[[1.0] * 65]] * SCANS,
                                                         "shape": [SCANS, 1, 65]}}),
        ("NaN grid axis", "POST", "/forecast", {"content": nan_axis.encode()}),
        ("constant grid axis", "POST", "/forecast",
         {"json": body(1, grid={"x": [5.0] * GRID, "y": [float(i) for i in range(GRID)]})}),
        ("times in year 9999 with an offset", "POST", "/forecast",
         {"json": body(1, times=["9999-12-31T23:59:59-23:59"] * SCANS)}),
        ("steps true", "POST", "/forecast", {"json": body(1, steps=True)}),
        ("steps 3.0", "POST", "/forecast", {"json": body(1, steps=3.0)}),
        ("steps 0", "POST", "/forecast", {"json": body(1, steps=0)}),
        ("wrong cadence", "POST", "/forecast", {"json": body(1, timestep_minutes=5)}),
        ("negative rain rate", "POST", "/forecast",
         {"json": body(1, units="mm/h", frames=[[[-1.0] * GRID] * GRID] * SCANS)}),
        ("multipart steps in Arabic-Indic digits", "POST", "/forecast",
         {"files": [("file", ("a.nc", b"CDF\x01" + b"\0" * 60))], "data": {"steps": "\u0663"}}),
        ("multipart not netCDF", "POST", "/forecast", {"files": [("file", ("a.txt", b"hello"))]}),
        ("unknown media type", "POST", "/forecast", {"content": b"x", "headers": {"Content-Type": "text/plain"}}),
        ("no key", "POST", "/forecast", {"json": body(1), "headers": {"X-API-Key": ""}}),
        ("wrong key", "POST", "/forecast", {"json": body(1), "headers": {"X-API-Key": "x" * 20}}),
        ("scan time past year 9999", "GET", "/nowcasts/9999-12-31T23:59:59-23:59", {}),
        ("scan time before year 1", "GET", "/nowcasts/0001-01-01T00:00:00%2B01:00", {}),
        ("log injection in a job id", "GET", "/jobs/%0d%0aX-Injected:%201", {}),
        ("NUL in a job id", "GET", "/jobs/a%00b", {}),
        ("unknown job", "GET", "/jobs/forecast-nope/results", {}),
        ("dismiss unknown job", "DELETE", "/jobs/forecast-nope", {}),
        ("PUT on a job", "PUT", "/jobs/forecast-nope", {}),
        ("lead out of range", "GET", "/jobs/forecast-nope/results?lead=9999999", {}),
    ]
    for value in (500.0, 1e30, -1e30, 3e38, float("inf")):
        frames = body(2)["frames"]
        frames[1][2][3] = value
        text = json.dumps({**body(2), "frames": frames}).replace("Infinity", "1e999")
        cases.append((f"reflectivity {value:g}", "POST", "/forecast", {"content": text.encode()}))
    rain = body(3, units="mm/h")
    rain["frames"] = np.clip(np.asarray(rain["frames"]), 0, None).tolist()
    rain["frames"][0][0][0] = 5000.0
    cases.append(("rain rate 5000 mm/h", "POST", "/forecast", {"json": rain}))
    return cases


def run_bad_inputs(stack: FaultStack, http: httpx.Client) -> dict[str, Any]:
    codes: Counter[int] = Counter()
    refused_without_reason = []
    server_errors = []
    for case, method, path, kwargs in bad_requests():
        headers = {**stack.headers, "Content-Type": "application/json", **kwargs.pop("headers", {})}
        if "files" in kwargs or "json" in kwargs:
            headers.pop("Content-Type")
        response = http.request(method, path, headers=headers, **kwargs)
        codes[response.status_code] += 1
        if response.status_code >= 500:
            server_errors.append(case)
        elif not 400 <= response.status_code < 500 or "detail" not in response.json():
            refused_without_reason.append(f"{case}: {response.status_code}")
    inputs = stack.data_dir / "inputs"
    residue = sorted(p.name for p in inputs.iterdir()) if inputs.exists() else []
    jobs = http.get("/jobs").json()["numberMatched"]
    return {"cases": sum(codes.values()), "codes": {str(k): v for k, v in sorted(codes.items())},
            "server_errors": server_errors, "not_4xx_problem": refused_without_reason,
            "jobs_left": jobs, "files_left": residue}


# ----------------------------------------------------------------------------------------- outage


def _outage_probe(stack: FaultStack, http: httpx.Client, job_id: str) -> dict[str, Any]:
    calls = [("POST", "/forecast", {"json": body(99)}), ("GET", f"/jobs/{job_id}", {}), ("GET", "/jobs", {}),
             ("DELETE", f"/jobs/{job_id}", {}), ("GET", f"/jobs/{job_id}/results", {}),
             ("GET", "/nowcasts/latest", {}), ("GET", "/readyz", {})]
    codes: Counter[int] = Counter()
    without_retry_after, slowest = 0, 0.0
    for method, path, kwargs in calls:
        started = time.monotonic()
        response = http.request(method, path, headers=stack.headers, **kwargs)
        slowest = max(slowest, time.monotonic() - started)
        codes[response.status_code] += 1
        without_retry_after += response.status_code == 503 and "retry-after" not in response.headers
    return {"requests": len(calls), "codes": {str(k): v for k, v in codes.items()},
            "without_retry_after": without_retry_after, "slowest_s": round(slowest, 2)}


def run_outage(stack: FaultStack, http: httpx.Client) -> dict[str, Any]:
    accepted = http.post("/forecast", json=body(7), headers=stack.headers)
    job_id = accepted.json()["jobID"]
    stack.redis.pause()
    paused = _outage_probe(stack, http, job_id)
    stack.redis.resume()
    stack.redis.kill()
    down = _outage_probe(stack, http, job_id)
    stack.redis.start()
    survived = http.get(f"/jobs/{job_id}").status_code == 200
    return {"faults_injected": 2, "paused": paused, "killed": down, "accepted_job_survived": survived}


# ------------------------------------------------------------------------------------------- load


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.codes: Counter[str] = Counter()
        self.transport_errors: list[str] = []
        self.jobs: dict[str, int] = {}  # job id -> seed of its input
        self.requests = 0

    def record(self, kind: str, code: int) -> None:
        with self.lock:
            self.codes[f"{kind} {code}"] += 1
            self.requests += 1


def _client(index: int, stack: FaultStack, tally: Tally, deadline: float, submit_every: float) -> None:
    rng = random.Random(index)
    next_submit = time.monotonic() + rng.uniform(0, submit_every)
    seed = index * 1_000_000
    with httpx.Client(base_url=stack.api.url, headers=stack.headers, timeout=60) as http:
        while time.monotonic() < deadline:
            try:
                with tally.lock:
                    known = list(tally.jobs.items())
                roll = rng.random()
                if time.monotonic() >= next_submit or not known:
                    seed += 1
                    next_submit = time.monotonic() + submit_every
                    response = http.post("/forecast", json=body(seed))
                    tally.record("submit", response.status_code)
                    if response.status_code in (200, 201):
                        with tally.lock:
                            tally.jobs[response.json()["jobID"]] = seed
                    continue
                job_id, job_seed = rng.choice(known)
                if roll < 0.05:  # the same input again: must answer the same job
                    response = http.post("/forecast", json=body(job_seed))
                    tally.record("resubmit", response.status_code)
                    if response.status_code in (200, 201) and response.json()["jobID"] != job_id:
                        with tally.lock:
                            tally.transport_errors.append(f"resubmission of {job_id} gave another job")
                elif roll < 0.55:
                    tally.record("status", http.get(f"/jobs/{job_id}").status_code)
                elif roll < 0.75:
                    tally.record("results", http.get(f"/jobs/{job_id}/results", params={"f": "json"}).status_code)
                elif roll < 0.9:
                    tally.record("list", http.get("/jobs", params={"limit": 20}).status_code)
                else:
                    tally.record("delete", http.delete(f"/jobs/{job_id}").status_code)
            except httpx.HTTPError as exc:
                with tally.lock:
                    tally.transport_errors.append(f"{exc.__class__.__name__}: {exc}")


def run_load(stack: FaultStack, *, clients: int, seconds: float, submit_every: float, kill_every: float,
             drain: float) -> dict[str, Any]:
    tally = Tally()
    started = time.monotonic()
    deadline = started + seconds
    threads = [threading.Thread(target=_client, args=(i, stack, tally, deadline, submit_every), daemon=True)
               for i in range(clients)]
    for thread in threads:
        thread.start()
    kills = 0
    while time.monotonic() < deadline:
        time.sleep(min(kill_every, max(0.0, deadline - time.monotonic())))
        if time.monotonic() < deadline and stack.workers[0].kill_children():
            kills += 1
    for thread in threads:
        thread.join()
    wall = time.monotonic() - started
    states, lost = _final_states(stack, list(tally.jobs), drain)
    completions = Counter(re.findall(r"job (\S+) successful:", stack.workers[0].log_text()))
    duplicated = sorted(job for job, count in completions.items() if count > 1)
    server_errors = sum(n for key, n in tally.codes.items() if key.split()[1].startswith("5"))
    return {"clients": clients, "duration_s": round(wall, 1), "requests": tally.requests,
            "requests_per_s": round(tally.requests / wall, 1), "codes": dict(sorted(tally.codes.items())),
            "server_errors": server_errors, "transport_errors": len(tally.transport_errors),
            "transport_error_examples": tally.transport_errors[:5], "faults_injected": kills,
            "jobs_acknowledged": len(tally.jobs), "final_states": dict(states), "lost": lost,
            "duplicated": duplicated}


def _final_states(stack: FaultStack, job_ids: list[str], drain: float) -> tuple[Counter[str], list[str]]:
    deadline = time.monotonic() + drain
    with httpx.Client(base_url=stack.api.url, headers=stack.headers, timeout=60) as http:
        while True:
            states: Counter[str] = Counter()
            lost = []
            for job_id in job_ids:
                response = http.get(f"/jobs/{job_id}")
                if response.status_code == 200:
                    states[response.json()["status"]] += 1
                else:
                    lost.append(job_id)
            if not states["accepted"] + states["running"] or time.monotonic() > deadline:
                return states, lost
            time.sleep(2)


# ------------------------------------------------------------------------------------------- main


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version()}
    try:
        text = Path("/proc/cpuinfo").read_text()
        info["cpu"] = re.search(r"model name\s*:\s*(.*)", text).group(1)  # type: ignore[union-attr]
        info["cpu_flags"] = re.search(r"flags\s*:\s*(.*)", text).group(1).split()  # type: ignore[union-attr]
        info["logical_cpus"] = text.count("processor\t:")
    except (OSError, AttributeError):
        pass
    return info


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="nowcast-faults-") as tmp:
        root = Path(tmp)
        checkpoint = tiny_checkpoint(root / "tiny.pt")
        with FaultStack(root / "stack", checkpoint=checkpoint, env=STACK_ENV) as stack:
            with httpx.Client(base_url=stack.api.url, timeout=60) as http:
                bad = run_bad_inputs(stack, http)
                outage = run_outage(stack, http)
            load = run_load(stack, clients=args.clients, seconds=args.seconds, submit_every=args.submit_every,
                            kill_every=args.kill_every, drain=args.drain)
    ok = (not bad["server_errors"] and not bad["not_4xx_problem"] and not bad["jobs_left"] and not bad["files_left"]
          and all(set(p["codes"]) == {"503"} and not p["without_retry_after"]
                  for p in (outage["paused"], outage["killed"]))
          and outage["accepted_job_survived"] and not load["server_errors"] and not load["transport_errors"]
          and not load["lost"] and not load["duplicated"])
    return {"ok": ok, "command": "python -m benchmarks.bench_faults " + " ".join(args.argv),
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "machine": machine(),
            "bad_inputs": bad, "outage": outage, "load": load,
            "summary": {"cases_tried": bad["cases"] + outage["paused"]["requests"] + outage["killed"]["requests"],
                        "faults_injected": outage["faults_injected"] + load["faults_injected"],
                        "requests": bad["cases"] + outage["paused"]["requests"] + outage["killed"]["requests"]
                        + load["requests"],
                        "server_errors_outside_outages": len(bad["server_errors"]) + load["server_errors"],
                        "lost": len(load["lost"]), "duplicated": len(load["duplicated"])}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_faults", description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds of mixed load")
    parser.add_argument("--submit-every", type=float, default=20.0, help="seconds between one client's new inputs")
    parser.add_argument("--kill-every", type=float, default=15.0, help="seconds between worker child kills")
    parser.add_argument("--drain", type=float, default=240.0, help="seconds to wait for the jobs to finish")
    parser.add_argument("--json", type=Path, default=Path("results/hardening/faults.json"))
    import sys

    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    report = run(args)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    summary = report["summary"]
    sys.stdout.write(f"{'ok' if report['ok'] else 'FAILED'}: {json.dumps(summary)} -> {args.json}\n")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
