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
    # Measured at 30 / 60 minutes: +0.021 / +0.029 (20 dBZ) and +0.175 / +0.236 (30 dBZ) in the first
    # flow, +0.054 / +0.102 and +0.316 / +0.413 in the second (results/radar_lagrangian_cpu_trend_wide10/).
    for label, gap in gaps(*scores(flow, default_model), threshold).items():
        assert gap >= 0.0, f"{flow}: CSI {threshold} at {label} is {gap:+.3f} below extrapolation"


def test_on_real_rain_it_forecasts_the_growth_and_the_decay_that_extrapolation_cannot(default_model) -> None:
    # Each flow with its growth as given and reversed: wherever the truth departs from
    # extrapolation by 1 dB or more at 60 minutes (mean over the echo of the growing and of the
    # decaying quarter), the model departs the same way, and by at least half as much on average.
    # Measured: the same sign in all 6 such cases, 0.75 of the truth's change on average; least in
    # the faster flow's growing quarter, +0.68 dB where the truth gains +2.71 dB
    # (trend_response in results/radar_lagrangian_cpu_trend_wide10/real_rain.json). The model
    # before the trend input added +0.2 to +0.6 dB everywhere, whatever the truth did.
    from benchmarks.real_rain import trend_response

    model, meta = default_model
    field = read_odim(ODIM).dbz[0]
    ratios = []
    for flow in FLOWS:
        response = trend_response(model, meta["scaling"], field, flow)
        for case in ("as given", "reversed"):
            for quarter in ("north-west", "south-east"):
                change = response[case][quarter]["60 min"]
                if abs(change["truth_db"]) < 1.0:
                    continue
                assert np.sign(change["model_db"]) == np.sign(change["truth_db"]), (
                    f"{flow}, growth {case}, {quarter}: the model changes extrapolation by {change['model_db']:+.2f} dB"
                    f" where the truth does by {change['truth_db']:+.2f} dB")
                ratios.append(change["model_db"] / change["truth_db"])
    assert len(ratios) >= 4 and np.mean(ratios) >= 0.5, ratios


def test_on_synthetic_storms_it_keeps_the_intense_cores_that_extrapolation_keeps() -> None:
    # The default before this one read each convective cell's steep growth in its trend, learned
    # that the storms' cells die and let every core fade. On these 20 validation storms its 40 dBZ
    # area is 0.66 and 0.02 of extrapolation's at 30 and 60 minutes, this one's 1.14 and 1.28
    # (on 30: 0.62 / 0.08 and 1.13 / 1.22, results/radar_lagrangian_cpu_trend_wide10/intense_cores.json).
    from benchmarks.intense_cores import core_report

    areas = core_report({"default": SHIPPED_CHECKPOINT}, storms=20)["area_40dBZ"]
    for label, lead in LEADS.items():
        ratio = areas["default"][lead - 1] / areas["extrapolation"][lead - 1]
        assert ratio >= 0.8, f"the 40 dBZ area at {label} is {ratio:.2f} of extrapolation's"
