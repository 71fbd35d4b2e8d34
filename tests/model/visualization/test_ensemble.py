"""plot_probabilistic and plot_probability_strip: real scores drawn into valid PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.verification.metrics import json_safe
from model.verification.probabilistic import EnsembleScores
from model.visualization.ensemble import detail_leads, plot_probabilistic, plot_probability_strip


def _result(truth: np.ndarray, members: np.ndarray) -> dict:
    scores = EnsembleScores.init(truth.shape[1], members.shape[1])
    scores.accum(truth, members)
    return {"timestep_minutes": 6, "probabilistic": json_safe(scores.compute())}


def test_the_probabilistic_plot_is_a_valid_png_with_every_row(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    truth = rng.uniform(-10, 55, (2, 10, 24, 24))
    results = {
        "steps": _result(truth, truth[:, None] + rng.normal(0, 6, (2, 5, 10, 24, 24))),
        "model_ensemble": _result(truth, truth[:, None] + rng.normal(0, 3, (2, 5, 10, 24, 24))),
        "extrapolation": _result(truth, truth[:, None] + rng.normal(0, 3, (2, 1, 10, 24, 24))),
        "paper_only": {"timestep_minutes": 6, "paper": {}},  # no probabilistic section: skipped
    }
    path = plot_probabilistic(results, tmp_path / "sub" / "p.png")
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        width, height = image.size
        pixels = np.asarray(image.convert("RGB"))
    # 6 columns (2 lead times x 3 thresholds) of 3.6 in and 3 rows in 10.5 in at 80 dpi.
    assert (width, height) == (1728, 840)
    # The rank-histogram row holds bars: not a blank strip.
    lower = pixels[600:, :600]
    assert len(np.unique(lower.reshape(-1, 3), axis=0)) > 20
    with pytest.raises(ValueError, match="no method has a probabilistic section"):
        plot_probabilistic({"paper_only": results["paper_only"]}, tmp_path / "none.png")


def test_detail_leads_fall_back_to_the_middle_and_last_lead() -> None:
    assert detail_leads(20, 6) == [(4, "30 min"), (9, "60 min")]
    assert detail_leads(4, 6) == [(1, "12 min"), (3, "24 min")]


def test_the_probability_strip_is_written(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    path = plot_probability_strip({"a": rng.random((4, 16, 16)), "b": rng.random((4, 16, 16))}, tmp_path / "s.png")
    with Image.open(path) as image:
        image.verify()
    assert path.stat().st_size > 2000
