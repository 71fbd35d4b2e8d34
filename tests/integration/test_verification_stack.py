"""Live verification on the real stack: ``nowcast up --speed 60``, then ``/verification`` checked
against SkillScores computed here from the same product and scan files.

One clock: the feed writes a scan every 6 wall seconds and beat fires each slot on the same
simulated clock, so slots are verified within a minute of wall time.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from model.io import netcdf as radar_io
from model.verification.metrics import SkillScores
from tests.integration.test_stack import GRID, LEAD_STEPS, Launcher, stack_env, tiny_checkpoint  # noqa: F401
from tests.utils.redis_server import free_port
from workers.verification import SCALES, THRESHOLDS

pytestmark = pytest.mark.integration

SPEED = 60
LEADS = [6 * (k + 1) for k in range(LEAD_STEPS)]


def complete_window(base: str, since: str, until: str) -> dict | None:
    """The report for the window once each stream has >= 2 products, every lead of each settled."""
    body = httpx.get(f"{base}/verification", params={"since": since, "until": until}, timeout=10).json()
    for report in body["sources"].values():
        if report["products"] < 2 or len(report["leads"]) < LEAD_STEPS:
            return None
        if any(item["slots"] + item["missing"] + item["fallback"] != report["products"] for item in report["leads"]):
            return None
    return body


def direct(data_dir: Path, job_ids: list[str], lead: int) -> SkillScores:
    """SkillScores of one lead over the given products, read from their files and the feed's scans."""
    skill = None
    for job_id in job_ids:
        product = radar_io.read_scans(data_dir / "products" / job_id / "forecast.nc")
        valid = product.times[lead // 6 - 1].astype("datetime64[s]").astype(dt.datetime)
        scan = radar_io.read_scans(data_dir / "feed" / f"scan_{valid:%Y%m%dT%H%M}Z.nc")
        one = SkillScores.init(1, THRESHOLDS, SCALES)
        one.accum(scan.dbz[None], product.dbz[None, lead // 6 - 1: lead // 6])
        skill = one if skill is None else skill.merge(one)
    assert skill is not None
    return skill


def test_live_verification_on_the_stack_equals_a_direct_computation(
        tmp_path: Path, stack_env: tuple[dict[str, str], str]) -> None:  # noqa: F811
    env, _marker = stack_env
    data_dir, port = tmp_path / "var", free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "cli", "up", "--port", str(port), "--data-dir", str(data_dir), "--speed",
            str(SPEED), "--grid", GRID, "--ready-timeout", "170", "--quiet"]
    launcher = Launcher(argv, {**env, "NOWCAST_QUICKLOOKS": "false"}, tmp_path / "launcher.log")
    try:
        launcher.wait_for_line("Nowcast is ready: ")
        ready = time.monotonic()
        # The stack's clock: the newest scan is the current simulated slot.
        start = max(radar_io.scan_time_from_name(p) for p in (data_dir / "feed").glob("scan_*.nc"))
        since = f"{start:%Y-%m-%dT%H:%M:%SZ}"
        until = f"{start + dt.timedelta(minutes=18):%Y-%m-%dT%H:%M:%SZ}"  # the first three slots after it
        body = None
        while body is None:
            assert time.monotonic() - ready < 150, httpx.get(f"{base}/verification", timeout=10).text
            time.sleep(1.0)
            body = complete_window(base, since, until)
        settled_after = time.monotonic() - ready
        slots = httpx.get(f"{base}/nowcasts", params={"limit": 100}, timeout=10).json()["jobs"]
        # The latest nowcast is not older than the feed's newest scan by more than a slot or two.
        newest_scan = max(radar_io.scan_time_from_name(p) for p in (data_dir / "feed").glob("scan_*.nc"))
        latest = httpx.get(f"{base}/nowcasts/latest", params={"f": "json"}, timeout=30)
        assert latest.status_code == 200 and latest.headers["nowcast-source"] == "model"
        reference = dt.datetime.fromisoformat(latest.json()["reference_time"].replace("Z", "+00:00"))
        assert newest_scan - reference <= dt.timedelta(minutes=18)
    finally:
        assert launcher.stop(signal.SIGTERM) == 0
    in_window = [s for s in slots if s["status"] == "successful" and since <= s["slot"] < until]
    for stream, report in body["sources"].items():
        ids = [s["jobID"] for s in in_window if s["jobID"].endswith("-extrapolation") == (stream == "extrapolation")]
        assert len(ids) == report["products"] >= 2 and report["missing_scans"] == 0
        for item in report["leads"]:
            computed = direct(data_dir, ids, item["lead_minutes"]).compute()
            assert item["slots"] == len(ids)
            for name, scores in item["scores"].items():
                for kind in ("hits", "misses", "false_alarms", "correct_negatives"):
                    assert scores[kind] == computed["contingency"][kind][name][0], (stream, item, name)
                for scale, value in scores["fss"].items():
                    expected = computed["fss"][name][scale][0]
                    assert (value is None and np.isnan(expected)) or value == pytest.approx(expected)
    logging.getLogger(__name__).warning("first three slots verified %.1f s (wall) after the stack was ready",
                                        settled_after)
    assert settled_after < 120  # within two minutes of wall time at --speed 60
