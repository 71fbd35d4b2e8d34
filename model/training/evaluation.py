"""Scores during and after training: validation MSE (picks ``best.pt``) and the test-split report.

validation_mse(model, source, ...) -> float    the paper's MSE per frame on the ``valid`` split
evaluate_test_split(model, source, ...) -> dict model and persistence, paper protocol (+ skill in dBZ)
final_test(config, out_dir, source, device)     best.pt on the test split -> ``test_metrics.json``

Forecasts are float32 whatever precision the run trains in, so scores compare across runs.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model import InputError
from model.checkpoint import CheckpointError, load_checkpoint
from model.network.predrnn import PredRNN
from model.training.config import TrainConfig, TrainConfigError
from model.training.state import BEST

log = logging.getLogger(__name__)


def validation_mse(
    model: PredRNN, source: Any, *, batch_size: int, max_batches: int, device: torch.device
) -> float:
    """Mean over valid sequences and output frames of the squared error summed over a frame's pixels.

    The paper's "MSE per frame" (docs/model.md, Metrics) on predictions clipped to [0, 1], with the
    test-time rule (ground truth for the context, own output afterwards). Lower is better.
    Forecasts are float32 whatever precision the run trains in, so scores compare across runs.
    """
    config = model.config
    was_training = model.training
    model.eval()
    total, frames_scored = 0.0, 0
    try:
        for index, batch in enumerate(source.eval_batches("valid", batch_size)):
            if max_batches and index >= max_batches:
                break
            frames = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(device)
            predicted = model.forecast(frames[:, : config.input_length], config.output_length)
            error = (predicted.float().clamp(0.0, 1.0) - frames[:, config.input_length :]) ** 2
            per_frame = error.sum(dim=(2, 3, 4))  # (B, T_out)
            total += float(per_frame.sum().item())
            frames_scored += per_frame.numel()
    finally:
        model.train(was_training)
    if frames_scored == 0:
        raise TrainConfigError("[data] source yielded no 'valid' sequences: cannot select a best checkpoint")
    return total / frames_scored


def evaluate_test_split(
    model: PredRNN, source: Any, *, batch_size: int, device: torch.device
) -> dict[str, Any]:
    """Score ``model`` and persistence on every sequence of the test split (model/verification/metrics.py).

    The paper protocol (per-frame MSE, MAE, SSIM, PSNR; docs/model.md, Metrics) always; for sources with a
    physical scaling (radar, dBZ) also the nowcast skill per lead time (CSI, POD, FAR, bias, FSS,
    MAE / RMSE in dBZ). Persistence is the last context frame repeated (model.baselines).

    Returns
    -------
    dict
        ``{"model": {"paper": ..., "nowcast": ...}, "persistence": {...}}``, JSON-safe (NaN -> None).
    """
    from model.baselines import forecast_model_space
    from model.io.units import model_to_dbz
    from model.verification.metrics import PaperScores, SkillScores, json_safe

    config = model.config
    scaling = source.scaling
    physical = scaling["kind"] != "identity"
    scores: dict[str, dict[str, Any]] = {}
    for name in ("model", "persistence"):
        scores[name] = {"paper": PaperScores.init(config.output_length)}
        if physical:
            scores[name]["nowcast"] = SkillScores.init(config.output_length)
    model.eval()
    for batch in source.eval_batches("test", batch_size):
        frames = np.ascontiguousarray(batch, dtype=np.float32)
        context, truth = frames[:, : config.input_length], frames[:, config.input_length :]
        predicted = model.forecast(torch.from_numpy(context).to(device), config.output_length)
        forecasts = {
            "model": predicted.float().cpu().numpy(),
            "persistence": forecast_model_space("persistence", context, config.output_length, scaling),
        }
        for name, forecast in forecasts.items():
            scores[name]["paper"].accum(truth, forecast)
            if physical:  # skill on the first channel, in dBZ
                scores[name]["nowcast"].accum(
                    model_to_dbz(truth[:, :, 0], scaling), model_to_dbz(forecast[:, :, 0], scaling)
                )
    return json_safe({name: {k: v.compute() for k, v in parts.items()} for name, parts in scores.items()})


def final_test(config: TrainConfig, out_dir: Path, source: Any, device: torch.device) -> dict[str, Any]:
    """Evaluate best.pt (chosen on valid) on the test split; write test_metrics.json."""
    try:
        model, meta = load_checkpoint(out_dir / BEST)
    except CheckpointError as exc:
        raise InputError(str(exc)) from exc
    started = time.monotonic()
    results = evaluate_test_split(model.to(device), source, batch_size=config.data.eval_batch_size, device=device)
    document = {
        "preset": config.name,
        "checkpoint": str(out_dir / BEST),
        "iteration": meta.get("iteration"),
        "weights_sha256": meta.get("weights_sha256"),
        "selected_on": meta.get("selected_on"),
        "split": "test",
        "seconds": round(time.monotonic() - started, 1),
        "results": results,
    }
    path = out_dir / "test_metrics.json"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    paper = results["model"]["paper"]["mean"]
    log.info(
        "test split (best.pt, iteration %s): MSE/frame %.2f SSIM %.4f (persistence MSE/frame %.2f) -> %s",
        meta.get("iteration"),
        paper["mse"],
        paper["ssim"],
        results["persistence"]["paper"]["mean"]["mse"],
        path,
    )
    return document

