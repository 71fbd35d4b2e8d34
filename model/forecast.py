"""Run a loaded checkpoint on radar frames: the one place where a network forecast is computed.

forecast_frames(model, frames (B, T, C, H, W), steps, precision, device) -> (B, steps, C, H, W)
    model space in [0, 1], the raw network output (not clipped)
forecast_dbz(model, dbz (T, H, W), steps, scaling=..., ...) -> (steps, H, W) dBZ

``nowcast predict``, ``nowcast parity`` and the workers go through these two functions, so a
change in how a forecast is made (another frame of reference around the network, for example a
Lagrangian one that aligns the context and advects the output) is made here, once:
:func:`forecast_dbz` scales dBZ to model space, calls :func:`forecast_frames` and scales back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from model.io.units import DEFAULT_SCALING, Scaling, dbz_to_model, model_to_dbz

if TYPE_CHECKING:
    import torch

    from model.network.predrnn import PredRNN


def forecast_frames(model: PredRNN, frames: np.ndarray, steps: int, precision: str, device: torch.device,
                    fused: bool | None = None, channels_last: bool | None = None) -> np.ndarray:
    """frames (B, T, C, H, W) float32 -> (B, steps, C, H, W) float32, unclipped.

    ``fused`` and ``channels_last`` (see :meth:`PredRNN.forecast`) default to on for bf16, whose
    numbers differ from fp32's anyway and which they make faster (docs: Results, Speed),
    and to off for fp32, which then equals ``forward`` bit for bit.
    """
    import torch

    from model.network.precision import autocast

    fast = precision == "bf16"
    fused = fast if fused is None else fused
    channels_last = fast if channels_last is None else channels_last
    model = model.to(device)
    context = torch.from_numpy(np.ascontiguousarray(frames)).to(device)
    with autocast(precision, device):
        predicted = model.forecast(context, steps, fused=fused, channels_last=channels_last)
    return predicted.float().cpu().numpy()


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
) -> np.ndarray:
    """Context (T, H, W) dBZ -> (steps, H, W) dBZ with the model's own scaling (checkpoint meta).

    ``fused`` and ``channels_last``: as :func:`forecast_frames` (None: on for bf16 only).
    """
    import torch

    frames = dbz_to_model(dbz, scaling)[None, :, None]  # (1, T, 1, H, W)
    predicted = forecast_frames(model, frames, steps, precision, torch.device(device), fused, channels_last)
    return model_to_dbz(predicted[0, :, 0], scaling)
