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


@pytest.mark.parametrize("flow", list(FLOWS))
def test_on_real_rain_it_keeps_extrapolations_csi_at_20_dbz(default_model, flow: str) -> None:
    # Measured: +0.003 / +0.005 at 30 / 60 minutes in the first flow, -0.001 / +0.005 in the
    # second: at 20 dBZ the network adds next to nothing on real rain, and never takes away.
    for label, gap in gaps(*scores(flow, default_model), "20dBZ").items():
        assert gap >= -0.01, f"{flow}: CSI 20 dBZ at {label} is {gap:+.3f} below extrapolation"


def test_on_real_rain_it_gains_at_30_dbz_where_its_training_storms_look_alike(default_model) -> None:
    flow = "rotating, growing in the north-west"
    for label, gap in gaps(*scores(flow, default_model), "30dBZ").items():
        assert gap > 0.03, f"{flow}: CSI 30 dBZ at {label} is only {gap:+.3f} above extrapolation"


def test_on_real_rain_with_fast_growth_it_gains_at_30_dbz_after_an_hour(default_model) -> None:
    # Measured +0.027 at 60 minutes (the model fine-tuned on evolving rain; the one before lost 0.05).
    gap = gaps(*scores("faster, turning the other way", default_model), "30dBZ")["60 min"]
    assert gap > 0.01, f"CSI 30 dBZ at 60 min is only {gap:+.3f} above extrapolation"


@pytest.mark.xfail(strict=True, reason="known limit (model card): with fast growth turning the other way "
                   "it loses CSI 30 dBZ to extrapolation at 30 min (-0.03)")
def test_on_real_rain_with_fast_growth_it_keeps_extrapolations_csi_at_30_dbz(default_model) -> None:
    for label, gap in gaps(*scores("faster, turning the other way", default_model), "30dBZ").items():
        assert gap >= -0.01, f"CSI 30 dBZ at {label} is {gap:+.3f} below extrapolation"
