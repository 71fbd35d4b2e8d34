"""``benchmarks/bench_verification.py`` runs the sweep's code on one slot and writes its JSON report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_bench_verification_writes_its_report(tmp_path: Path) -> None:
    out = tmp_path / "verification.json"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_verification", "--grid", "32x48", "--leads", "3", "--repeats", "2",
         "--json", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["config"] == {"grid": [32, 48], "leads": 3, "sources": 2, "thresholds_dbz": [20.0, 30.0, 40.0],
                                "fss_scales": [1, 5, 15], "repeats": 2, "paths": ["shared", "baseline"]}
    assert len(report["result"]["seconds"]) == 2 and report["result"]["median_s"] > 0
    assert report["result"]["limit_s"] == 0.5 and isinstance(report["result"]["within_limit"], bool)
    assert report["machine"]["cpu"] and isinstance(report["machine"]["flags"], list)
    # The code before the shared truth is timed in the same run, for the ratio on a loaded machine.
    assert report["path"] == "shared" and len(report["baseline"]["seconds"]) == 2
    assert report["speedup"] == round(report["baseline"]["median_s"] / report["result"]["median_s"], 2)
    # The read path alone, read_scans against the lean reader, is a ratio from the same run too.
    assert report["reads_speedup"] == round(report["baseline"]["reads_only_median_s"]
                                            / report["result"]["reads_only_median_s"], 2)
    assert report["one_lead_reads_speedup"] == round(report["baseline"]["one_lead_reads_median_s"]
                                                     / report["result"]["one_lead_reads_median_s"], 2)
    assert "through read_scans" in result.stderr
    for timing in (report["result"], report["baseline"]):
        assert len(timing["cpu_seconds"]) == 2 and timing["cpu_median_s"] > 0
        assert timing["min_s"] == min(timing["seconds"])
        assert timing["reads_only_median_s"] > 0 and timing["accum_only_median_s"] > 0
        assert timing["one_lead_reads_median_s"] > 0
    assert len(report["load_average"]["before"]) == 3 and len(report["load_average"]["after"]) == 3
    assert report["command"].startswith("python -m benchmarks.bench_verification --grid 32x48")
    assert "verified one slot in" in result.stderr
