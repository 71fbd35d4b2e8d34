"""The whole stack exactly as README starts it: ``nowcast up`` and ``python -m stack.demo``.

Real processes throughout: the launcher starts a private redis-server, a prefork Celery worker,
beat, the synthetic feed and uvicorn; the test talks HTTP to it, then signals the launcher and
checks through /proc that no process it started is left. A tiny untrained checkpoint and a
32 x 32 grid keep it to seconds of CPU.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import xarray as xr

from tests.utils.redis_server import free_port

pytestmark = pytest.mark.integration

INPUT_SCANS = 4
LEAD_STEPS = 3
GRID = "32x32"


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from model.checkpoint import save_checkpoint
    from model.network.predrnn import PredRNN, PredRNNConfig

    torch.manual_seed(0)
    config = PredRNNConfig(
        num_hidden=[8, 8], filter_size=3, patch_size=4, input_length=INPUT_SCANS, output_length=LEAD_STEPS
    )
    path = tmp_path_factory.mktemp("checkpoint") / "tiny.pt"
    save_checkpoint(path, PredRNN(config))
    return path


@pytest.fixture
def stack_env(tiny_checkpoint: Path) -> Iterator[tuple[dict[str, str], str]]:
    """The environment for a launcher, tagged with a marker every descendant inherits."""
    marker = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOWCAST_")}
    env.update(
        {
            "NOWCAST_CHECKPOINT": str(tiny_checkpoint),
            "NOWCAST_INPUT_SCANS": str(INPUT_SCANS),
            "NOWCAST_LEAD_STEPS": str(LEAD_STEPS),
            "NOWCAST_WARMUP": "false",
            "NOWCAST_TEST_STACK_MARKER": marker,
            "OMP_NUM_THREADS": "1",  # two cores shared by the whole suite
        }
    )
    yield env, marker
    leftovers = processes_with_marker(marker)
    for pid in leftovers:  # never leave a stray stack behind a failed test
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not leftovers, f"processes outlived the test: {leftovers}"


def processes_with_marker(
    marker: str, sessions: frozenset[int] = frozenset(), data_dir: Path | None = None
) -> list[int]:
    """Live processes whose environment carries ``marker``, that run in one of ``sessions``, or
    whose working directory lies in ``data_dir``.

    The launcher and its Python children inherit the marker. redis-server rewrites its environment
    block (to show its title in ps), so it is found by its session (the launcher starts each child
    in a new session whose id is the child's pid; grandchildren inherit it) or by its working
    directory (every child of the launcher runs inside the data directory).
    """
    needle = f"NOWCAST_TEST_STACK_MARKER={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            state, session = fields[0], int(fields[3])
            if state == "Z":
                continue
            in_data_dir = data_dir is not None and os.readlink(entry / "cwd").startswith(str(data_dir))
            if session in sessions or in_data_dir or needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


class Launcher:
    """``nowcast up`` as a subprocess, its stdout read line by line on a thread."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.stdout: list[str] = []
        self.log = log.open("a")
        self.process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=self.log, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for_line(self, prefix: str, timeout: float = 180) -> str:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.process.poll() is not None and self.lines.empty():
                raise AssertionError(f"no {prefix!r} line; stdout so far: {self.stdout}")
            try:
                line = self.lines.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                continue
            self.stdout.append(line)
            if line.startswith(prefix):
                return line

    def stop(self, signum: int, timeout: float = 120) -> int:
        self.process.send_signal(signum)
        code = self.process.wait(timeout)
        self.log.close()
        while not self.lines.empty():
            self.stdout.append(self.lines.get())
        return code


def up(data_dir: Path, port: int, env: dict[str, str]) -> Launcher:
    argv = [sys.executable, "-m", "cli", "up", "--port", str(port), "--data-dir", str(data_dir)]
    argv += ["--speed", "600", "--grid", GRID, "--ready-timeout", "170"]
    return Launcher(argv, env, data_dir.parent / f"launcher-{port}.log")


def submit(base: str, key: str, scans: list[Path]) -> httpx.Response:
    files = [("file", (path.name, path.read_bytes(), "application/x-netcdf")) for path in scans]
    return httpx.post(f"{base}/forecast", files=files, headers={"X-API-Key": key}, timeout=60)


def wait_for_job(base: str, job_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = httpx.get(f"{base}/jobs/{job_id}", timeout=10).json()
        if status["status"] in ("successful", "failed", "dismissed") or time.monotonic() > deadline:
            return status
        time.sleep(0.3)


def test_up_serves_a_forecast_stops_cleanly_and_restarts_on_its_data(
    tmp_path: Path, stack_env: tuple[dict[str, str], str]
) -> None:
    env, marker = stack_env
    data_dir, port = tmp_path / "var", free_port()
    base = f"http://127.0.0.1:{port}"

    launcher = up(data_dir, port, env)
    key_line = launcher.wait_for_line("X-API-Key: ")
    key = key_line.removeprefix("X-API-Key: ")
    assert len(key) == 32  # secrets.token_urlsafe(24)
    assert launcher.wait_for_line("Nowcast is ready: ") == f"Nowcast is ready: {base}"
    ready = httpx.get(f"{base}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text

    # Every process of the stack is known, and they are all descendants carrying our marker.
    run_info = json.loads((data_dir / "run" / "launcher.json").read_text())
    assert run_info["pid"] == launcher.process.pid and run_info["api"] == base
    assert set(run_info["children"]) == {"redis", "worker", "beat", "feed", "api"}
    sessions = frozenset(run_info["children"].values())
    stack = set(processes_with_marker(marker, sessions))
    assert sessions | {launcher.process.pid} <= stack
    assert len(stack) >= 7  # the five children, the launcher and the worker's pool child

    scans = sorted((data_dir / "feed").glob("scan_*.nc"))[-INPUT_SCANS:]
    assert len(scans) == INPUT_SCANS
    assert submit(base, "wrong-key-of-enough-length", scans).status_code == 401
    created = submit(base, key, scans)
    assert created.status_code == 201, created.text
    job_id = created.json()["jobID"]
    assert created.headers["Location"] == f"/jobs/{job_id}"
    status = wait_for_job(base, job_id)
    assert status["status"] == "successful", status

    result = httpx.get(f"{base}/jobs/{job_id}/results", timeout=30)
    assert result.status_code == 200
    assert result.headers["content-type"].startswith("application/x-netcdf")
    product = tmp_path / "forecast.nc"
    product.write_bytes(result.content)
    with xr.open_dataset(product, engine="netcdf4") as ds:
        assert ds["reflectivity"].shape == (LEAD_STEPS, 32, 32)
        assert ds["reflectivity"].attrs["units"] == "dBZ"
        np.testing.assert_array_equal(ds["lead_time"].values, [6, 12, 18])

    assert launcher.stop(signal.SIGTERM) == 0
    assert launcher.stdout.count(key_line) == 1  # the key is printed once, and only on stdout
    assert key not in (data_dir.parent / f"launcher-{port}.log").read_text()
    # redis, the worker and its pool child, beat, feed, api: all gone.
    assert processes_with_marker(marker, sessions, data_dir) == []
    assert not (data_dir / "run" / "launcher.json").exists()

    # A second run on the same directory: the job store (Redis AOF) and the products are back.
    # Ctrl-C this time: SIGINT takes the same orderly path.
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    launcher = up(data_dir, port, env)
    launcher.wait_for_line("Nowcast is ready: ")
    sessions = frozenset(json.loads((data_dir / "run" / "launcher.json").read_text())["children"].values())
    again = httpx.get(f"{base}/jobs/{job_id}", timeout=10).json()
    assert again["status"] == "successful"
    assert httpx.get(f"{base}/jobs/{job_id}/results", timeout=30).content == result.content
    assert launcher.stop(signal.SIGINT) == 0
    assert processes_with_marker(marker, sessions) == []


def test_demo_once_submits_and_reports(tmp_path: Path, stack_env: tuple[dict[str, str], str]) -> None:
    env, marker = stack_env
    port = free_port()
    data_dir = tmp_path / "var"
    argv = [sys.executable, "-m", "stack.demo", "--once", "--port", str(port), "--data-dir", str(data_dir)]
    argv += ["--speed", "600", "--grid", GRID, "--input-scans", str(INPUT_SCANS), "--timeout", "170"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=400, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    base = f"http://127.0.0.1:{port}"
    assert f"Nowcast is ready: {base}" in lines
    (summary,) = [line for line in lines if line.startswith("Forecast ")]
    job_id = summary.split()[1].rstrip(":")
    assert summary == f"Forecast {job_id}: successful"
    assert f"  job      {base}/jobs/{job_id}" in lines
    assert f"  results  {base}/jobs/{job_id}/results   (netCDF; Accept: application/json or image/png)" in lines
    assert f"  viewer   {base}/viewer" in lines
    assert f"  this job {base}/viewer?job={job_id}" in lines
    assert processes_with_marker(marker, data_dir=data_dir) == []
