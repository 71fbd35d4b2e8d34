"""Run a loaded checkpoint on radar frames: the one place where a network forecast is computed.

forecast_frames(model, frames (B, T, C, H, W), steps, precision, device) -> (B, steps, C, H, W)
    model space in [0, 1], the raw network output (not clipped)
forecast_dbz(model, dbz (T, H, W), steps, scaling=..., ...) -> (steps, H, W) dBZ

``nowcast predict``, ``nowcast evaluate``, ``nowcast parity`` and the workers go through these two
functions, so the frame of reference a checkpoint declares (``config.frame``) is honoured here,
once. An Eulerian model runs on the frames as they are. A Lagrangian model (see
model/network/lagrangian.py) gets its context advected to the newest scan, and each frame it
predicts is advected forward by its lead time with the motion of the last scans.
:func:`forecast_dbz` scales dBZ to model space, calls :func:`forecast_frames` and scales back.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from model.io.units import DEFAULT_SCALING, Scaling, dbz_to_model, model_to_dbz

if TYPE_CHECKING:
    import torch

    from model.network.lagrangian import Motion
    from model.network.predrnn import PredRNN


def forecast_frames(model: PredRNN, frames: np.ndarray, steps: int, precision: str, device: torch.device,
                    fused: bool | None = None, channels_last: bool | None = None,
                    scaling: Scaling = DEFAULT_SCALING, timings: dict[str, float] | None = None) -> np.ndarray:
    """frames (B, T, C, H, W) float32 -> (B, steps, C, H, W) float32, unclipped.

    ``fused`` and ``channels_last`` (see :meth:`PredRNN.forecast`) default to on for bf16, whose
    numbers differ from fp32's anyway and which they make faster (docs: Results, Speed),
    and to off for fp32, which then equals ``forward`` bit for bit. ``scaling`` (the checkpoint's)
    tells a Lagrangian model which dBZ the frames hold, for its motion field. ``timings``, when
    given, receives the seconds of each stage: ``network``, and for a Lagrangian model also
    ``lagrangian_motion``, ``lagrangian_align`` (with the trend input, if the model takes it) and
    ``lagrangian_advect``.
    """
    predicted, motions = forecast_lagrangian_frames(model, frames, steps, precision, device, fused, channels_last,
                                                    scaling, timings)
    if motions is not None:
        started = time.perf_counter()
        predicted = _from_lagrangian(predicted, motions)
        timings = {} if timings is None else timings
        timings["lagrangian_advect"] = time.perf_counter() - started
    return predicted


def forecast_lagrangian_frames(model: PredRNN, frames: np.ndarray, steps: int, precision: str,
                               device: torch.device, fused: bool | None = None, channels_last: bool | None = None,
                               scaling: Scaling = DEFAULT_SCALING, timings: dict[str, float] | None = None
                               ) -> tuple[np.ndarray, list[Motion] | None]:
    """:func:`forecast_frames` before its last step: the network's frames and each sample's motion.

    For a Lagrangian model the frames (B, steps, C, H, W) are still in the frame of the newest
    scan, and the motions say how to carry them forward (``advect_forward``); for an Eulerian
    model they are on the grid already and the motions are None. The ensemble perturbs exactly
    this pair (model/ensemble.py), so that its members share one network pass and one motion.
    """
    import torch

    from model.network.precision import autocast

    fast = precision == "bf16"
    fused = fast if fused is None else fused
    channels_last = fast if channels_last is None else channels_last
    model = model.to(device)
    timings = {} if timings is None else timings
    lagrangian = getattr(model.config, "frame", "eulerian") == "lagrangian"
    condition = None
    motions = None
    if lagrangian:
        frames, motions = _to_lagrangian(model, frames, steps, scaling, timings)
        if model.config.trend_input:
            started = time.perf_counter()
            condition = _trend(frames, scaling, model.config.trend_sigma_px).to(device)
            timings["lagrangian_align"] += time.perf_counter() - started
    started = time.perf_counter()
    context = torch.from_numpy(np.ascontiguousarray(frames)).to(device)
    with autocast(precision, device):
        predicted = model.forecast(context, steps, fused=fused, channels_last=channels_last, condition=condition)
    timings["network"] = time.perf_counter() - started
    return predicted.float().cpu().numpy(), motions


def _to_lagrangian(model: PredRNN, frames: np.ndarray, steps: int, scaling: Scaling, timings: dict[str, float]
                   ) -> tuple[np.ndarray, list[Motion]]:
    """The model's context length of each sample, advected to its newest scan, and each motion."""
    from model.network.lagrangian import align_context, motion_of

    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 5 or frames.shape[2] != 1:
        raise ValueError(f"a Lagrangian model takes (B, T, 1, H, W) reflectivity, got shape {frames.shape}")
    if frames.shape[1] < 2:
        raise ValueError("a Lagrangian model needs at least 2 scans to estimate the motion")
    context_length = min(int(model.config.input_length), frames.shape[1])
    aligned = np.empty((frames.shape[0], context_length, *frames.shape[2:]), dtype=np.float32)
    motions = []
    timings["lagrangian_motion"] = timings["lagrangian_align"] = 0.0
    for i, sample in enumerate(frames[:, :, 0]):
        started = time.perf_counter()
        # "No echo" is 0 in model space; the motion is estimated on dBZ like the baseline's.
        motion = motion_of(model_to_dbz(sample, scaling), max(steps, context_length - 1),
                           zerovalue=float(scaling["dbz_min"]))
        aligned_at = time.perf_counter()
        aligned[i, :, 0] = align_context(sample[-context_length:], motion, 0.0)
        timings["lagrangian_motion"] += aligned_at - started
        timings["lagrangian_align"] += time.perf_counter() - aligned_at
        motions.append(motion)
    return aligned, motions


def _trend(aligned: np.ndarray, scaling: Scaling, sigma_px: float) -> torch.Tensor:
    """(B, T, 1, H, W) aligned context in model space -> (B, 1, H, W) its trend in dB per scan."""
    import torch

    from model.network.lagrangian import trend

    return trend(torch.from_numpy(model_to_dbz(aligned[:, :, 0], scaling)), sigma_px)


def _from_lagrangian(predicted: np.ndarray, motions: list[Motion]) -> np.ndarray:
    """(B, K, 1, H, W) in the Lagrangian frame -> on the grid: frame k advected by k + 1 scans."""
    from model.network.lagrangian import advect_forward

    out = np.empty_like(predicted)
    for i, motion in enumerate(motions):
        out[i, :, 0] = advect_forward(predicted[i, :, 0], motion, 0.0)
    return out


def forecast_dbz(
    model: PredRNN,
    dbz: np.ndarray,
    steps: int,
    *,
    scaling: Scaling = DEFAULT_SCALING,
    precision: str = "fp32",
    device: torch.device | str = "cpu",
    fused: bool | None = None,
    channels_last: bool | None = None,
    timings: dict[str, float] | None = None,
) -> np.ndarray:
    """Context (T, H, W) dBZ -> (steps, H, W) dBZ with the model's own scaling (checkpoint meta).

    ``fused``, ``channels_last`` and ``timings``: as :func:`forecast_frames` (None: on for bf16 only).
    """
    import torch

    frames = dbz_to_model(dbz, scaling)[None, :, None]  # (1, T, 1, H, W)
    predicted = forecast_frames(model, frames, steps, precision, torch.device(device), fused, channels_last,
                                scaling, timings)
    return model_to_dbz(predicted[0, :, 0], scaling)
