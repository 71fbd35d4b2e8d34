"""benchmarks.intense_cores: the 40 dBZ area per lead of a checkpoint, extrapolation and the truth."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TREND_MODEL = REPO / "model" / "checkpoints" / "radar_lagrangian_trend.pt"


def test_it_reports_the_40_dbz_area_per_lead_and_the_trend_at_the_cores(tmp_path: Path) -> None:
    out = tmp_path / "cores.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.intense_cores", "--checkpoint", str(TREND_MODEL),
                           "--storms", "5", "--json", str(out)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert json.loads(done.stdout) == report
    assert report["split"] == "valid" and report["storms"] == 5 and "cpu" in report["machine"]
    areas = report["area_40dBZ"]
    assert set(areas) == {"truth", "extrapolation", "radar_lagrangian_trend"}
    assert all(len(a) == 20 and min(a) >= 0 for a in areas.values())
    assert sum(areas["truth"]) > 0, "the storms must hold 40 dBZ cores"
    for name, bias in report["bias_40dBZ"].items():
        assert [round(a / max(t, 1), 3) for a, t in zip(areas[name], areas["truth"], strict=True)] == bias
    trend = report["trend_at_cores_db_per_scan"]["radar_lagrangian_trend"]
    assert trend["cores_40dBZ"] > trend["echo_20dBZ"], "cells grow faster than the rain around them"


def test_a_missing_checkpoint_is_a_one_line_error(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "benchmarks.intense_cores", "--checkpoint", str(tmp_path / "no.pt")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "no such checkpoint" in done.stderr and str(tmp_path / "no.pt") in done.stderr
