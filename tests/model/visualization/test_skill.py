"""plot_skill: CSI by lead, and the row of differences to extrapolation that decides "beats it"."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from model.visualization.skill import plot_skill


def nowcast_result(csi_20: list[float]) -> dict:
    return {"timestep_minutes": 6, "nowcast": {"thresholds": {"20dBZ": 20.0}, "lead_steps": [1, 2, 3],
                                               "csi": {"20dBZ": csi_20}}}


def test_a_second_row_shows_each_methods_csi_minus_extrapolations(tmp_path: Path) -> None:
    results = {"extrapolation": nowcast_result([0.8, 0.5, 0.3]), "model": nowcast_result([0.81, 0.52, 0.29])}
    with_gaps = np.asarray(Image.open(plot_skill(results, tmp_path / "both.png")))
    alone = np.asarray(Image.open(plot_skill({"model": results["model"]}, tmp_path / "alone.png")))
    assert with_gaps.shape[0] == 750 and alone.shape[0] == 400  # two rows of panels against one
    # The lower half holds the shaded "within 0.01" band and the model's line: not a blank panel.
    lower = with_gaps[400:]
    assert len(np.unique(lower.reshape(-1, lower.shape[-1]), axis=0)) > 20
