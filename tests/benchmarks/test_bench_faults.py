"""A short run of the fault benchmark: every phase against real processes, its verdict and report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_short_fault_benchmark_finds_no_server_error_and_loses_nothing(tmp_path: Path) -> None:
    out = tmp_path / "faults.json"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_faults", "--clients", "4", "--seconds", "8", "--submit-every", "3",
         "--kill-every", "4", "--drain", "90", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=500,
    )
    report = json.loads(out.read_text())
    assert result.returncode == 0, json.dumps(report, indent=1)[-4000:] + result.stderr[-3000:]
    assert report["ok"] is True
    bad, outage, load = report["bad_inputs"], report["outage"], report["load"]
    assert bad["cases"] >= 30 and bad["server_errors"] == [] and bad["files_left"] == []
    assert set(outage["paused"]["codes"]) == {"503"} and set(outage["killed"]["codes"]) == {"503"}
    assert load["requests"] > 100 and load["server_errors"] == 0 and load["jobs_acknowledged"] >= 4
    assert load["lost"] == [] and load["duplicated"] == [] and load["faults_injected"] >= 1
    assert report["machine"]["logical_cpus"] >= 1
