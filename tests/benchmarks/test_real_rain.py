"""benchmarks.real_rain: the real-rain table of a checkpoint, as the model card quotes it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from model.data.evolving import REAL_RAIN_FLOWS

REPO = Path(__file__).resolve().parents[2]


def test_it_writes_csi_for_the_model_and_extrapolation_per_flow(tmp_path: Path) -> None:
    out = tmp_path / "real_rain.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.real_rain", "--json", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert json.loads(done.stdout) == report
    assert list(report["flows"]) == list(REAL_RAIN_FLOWS)
    # The committed table is what the shipped checkpoint gives today.
    committed = json.loads((REPO / "results" / "radar_lagrangian_cpu_trend_wide10" / "real_rain.json").read_text())
    assert report["flows"] == committed["flows"]
