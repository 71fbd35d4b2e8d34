"""Skill parity of bf16 and fp32 forecasts: the same checkpoint, the same held-out storms.

    python -m benchmarks.parity --json results/precision/parity_radar_v2.json

Runs ``forecast_frames`` (model/forecast.py) twice per batch of held-out synthetic storms
(model/data/synthetic.py, the test split, which training never sees): fp32 on the plain path, and
bf16 as the workers run it (autocast, fused gates, channels_last). Both are scored against the
observed scans with :class:`model.verification.metrics.SkillScores`, and the bf16 forecast is also scored
against the fp32 one, whose ``mae_dbz`` is then the mean absolute difference between the two
forecasts. Per lead time it reports CSI at 20 / 30 / 40 dBZ for each precision, |dCSI| and that
difference; the check passes when every |dCSI| <= 0.01 and every difference <= 0.5 dBZ.
bf16 is only meaningful where it is native (AVX512-BF16 / AMX or CUDA); elsewhere it is emulated
and very slow, and the result says so.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from model.forecast import forecast_frames
from model.io.units import Scaling, model_to_dbz
from model.network.predrnn import PredRNN
from model.verification.metrics import SkillScores

log = logging.getLogger(__name__)

THRESHOLDS: tuple[tuple[str, float], ...] = (("20dBZ", 20.0), ("30dBZ", 30.0), ("40dBZ", 40.0))
CSI_TOLERANCE = 0.01  # largest allowed |CSI(bf16) - CSI(fp32)|, every lead time and threshold
MAD_TOLERANCE_DBZ = 0.5  # largest allowed mean |bf16 - fp32| in dBZ, every lead time


def compare_precisions(model: PredRNN, scaling: Scaling, batches: Iterable[np.ndarray], input_length: int,
                       steps: int, device: torch.device | None = None) -> dict[str, Any]:
    """Score fp32 and bf16 forecasts of ``model`` on ``batches`` and compare them.

    Parameters
    ----------
    batches : iterable of np.ndarray
        (B, input_length + steps, 1, H, W) sequences in model space [0, 1] (``scaling``).

    Returns
    -------
    dict
        ``lead_steps``; ``csi`` {"fp32"|"bf16": {threshold: [L]}}; ``abs_delta_csi`` {threshold: [L]};
        ``mad_dbz`` [L] (mean |bf16 - fp32| per lead time); ``max_abs_diff_dbz``; ``sequences``;
        ``max_abs_delta_csi``, ``max_mad_dbz`` and ``passed`` against the tolerances above.
    """
    device = device or torch.device("cpu")
    skill = {name: SkillScores.init(steps, THRESHOLDS, scales=(1,)) for name in ("fp32", "bf16")}
    agreement = SkillScores.init(steps, THRESHOLDS, scales=(1,))  # bf16 scored against fp32
    max_abs_diff = 0.0
    for batch in batches:
        context = batch[:, :input_length]
        truth = model_to_dbz(batch[:, input_length : input_length + steps, 0], scaling)
        forecasts = {name: model_to_dbz(forecast_frames(model, context, steps, name, device)[:, :, 0], scaling)
                     for name in ("fp32", "bf16")}
        for name, forecast in forecasts.items():
            skill[name].accum(truth, forecast)
        agreement.accum(forecasts["fp32"], forecasts["bf16"])
        max_abs_diff = max(max_abs_diff, float(np.abs(forecasts["bf16"] - forecasts["fp32"]).max()))

    scores = {name: s.compute() for name, s in skill.items()}
    csi = {name: scores[name]["csi"] for name in scores}
    abs_delta = {}
    for threshold, _ in THRESHOLDS:
        fp32, bf16 = np.array(csi["fp32"][threshold]), np.array(csi["bf16"][threshold])
        delta = np.abs(bf16 - fp32)
        delta[np.isnan(fp32) & np.isnan(bf16)] = 0.0  # no event observed or forecast by either: equal
        abs_delta[threshold] = delta.tolist()  # one NaN alone stays NaN, and fails below
    mad = agreement.compute()["mae_dbz"]
    max_delta = max(max(values) for values in abs_delta.values())
    passed = all(d <= CSI_TOLERANCE for values in abs_delta.values() for d in values) and all(
        m <= MAD_TOLERANCE_DBZ for m in mad)
    return {
        "sequences": skill["fp32"].count,
        "lead_steps": scores["fp32"]["lead_steps"],
        "csi": csi,
        "abs_delta_csi": abs_delta,
        "mad_dbz": mad,
        "max_abs_delta_csi": max_delta,
        "max_mad_dbz": max(mad),
        "max_abs_diff_dbz": max_abs_diff,
        "tolerances": {"abs_delta_csi": CSI_TOLERANCE, "mad_dbz": MAD_TOLERANCE_DBZ},
        "passed": bool(passed),
    }


if __name__ == "__main__":  # the command line is cli/parity.py
    from cli import run_script

    raise SystemExit(run_script("cli.parity:main"))
