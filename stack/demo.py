"""``make demo``: the whole stack, one forecast through the API, and the URLs to look at.

    python -m stack.demo [--port 8000] [--data-dir ./var] [--speed 60] [--grid 128x128] [--once]

Starts ``nowcast up`` (redis, worker, beat, synthetic feed, API) as a child, waits until it is
ready, uploads the newest scans of the feed to ``POST /forecast`` as multipart netCDF, follows the
job to its end and prints the URLs of the job, its results and the viewer. Then it keeps the stack
running until Ctrl-C (``--once``: stops it and exits, 0 when the forecast succeeded).

Talks to the stack only over HTTP and the launcher's stdout (``X-API-Key: ...`` and ``Nowcast is
ready: URL`` lines), so, like everything in ``model/``, it imports nothing from ``service/`` or
``workers/``.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from model import InputError

logger = logging.getLogger("nowcast.demo")

READY_PREFIX = "Nowcast is ready: "
KEY_PREFIX = "X-API-Key: "
FINAL_STATES = frozenset({"successful", "failed", "dismissed"})


@dataclass
class StackHandle:
    """What the launcher told us on its stdout."""

    base_url: str | None = None
    api_key: str | None = None


def watch_launcher(stream: Sequence[str] | object, handle: StackHandle, ready: threading.Event) -> None:
    """Copy the launcher's stdout to ours, picking up the generated API key and the ready URL."""
    for line in stream:  # type: ignore[attr-defined]
        sys.stdout.write(line)
        sys.stdout.flush()
        text = line.rstrip("\n")
        if text.startswith(KEY_PREFIX) and handle.api_key is None:
            handle.api_key = text[len(KEY_PREFIX) :].strip()
        elif text.startswith(READY_PREFIX):
            handle.base_url = text[len(READY_PREFIX) :].strip()
            ready.set()
    ready.set()  # the launcher ended: wake the waiter, which sees base_url is None


def newest_scans(feed_dir: Path, count: int, *, timeout: float = 60.0) -> list[Path]:
    """The newest ``count`` scan files of the feed, oldest first; waits for the feed to have them."""
    deadline = time.monotonic() + timeout
    while True:
        scans = sorted(feed_dir.glob("scan_*.nc"))  # scan_YYYYmmddTHHMMZ.nc sorts by time
        if len(scans) >= count:
            return scans[-count:]
        if time.monotonic() > deadline:
            raise InputError(f"{feed_dir}: {len(scans)} scans after {timeout:.0f} s, need {count}")
        time.sleep(0.5)


def multipart_body(files: Sequence[Path], fields: dict[str, str]) -> tuple[bytes, str]:
    """A multipart/form-data body with each file as a ``file`` part; returns (body, content type)."""
    boundary = f"nowcast-{secrets.token_hex(12)}"
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for path in files:
        header = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
            "Content-Type: application/x-netcdf\r\n\r\n"
        )
        parts.append(header.encode() + path.read_bytes() + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def submit_forecast(base_url: str, api_key: str | None, scans: Sequence[Path], steps: int | None) -> str:
    """POST the scans to /forecast; returns the job URL from ``Location``."""
    body, content_type = multipart_body(scans, {"steps": str(steps)} if steps else {})
    headers = {"Content-Type": content_type, "Accept": "application/json"}
    if api_key:
        headers["X-API-Key"] = api_key
    request = urllib.request.Request(f"{base_url}/forecast", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 (our own stack)
            location = response.headers["Location"]
    except urllib.error.HTTPError as exc:
        detail = exc.read(500).decode(errors="replace")
        raise InputError(f"POST {base_url}/forecast: HTTP {exc.code}: {detail}") from None
    if not location:
        raise InputError(f"POST {base_url}/forecast answered without a Location header")
    return location if location.startswith("http") else f"{base_url}{location}"


def wait_for_job(job_url: str, *, timeout: float) -> dict[str, object]:
    """Poll the job's status until it is final; returns the last statusInfo document."""
    deadline = time.monotonic() + timeout
    last_status = None
    while True:
        with urllib.request.urlopen(job_url, timeout=10) as response:  # noqa: S310
            status = json.load(response)
        if status.get("status") != last_status:
            last_status = status.get("status")
            logger.info("job %s: %s %s", status.get("jobID"), last_status, status.get("message") or "")
        if last_status in FINAL_STATES:
            return status
        if time.monotonic() > deadline:
            raise InputError(f"{job_url}: still {last_status} after {timeout:.0f} s")
        time.sleep(0.5)


def run_demo(
    data_dir: Path,
    *,
    port: int = 8000,
    speed: float = 60.0,
    grid: str = "128x128",
    steps: int | None = None,
    input_scans: int = 10,
    timeout: float = 600.0,
    once: bool = False,
) -> int:
    """Start the stack, forecast its newest ``input_scans`` scans and print the URLs; the exit status.

    ``speed``: the feed's clock speed-up; ``grid``: its ``HxW``; ``steps``: lead times (None: the
    service's); ``timeout``: seconds for start-up and again for the job. With ``once`` the stack is
    stopped when the forecast has finished (0 when it succeeded, else 1); otherwise it runs until
    Ctrl-C (130).
    """
    data_dir = data_dir.resolve()
    feed_dir = Path(os.environ.get("NOWCAST_FEED_DIR", data_dir / "feed"))
    command = [
        sys.executable,
        "-m",
        "cli",
        "up",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--speed",
        str(speed),
        "--grid",
        grid,
        "--ready-timeout",
        str(timeout),
        "--quiet",
    ]
    logger.info("starting the stack: %s", " ".join(command[1:]))
    launcher = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    handle, ready = StackHandle(api_key=os.environ.get("NOWCAST_API_KEYS", "").split(",")[0] or None), threading.Event()
    watcher = threading.Thread(target=watch_launcher, args=(launcher.stdout, handle, ready), daemon=True)
    watcher.start()
    try:
        ready.wait(timeout)
        if handle.base_url is None:
            raise InputError(
                f"the stack did not become ready (launcher exit status {launcher.poll()}); see {data_dir / 'logs'}"
            )
        scans = newest_scans(feed_dir, input_scans)
        logger.info("submitting %d scans %s .. %s", len(scans), scans[0].name, scans[-1].name)
        job_url = submit_forecast(handle.base_url, handle.api_key, scans, steps)
        status = wait_for_job(job_url, timeout=timeout)
        succeeded = status.get("status") == "successful"
        sys.stdout.write(
            f"\nForecast {status.get('jobID')}: {status.get('status')}\n"
            f"  job      {job_url}\n"
            f"  results  {job_url}/results   (netCDF; Accept: application/json or image/png)\n"
            f"  viewer   {handle.base_url}/viewer\n"
            f"  this job {handle.base_url}/viewer?job={status.get('jobID')}\n"
        )
        sys.stdout.flush()
        if once:
            return 0 if succeeded else 1
        sys.stdout.write("The stack keeps running; Ctrl-C stops it.\n")
        sys.stdout.flush()
        return launcher.wait()
    except KeyboardInterrupt:
        return 130
    finally:
        stop_launcher(launcher)
        watcher.join(timeout=5)


def stop_launcher(launcher: subprocess.Popen[str], timeout: float = 120.0) -> None:
    """SIGTERM the launcher (it stops its children in order) and wait for it."""
    if launcher.poll() is None:
        launcher.send_signal(signal.SIGTERM)
        try:
            launcher.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.error("the launcher did not stop in %.0f s; killing it", timeout)
            launcher.kill()
            launcher.wait()


if __name__ == "__main__":  # `python -m stack.demo`: the command line is cli/demo.py
    from cli import run_script

    raise SystemExit(run_script("cli.demo:script"))
