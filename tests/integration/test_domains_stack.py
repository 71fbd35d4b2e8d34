"""``nowcast up --domains FILE`` through the real stack: two synthetic domains on different non-square
grids each get their nowcasts on their own grid and their own verification, listed by ``GET /domains``;
a third domain whose feed directory is missing is unhealthy in ``/domains`` and ``/readyz`` while the
other two go on."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import httpx
import pytest
import xarray as xr

from tests.integration.test_stack import (  # noqa: F401 (the fixtures are used by name)
    LEAD_STEPS,
    Launcher,
    processes_with_marker,
    stack_env,
    tiny_checkpoint,
)
from tests.utils.redis_server import free_port

pytestmark = pytest.mark.integration

DOMAINS = """\
default = "north"

[[domain]]
id = "north"
grid = "24x40"

[[domain]]
id = "coast"
grid = "40x24"
seed = 3

[[domain]]
id = "lost"
feed_dir = "feeds/lost-radar"
"""


def _poll(what: str, check, timeout: float = 150.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"{what} not reached in {timeout} s; last {last!r}")


def test_up_with_three_domains(tmp_path: Path, stack_env: tuple[dict[str, str], str]) -> None:  # noqa: F811
    env, marker = stack_env
    domains = tmp_path / "domains.toml"
    domains.write_text(DOMAINS)
    data_dir, port = tmp_path / "var", free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "cli", "up", "--port", str(port),
            "--data-dir", str(data_dir), "--speed", "600", "--domains", str(domains), "--ready-timeout", "170"]
    launcher = Launcher(argv, env, tmp_path / "launcher.log")
    try:
        key = launcher.wait_for_line("X-API-Key: ").removeprefix("X-API-Key: ")
        launcher.wait_for_line("Nowcast is ready: ")
        headers = {"X-API-Key": key}

        def latest(domain: str) -> httpx.Response | None:
            response = httpx.get(f"{base}/domains/{domain}/nowcasts/latest", headers=headers, timeout=30)
            return response if response.status_code == 200 else None

        for domain, shape in (("north", (24, 40)), ("coast", (40, 24))):
            product = _poll(f"a nowcast of {domain}", lambda domain=domain: latest(domain))
            path = tmp_path / f"{domain}.nc"
            path.write_bytes(product.content)
            with xr.open_dataset(path, engine="netcdf4") as ds:
                assert ds["reflectivity"].shape == (LEAD_STEPS, *shape)
                assert ds.attrs["domain"] == domain
            assert product.headers["Nowcast-Domain"] == domain
        # The default domain is today's /nowcasts, with today's ids.
        plain = httpx.get(f"{base}/nowcasts", headers=headers, timeout=10).json()["jobs"]
        assert plain and all(job["jobID"].startswith("nowcast-2") for job in plain)
        coast = httpx.get(f"{base}/domains/coast/nowcasts", headers=headers, timeout=10).json()["jobs"]
        assert coast and all(job["jobID"].startswith("nowcast-coast-2") for job in coast)

        def verified(domain: str) -> bool:
            report = httpx.get(f"{base}/domains/{domain}/verification", headers=headers, timeout=30).json()
            leads = report["sources"]["model"]["leads"]
            return bool(leads) and leads[0]["slots"] >= 1

        for domain in ("north", "coast"):
            _poll(f"verification of {domain}", lambda domain=domain: verified(domain))

        listing = httpx.get(f"{base}/domains", headers=headers, timeout=30).json()
        by_id = {d["id"]: d for d in listing["domains"]}
        assert by_id["north"]["grid"] == [24, 40] and by_id["coast"]["grid"] == [40, 24]
        assert by_id["north"]["health"]["ok"] and by_id["coast"]["health"]["ok"]
        assert by_id["north"]["projection"]["proj4"] and by_id["coast"]["newest_scan"]
        assert by_id["lost"]["health"] == {"ok": False, "detail": "feed directory lost-radar does not exist"}
        ready = httpx.get(f"{base}/readyz", timeout=10)
        assert ready.status_code == 200  # the API serves the healthy domains
        assert ready.json()["checks"]["domains"]["detail"] == (
            "unhealthy domains: lost: feed directory lost-radar does not exist")
        lost = httpx.get(f"{base}/domains/lost/nowcasts", headers=headers, timeout=10).json()["jobs"]
        assert lost and all(job["status"] == "skipped" for job in lost)
    finally:
        assert launcher.stop(signal.SIGTERM) == 0
    assert processes_with_marker(marker, data_dir=data_dir) == []
