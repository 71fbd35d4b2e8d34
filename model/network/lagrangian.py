"""The Lagrangian frame around PredRNN: optical flow carries the motion, the network the evolution.

A Lagrangian model (``PredRNNConfig.frame == "lagrangian"``) forecasts in four steps:

1. motion: one Lucas-Kanade field from the last scans, with exactly the settings of the
   extrapolation baseline (:func:`model.baselines.estimate_motion`);
2. displacements: pysteps' semi-Lagrangian backward trajectories D_k for k = 1..K scan intervals,
   so that the newest scan advected by k intervals is ``last(x + D_k(x))``;
3. alignment: context scan j intervals older than the newest is advected forward by j intervals,
   so that every context frame shows the rain where it is at the reference time;
4. the network forecasts the aligned sequence (each frame a residual on the previous one) and
   predicted frame k is advected forward by k intervals with the same D_k. A model with
   ``trend_input`` also reads :func:`trend`, the aligned context's growth in dB per scan.

With the residual head at zero, steps 3 and 4 reproduce pysteps' extrapolation exactly (the same
displacements, the same bilinear sampling with "no echo" outside the domain): an untrained model
is the extrapolation baseline.

Shapes: fields (T, H, W); velocity (2, H, W) in pixels per scan interval, x (column) first as in
pysteps; displacements (K, 2, H, W) in pixels.

:func:`advect_torch` is that bilinear sampling with ``grid_sample`` (equal to scipy's to float
rounding), plus a mask of the pixels whose source lies inside the domain: training needs step 4
inside the autograd graph, and inference runs steps 3 and 4 through it too, batched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

MOTION_FRAMES = 3  # the extrapolation baseline's default: motion from the last 3 scans

# The trend input (``PredRNNConfig.trend_input``); changing any of these needs retraining.
TREND_ECHO_DBZ = 5.0  # read where every aligned scan has echo: at an echo's edge the edge moves
TREND_LIMIT_DB = 3.0  # dB per scan; a steeper slope is misalignment of texture, not growth


@dataclass(frozen=True)
class Motion:
    """The motion of one nowcast: velocity (2, H, W) px/scan and displacements (K, 2, H, W) px."""

    velocity: np.ndarray
    displacements: np.ndarray

    @property
    def steps(self) -> int:
        return int(self.displacements.shape[0])


def displacements(velocity: np.ndarray, steps: int) -> np.ndarray:
    """pysteps' semi-Lagrangian displacements after 1..``steps`` intervals, (steps, 2, H, W) float32.

    pysteps' scheme (``extrapolate`` with its default ``n_iter=1``), one interval at a time: the
    velocity increment is read at the midpoint ``x + D - v/2`` of the backward step, D moves back
    by it, and the next increment starts from the velocity at the new ``x + D``; velocities are
    read bilinearly with the edge value beyond the domain (scipy's "nearest" mode). pysteps keeps
    only the last D and reads each velocity with scipy; the same arithmetic in float64 with
    ``grid_sample`` ("border" padding is "nearest") gives every D_k in one pass, several times
    faster, and equals pysteps' D to the float32 rounding of the result (tested).
    """
    import torch
    import torch.nn.functional as F

    v = torch.from_numpy(np.asarray(velocity, dtype=np.float64))[None]  # (1, 2, H, W)
    h, w = v.shape[-2:]

    def velocity_at(d: torch.Tensor) -> torch.Tensor:
        grid, _ = sampling_grid(d)
        return F.grid_sample(v, grid[None], mode="bilinear", padding_mode="border", align_corners=True)[0]

    out = np.empty((steps, 2, h, w), dtype=np.float32)
    d = torch.zeros(2, h, w, dtype=torch.float64)
    increment = v[0].clone()
    for k in range(steps):
        increment = velocity_at(d - increment / 2.0)
        d = d - increment
        increment = velocity_at(d)
        out[k] = d.numpy()
    return out


def motion_of(frames_dbz: np.ndarray, steps: int, *, zerovalue: float) -> Motion:
    """Motion of (T, H, W) dBZ scans (NaN = no data): velocity from the last scans, ``steps`` displacements."""
    from model.baselines import estimate_motion

    frames = np.asarray(frames_dbz, dtype=np.float32)
    if frames.ndim != 3 or frames.shape[0] < 2:
        raise ValueError(f"motion needs (T >= 2, H, W) scans, got shape {frames.shape}")
    velocity = estimate_motion(frames[-MOTION_FRAMES:], zerovalue=zerovalue)
    return Motion(velocity.astype(np.float32), displacements(velocity, steps))


def align_context(frames: np.ndarray, motion: Motion, outval: float) -> np.ndarray:
    """(T, H, W) -> (T, H, W): scan T-1-j advected forward by j intervals; the newest unchanged."""
    frames = np.asarray(frames, dtype=np.float32)
    t = frames.shape[0]
    if t - 1 > motion.steps:
        raise ValueError(f"aligning {t} scans needs {t - 1} displacements, the motion has {motion.steps}")
    aligned = frames.copy()
    if t > 1:  # the older scans, newest first, each with its own number of intervals
        older = frames[: t - 1][::-1].copy()  # a copy: a reversed axis of length 1 keeps its negative stride
        aligned[: t - 1] = _advect(older, motion.displacements[: t - 1], outval)[::-1]
    return aligned


def advect_forward(frames: np.ndarray, motion: Motion, outval: float) -> np.ndarray:
    """(K, H, W) Lagrangian forecast -> (K, H, W) on the grid: frame k advected by k + 1 intervals."""
    frames = np.asarray(frames, dtype=np.float32)
    if frames.shape[0] > motion.steps:
        raise ValueError(f"advecting {frames.shape[0]} frames needs as many displacements, "
                         f"the motion has {motion.steps}")
    return _advect(frames, motion.displacements[: frames.shape[0]], outval)


def _advect(frames: np.ndarray, displacement: np.ndarray, outval: float) -> np.ndarray:
    """(K, H, W) each read at x + displacement[k] in one batched float32 :func:`advect_torch` call.

    pysteps' bilinear sampling (scipy ``map_coordinates``, order 1, ``outval`` beyond the edge
    pixels' centres) to about 1e-4 dBZ (tested), in a third of the time: one batched float32
    call instead of K float64 scipy calls.
    """
    import torch

    with torch.no_grad():
        advected, _ = advect_torch(torch.from_numpy(np.ascontiguousarray(frames))[None],
                                   torch.from_numpy(np.ascontiguousarray(displacement, dtype=np.float32))[None],
                                   outval)
    return advected[0].numpy()


def trend(aligned_dbz: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """(B, T, H, W) context aligned to its newest scan, dBZ -> (B, 1, H, W) its trend, dB per scan.

    In the Lagrangian frame each pixel follows one parcel of rain, so its change over the context
    is growth or decay. The trend is the least-squares slope over the T scans where all of them
    have echo (``TREND_ECHO_DBZ``; zero elsewhere and for T = 1), clipped to ``TREND_LIMIT_DB``
    and smoothed by a Gaussian of ``sigma_px`` pixels (zero beyond the domain). One function for
    training and inference, so that both read the same input.
    """
    import torch

    x = aligned_dbz.float()
    b, t, h, w = x.shape
    if t < 2:
        return x.new_zeros(b, 1, h, w)
    steps = torch.arange(t, dtype=x.dtype, device=x.device) - (t - 1) / 2.0
    slope = torch.einsum("t,bthw->bhw", steps, x) / (steps * steps).sum()
    echo = (x >= TREND_ECHO_DBZ).all(dim=1)
    slope = torch.where(echo, slope.clamp(-TREND_LIMIT_DB, TREND_LIMIT_DB), torch.zeros_like(slope))
    # The separable Gaussian (truncated at 3 sigma, zero beyond the domain) as two products with
    # banded matrices: the same sums as two 1-D convolutions, and on a CPU several times faster
    # once the kernel is wide (a 10 px Gaussian spans 61 pixels).
    rows, cols = _gaussian_band(h, sigma_px, x), _gaussian_band(w, sigma_px, x)
    return (rows @ slope @ cols.T)[:, None]


def _gaussian_band(n: int, sigma_px: float, like: torch.Tensor) -> torch.Tensor:
    """(n, n): row i holds the normalised Gaussian around i, truncated at 3 sigma and at the edges."""
    import torch

    radius = math.ceil(3.0 * sigma_px)
    offsets = torch.arange(-radius, radius + 1, dtype=like.dtype, device=like.device)
    total = torch.exp(-(offsets**2) / (2.0 * sigma_px**2)).sum()
    index = torch.arange(n, dtype=like.dtype, device=like.device)
    distance = index[None, :] - index[:, None]
    band = torch.exp(-(distance**2) / (2.0 * sigma_px**2)) / total
    return torch.where(distance.abs() <= radius, band, torch.zeros_like(band))


# ------------------------------------------------------------------------ differentiable path


def sampling_grid(displacements: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., 2, H, W) pixel displacements -> grid_sample grid (..., H, W, 2) and inside mask (..., H, W).

    ``align_corners=True`` puts -1 and 1 on the centres of the edge pixels, which is scipy's
    convention (pixel i at coordinate i); the mask marks sources inside [0, W-1] x [0, H-1],
    where scipy's "constant" mode interpolates rather than filling with ``outval``.
    """
    import torch

    h, w = displacements.shape[-2:]
    rows = torch.arange(h, dtype=displacements.dtype, device=displacements.device).view(h, 1)
    cols = torch.arange(w, dtype=displacements.dtype, device=displacements.device).view(1, w)
    x = cols + displacements[..., 0, :, :]
    y = rows + displacements[..., 1, :, :]
    inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    grid = torch.stack((2.0 * x / max(w - 1, 1) - 1.0, 2.0 * y / max(h - 1, 1) - 1.0), dim=-1)
    return grid, inside


def advect_torch(frames: torch.Tensor, displacements: torch.Tensor, outval: float = 0.0
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """frames (B, K, H, W) read at x + D (B, K, 2, H, W); returns (advected, inside mask), both (B, K, H, W).

    Bilinear like pysteps' scipy sampling; sources outside the domain take ``outval`` and are False in the
    mask, so a loss can leave them out (the truth there came from rain the model never saw).
    """
    import torch
    import torch.nn.functional as F

    b, k, h, w = frames.shape
    grid, inside = sampling_grid(displacements)
    sampled = F.grid_sample((frames - outval).reshape(b * k, 1, h, w), grid.reshape(b * k, h, w, 2),
                            mode="bilinear", padding_mode="zeros", align_corners=True)
    # scipy's "constant" mode gives outval for any source beyond the edge pixels' centres, where
    # grid_sample would still blend the edge pixel with the padding: take outval there too.
    advected = torch.where(inside, sampled.reshape(b, k, h, w) + outval, torch.full_like(frames, outval))
    return advected, inside
