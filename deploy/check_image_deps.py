#!/usr/bin/env python3
"""Prove that the images' dependency set runs what the worker runs, in a fresh virtualenv.

The worker image installs torch and then exactly ``project_requirements.py --exclude torch`` (see
deploy/Dockerfile). This script does the same into a new, empty virtualenv (``python -m venv``,
no system site-packages; pip's own cache and configured wheel locations are used), then, with the
repository on ``PYTHONPATH`` as the image's ``pip install --no-deps .`` would provide it, runs
the worker's forecast entry (``workers.runtime.run_forecast``) with no checkpoint: the
extrapolation fallback, as a worker without a model runs it. It writes a JSON report::

    python deploy/check_image_deps.py --json results/hardening/image_deps.json

Exit status 0 when the fallback forecast came out, 1 otherwise.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Runs inside the fresh virtualenv: the worker's own code path for a job without a checkpoint.
FALLBACK_PROBE = """
import json, sys
import numpy as np
from workers.runtime import run_forecast
from workers.settings import WorkerSettings

yy, xx = np.mgrid[0:32, 0:32]
dbz = np.stack([10 + 35 * np.exp(-((yy - 16) ** 2 + (xx - 6 - 2 * t) ** 2) / 20.0) for t in range(6)])
settings = WorkerSettings(checkpoint=sys.argv[1], device="cpu")
forecast = run_forecast(settings, dbz.astype(np.float32), 3)
print(json.dumps({"source": forecast.source, "model": forecast.model_name, "shape": list(forecast.dbz.shape),
                  "finite": bool(np.isfinite(forecast.dbz).all()), "max_dbz": float(forecast.dbz.max()),
                  "fallback_reason": forecast.fallback_reason}))
"""


def _run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]


def check(venv: Path) -> dict[str, object]:
    report: dict[str, object] = {"venv": str(venv), "ok": False}
    started = time.perf_counter()
    created = _run([sys.executable, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    if created.returncode:
        report["error"] = created.stderr[-2000:]
        return report
    # Empty of everything but pip: what a python:3.11-slim virtualenv holds before the installs.
    report["preinstalled"] = _run([str(python), "-m", "pip", "list", "--format=freeze"]).stdout.split()
    requirements = _run([sys.executable, str(ROOT / "deploy" / "project_requirements.py"), "--exclude", "torch"])
    torch = _run([sys.executable, str(ROOT / "deploy" / "project_requirements.py"), "--only", "torch"]).stdout.strip()
    report["requirements"] = requirements.stdout.split()
    report["torch"] = torch
    for label, args in (("torch", [torch]), ("requirements", report["requirements"])):
        phase = time.perf_counter()
        installed = _run([str(python), "-m", "pip", "install", "-q", *args])  # type: ignore[list-item]
        report[f"install_{label}_s"] = round(time.perf_counter() - phase, 1)
        if installed.returncode:
            report["error"] = f"pip install ({label}) failed:\n{installed.stderr[-3000:]}"
            return report
    probe = _run([str(python), "-c", FALLBACK_PROBE, str(venv / "absent.pt")], cwd=ROOT,
                 env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    if probe.returncode:
        report["error"] = f"the fallback forecast failed:\n{probe.stderr[-3000:]}"
        return report
    result = json.loads(probe.stdout.strip().splitlines()[-1])
    report["fallback"] = result
    report["ok"] = result["source"] == "extrapolation" and result["finite"] and result["shape"] == [3, 32, 32]
    report["total_s"] = round(time.perf_counter() - started, 1)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=ROOT / "results" / "hardening" / "image_deps.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="nowcast-image-deps-") as tmp:
        report = check(Path(tmp) / "venv")
    report["date"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    report["command"] = "python deploy/check_image_deps.py"
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    sys.stdout.write(f"{'ok' if report['ok'] else 'FAILED'}: {args.json}\n")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
