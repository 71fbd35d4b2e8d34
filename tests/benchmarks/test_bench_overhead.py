"""benchmarks.bench_overhead on a toy load (64 x 64, 4 scans -> 3 leads, 2 warm slots, beside HEAD):
its JSON is complete and its numbers add up. Nothing here is a timed assertion."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import bench_overhead

pytestmark = pytest.mark.integration

STAGES = {"select", "bookkeeping_start", "read", "record_updates", "write_forecast_nc", "write_observed_nc",
          "write_pngs", "write_gif", "write_observed", "final_record"}
EPS = 2e-3  # the JSON rounds to 0.1 ms


def test_overhead_report_is_complete_and_consistent(tmp_path: Path) -> None:
    out = tmp_path / "overhead.json"
    bench_overhead.main(["--grid", "64x64", "--scans", "4", "--steps", "3", "--slots", "2", "--threads", "1",
                         "--compare", "HEAD", "--seed", "3", "--json", str(out)])
    report = json.loads(out.read_text())
    assert report["grid"] == [64, 64] and report["scans"] == 4 and report["steps"] == 3 and report["seed"] == 3
    assert report["command"].startswith("python -m benchmarks.bench_overhead ")
    assert "--compare HEAD" in report["command"]
    assert report["machine"]["cpu"] and isinstance(report["machine"]["cpu_flags"], list)
    assert len(report["machine"]["load_average_1_5_15"]) == 3 and len(report["load_average_at_start"]) == 3
    assert report["date"] and report["checkpoint"] == "radar_lagrangian.pt"
    assert set(report["variants"]) == {"current", "baseline"}
    for name, variant in report["variants"].items():
        runs = variant["warm_runs"]
        assert len(runs) == 2 and [r["slot"] for r in runs] == ["2026-03-01T12:24Z", "2026-03-01T12:30Z"]
        for run in runs:
            assert run["source"] == "predrnn"
            assert set(run["compute"]) == set(bench_overhead.COMPUTE_KEYS)
            assert run["compute_s"] == pytest.approx(sum(run["compute"].values()), abs=EPS)
            assert run["overhead_s"] == pytest.approx(run["wall_s"] - run["compute_s"], abs=EPS)
            assert 0 < run["compute_s"] < run["wall_s"] <= run["send_to_result_s"] + EPS
            timings = run["timings"]
            assert timings["read"] + timings["inference"] + timings["write"] <= timings["total"] + EPS
            assert all(value >= 0 for value in run["stages"].values())
            if name == "current":  # the baseline may predate the finer stages
                assert STAGES <= set(run["stages"])
                assert timings["total"] <= timings["job"] <= run["wall_s"] + EPS
                assert run["stages"]["final_record"] == pytest.approx(run["wall_s"] - timings["job"], abs=EPS)
        median = variant["warm_median"]
        for key in ("wall_s", "compute_s", "overhead_s"):
            values = sorted(r[key] for r in runs)
            assert values[0] - EPS <= median[key] <= values[-1] + EPS
    ratio = report["overhead_ratio_baseline_over_current"]
    current, baseline = (report["variants"][v]["warm_median"]["overhead_s"] for v in ("current", "baseline"))
    assert ratio == pytest.approx(baseline / current, rel=1e-2)
