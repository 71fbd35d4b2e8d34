"""A real uvicorn process serving ``service.main:create_app``, for tests that need the API over HTTP.

    api = start_api(env, port, log_path)   # returns once GET /healthz answers 200
    ...
    stop_api(api)                          # SIGTERM, then wait (SIGKILL after the timeout)

``env`` is the whole environment of the process (settings as ``NOWCAST_*`` variables); its output
goes to ``log_path``, whose tail is in the error when the process exits or never answers.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from tests.utils.worker_process import REPO_ROOT


def start_api(env: Mapping[str, str], port: int, log_path: Path, *, timeout_s: float = 60.0) -> subprocess.Popen:
    """uvicorn on 127.0.0.1:``port``, ready (``/healthz`` 200) when this returns."""
    command = [sys.executable, "-m", "uvicorn", "service.main:create_app", "--factory",
               "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=dict(env), stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"uvicorn exited early:\n{log_path.read_text(errors='replace')[-4000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop_api(process)
    raise RuntimeError(f"uvicorn did not answer /healthz in {timeout_s:.0f} s:\n"
                       f"{log_path.read_text(errors='replace')[-4000:]}")


def stop_api(process: subprocess.Popen, *, timeout_s: float = 30.0) -> None:
    """Stop it as a supervisor would (SIGTERM); SIGKILL if it has not exited after ``timeout_s``."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
