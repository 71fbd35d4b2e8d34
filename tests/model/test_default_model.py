"""The shipped default model on real rain it never saw: at least extrapolation's skill.

The MeteoSwiss composite in tests/data/ is set in motion by a flow that rotates, translates and
shears it, with one region growing and one decaying (model/data/evolving.py). The model trained
on synthetic fields only: its fine-tuning saw the same kind of flow and trend applied to synthetic
rain, never this composite, so these cases test the step from synthetic to real rain texture.
Optical-flow extrapolation is the operational standard it must match.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model.baselines import extrapolation
from model.checkpoint import load_checkpoint
from model.data.evolving import REAL_RAIN_FLOWS, real_rain_case
from model.forecast import forecast_dbz
from model.io.odim import read_odim
from model.verification.metrics import SkillScores
from workers.settings import SHIPPED_CHECKPOINT

ODIM = Path(__file__).resolve().parents[1] / "data" / "RFO_example_h5_grid.h5"
CONTEXT, STEPS = 6, 20
LEADS = {"30 min": 5, "60 min": 10}

FLOWS = REAL_RAIN_FLOWS


def skill(truth: np.ndarray, forecast: np.ndarray) -> dict:
    scores = SkillScores.init(truth.shape[0])
    scores.accum(truth[None], forecast[None])
    return scores.compute()


@pytest.fixture(scope="module")
def default_model():
    model, meta = load_checkpoint(SHIPPED_CHECKPOINT)
    return model, meta


def test_the_default_model_is_lagrangian(default_model) -> None:
    model, meta = default_model
    assert model.config.frame == "lagrangian" and meta["frame"] == "lagrangian"


def scores(flow: str, default_model) -> tuple[dict, dict]:
    context, truth = real_rain_case(read_odim(ODIM).dbz[0], flow, CONTEXT, STEPS)
    assert (truth[-1] >= 30).mean() > 0.005, "the case must keep intense rain to the end"
    model, meta = default_model
    return (skill(truth, forecast_dbz(model, context, STEPS, scaling=meta["scaling"])),
            skill(truth, extrapolation(context, STEPS)))


def gaps(ours: dict, theirs: dict, threshold: str) -> dict[str, float]:
    return {label: ours["csi"][threshold][lead - 1] - theirs["csi"][threshold][lead - 1]
            for label, lead in LEADS.items()}


@pytest.mark.parametrize("threshold", ["20dBZ", "30dBZ"])
@pytest.mark.parametrize("flow", list(FLOWS))
def test_on_real_rain_it_scores_at_least_extrapolations_csi(default_model, flow: str, threshold: str) -> None:
    # Measured at 30 / 60 minutes: +0.021 / +0.027 (20 dBZ) and +0.182 / +0.243 (30 dBZ) in the first
    # flow, +0.067 / +0.135 and +0.345 / +0.425 in the second (results/radar_lagrangian_cpu_trend/).
    for label, gap in gaps(*scores(flow, default_model), threshold).items():
        assert gap >= 0.0, f"{flow}: CSI {threshold} at {label} is {gap:+.3f} below extrapolation"


def test_on_real_rain_it_forecasts_the_growth_and_the_decay_that_extrapolation_cannot(default_model) -> None:
    # The flow grows the north-west quarter and decays the south-east one. Measured at 60 minutes,
    # the mean change from extrapolation over echo: +2.7 dB where the truth gains 2.7 dB, -3.1 dB
    # where it loses 3.7 dB. The model before the trend input added +0.2 to +0.6 dB everywhere.
    context, truth = real_rain_case(read_odim(ODIM).dbz[0], "faster, turning the other way", CONTEXT, STEPS)
    model, meta = default_model
    forecast = forecast_dbz(model, context, STEPS, scaling=meta["scaling"])[LEADS["60 min"] - 1]
    baseline = extrapolation(context, STEPS)[LEADS["60 min"] - 1]
    half = baseline.shape[0] // 2
    echo = baseline > 15.0
    for name, rows, cols in (("north-west", slice(0, half), slice(0, half)),
                             ("south-east", slice(half, None), slice(half, None))):
        inside = echo[rows, cols]
        ours = float((forecast - baseline)[rows, cols][inside].mean())
        truths = float((truth[LEADS["60 min"] - 1] - baseline)[rows, cols][inside].mean())
        assert np.sign(ours) == np.sign(truths) and abs(ours) > 0.5 * abs(truths), (
            f"{name}: the model changes extrapolation by {ours:+.2f} dB where the truth does by {truths:+.2f} dB")
