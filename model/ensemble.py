"""Ensemble nowcasts from one deterministic network pass: perturbed motion plus correlated noise.

Interface
---------
forecast_ensemble_dbz(model, dbz (T, H, W), steps, *, members, seed, settings, ...) -> (M, steps, H, W) dBZ
forecast_ensemble_frames(model, frames (B, T, C, H, W), steps, *, members, seed, ...) -> (B, M, steps, C, H, W)
exceedance_probability(members (M, ..., H, W) dBZ, thresholds) -> (N, ..., H, W) in [0, 1]
ensemble_mean(members) -> (..., H, W) dBZ
EnsembleSettings.for_checkpoint(path): the calibration shipped beside a checkpoint, or the defaults

Why this design (docs/ensemble.md has the measurements): a nowcast's error has two parts that
grow with lead time. Where the rain will be is uncertain because the motion field is; how strong
it will be is uncertain because cells grow and decay in ways the context does not show. The
network runs once; each member then

1. adds to the network's Lagrangian forecast (the frames before they are carried forward) a
   spatially correlated noise field whose power spectrum is the newest scan's (pysteps' STEPS noise
   generator, ``initialize_nonparam_2d_fft_filter``), AR(1) in time, with a standard deviation
   ``noise_db[k]`` at lead k;
2. carries the result forward with the slot's motion displaced by its own offset: one
   random vector per member, of standard deviation ``displacement_px[k]`` per axis at lead k (a
   spatially constant error of the motion's mean, as STEPS' velocity perturbations are);
3. is clipped to the scaling's dBZ range ("no echo" at its floor).

``members == 1`` is the deterministic forecast, bit for bit: no noise, no offset. The members
share one motion field and one network pass, so a 20-member ensemble costs one forecast plus
20 cheap perturbations (docs: Ensemble, Speed). A seed fixes every random draw: the same
``(input, steps, members, seed, settings)`` gives the same members on any machine with the same
numpy.

The amplitudes per lead are calibrated on validation storms (``python -m
benchmarks.ensemble_calibration``), minimising the CRPS per lead, and shipped beside the
checkpoint as ``<checkpoint stem>.ensemble.json``; the amplitudes are in pixels and dB of the
grid they were fitted on (about 1 km, 6-minute scans).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from model.io.units import DEFAULT_SCALING, Scaling, dbz_to_model, model_to_dbz

if TYPE_CHECKING:
    import torch

    from model.network.lagrangian import Motion
    from model.network.predrnn import PredRNN

log = logging.getLogger(__name__)

MAX_MEMBERS = 50  # the service's and the CLI's bound: memory grows with members x leads x grid
PROBABILITY_THRESHOLDS_DBZ: tuple[float, ...] = (20.0, 30.0, 40.0)  # the service's skill thresholds
PERTURBATIONS = ("both", "motion", "noise")


@dataclass(frozen=True)
class EnsembleSettings:
    """How members are perturbed; per-lead tables hold their last value beyond their length."""

    displacement_px: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)  # std per axis of each member's offset, px
    noise_db: tuple[float, ...] = (1.0, 1.5, 2.0, 2.5, 3.0, 3.5)  # std of the added noise at lead k, dB
    noise_ar1: float = 0.9  # correlation of one member's noise between consecutive leads
    perturb: str = "both"  # both | motion | noise
    source: str = "defaults"  # where these numbers came from (a calibration run, or the defaults)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)  # calibration provenance, kept as read

    def __post_init__(self) -> None:
        if self.perturb not in PERTURBATIONS:
            raise ValueError(f"perturb must be one of {PERTURBATIONS}, got {self.perturb!r}")
        if not self.displacement_px or not self.noise_db:
            raise ValueError("displacement_px and noise_db need at least one lead each")
        if min(self.displacement_px) < 0 or min(self.noise_db) < 0:
            raise ValueError("displacement_px and noise_db must not be negative")
        if not 0.0 <= self.noise_ar1 < 1.0:
            raise ValueError(f"noise_ar1 must be in [0, 1), got {self.noise_ar1}")

    def displacement_at(self, steps: int) -> np.ndarray:
        """(steps,) px: the offset's standard deviation at leads 1..steps (zero if not perturbed)."""
        values = _table(self.displacement_px, steps)
        return values if self.perturb in ("both", "motion") else np.zeros_like(values)

    def noise_at(self, steps: int) -> np.ndarray:
        """(steps,) dB: the noise's standard deviation at leads 1..steps (zero if not perturbed)."""
        values = _table(self.noise_db, steps)
        return values if self.perturb in ("both", "noise") else np.zeros_like(values)

    def with_perturb(self, perturb: str) -> EnsembleSettings:
        return EnsembleSettings(self.displacement_px, self.noise_db, self.noise_ar1, perturb, self.source, self.extra)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        extra = out.pop("extra")
        return {**extra, **out}

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str) -> EnsembleSettings:
        known = {"displacement_px", "noise_db", "noise_ar1", "perturb"}
        return cls(tuple(float(v) for v in data["displacement_px"]), tuple(float(v) for v in data["noise_db"]),
                   float(data.get("noise_ar1", 0.9)), str(data.get("perturb", "both")), source,
                   {k: v for k, v in data.items() if k not in known | {"source"}})

    @classmethod
    def for_checkpoint(cls, checkpoint: Path | str | None) -> EnsembleSettings:
        """The calibration ``<stem>.ensemble.json`` beside ``checkpoint``, else the defaults."""
        if checkpoint is None:
            return cls()
        path = calibration_path(checkpoint)
        if not path.is_file():
            log.info("%s: no ensemble calibration beside it; using the default amplitudes", checkpoint)
            return cls()
        try:
            return cls.from_json(json.loads(path.read_text()), str(path.name))
        except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: not an ensemble calibration ({exc})") from exc


def calibration_path(checkpoint: Path | str) -> Path:
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(f"{checkpoint.stem}.ensemble.json")


def _table(values: Sequence[float], steps: int) -> np.ndarray:
    table = np.asarray(values, dtype=np.float64)
    return np.concatenate([table, np.full(max(steps - table.size, 0), table[-1])])[:steps]


def check_members(members: Any) -> int:
    """``members`` as an int in 1..MAX_MEMBERS, or ValueError saying what is wrong."""
    if isinstance(members, bool) or not isinstance(members, int | np.integer):
        raise ValueError(f"members must be a whole number from 1 to {MAX_MEMBERS}, got {members!r}")
    if not 1 <= int(members) <= MAX_MEMBERS:
        raise ValueError(f"members must be from 1 to {MAX_MEMBERS}, got {members}")
    return int(members)


# ----------------------------------------------------------------------------------- members


def correlated_noise(reference_dbz: np.ndarray, members: int, steps: int, ar1: float,
                     rng: np.random.Generator) -> np.ndarray:
    """(members, steps, H, W) float32 noise, unit variance, with ``reference_dbz``'s power spectrum.

    The filter is pysteps' non-parametric one (STEPS' noise), fitted to the newest scan; the
    white noise it shapes is drawn from ``rng`` for all members at once, and each member's noise
    follows an AR(1) in time so that a member's rain evolves rather than flickers.
    """
    from model.baselines import _import_pysteps

    _import_pysteps()
    from pysteps.noise.fftgenerators import initialize_nonparam_2d_fft_filter

    h, w = reference_dbz.shape
    reference = np.nan_to_num(np.asarray(reference_dbz, dtype=np.float64), nan=float(np.nanmin(reference_dbz)))
    if np.ptp(reference) == 0:  # no structure to copy (an empty scan): white noise smoothed by nothing
        amplitude = np.ones((h, w // 2 + 1))
    else:
        with contextlib.redirect_stdout(io.StringIO()):
            amplitude = initialize_nonparam_2d_fft_filter(reference)["field"]  # (H, W // 2 + 1)
    import torch

    filter_t = torch.from_numpy(np.asarray(amplitude, dtype=np.float32))
    out = np.empty((members, steps, h, w), dtype=np.float32)
    innovation_scale = float(np.sqrt(1.0 - ar1 * ar1))
    previous = None
    for k in range(steps):
        white = torch.from_numpy(rng.standard_normal((members, h, w), dtype=np.float32))
        shaped = torch.fft.irfft2(torch.fft.rfft2(white) * filter_t, s=(h, w))
        shaped -= shaped.mean(dim=(1, 2), keepdim=True)
        shaped /= shaped.std(dim=(1, 2), keepdim=True).clamp_min(1e-12)
        previous = shaped if previous is None else ar1 * previous + innovation_scale * shaped
        out[:, k] = previous.numpy()
    return out


@dataclass(frozen=True)
class Perturbations:
    """One sample's random draws, in units of the per-lead standard deviations.

    offsets (M, 2): each member's motion offset, x then y; noise (M, K, H, W): its noise fields.
    Drawn once, they can be scaled by any amplitudes (the calibration tries many on the same draws).
    """

    offsets: np.ndarray
    noise: np.ndarray


def draw_perturbations(reference_dbz: np.ndarray, members: int, steps: int, seed: int,
                       ar1: float) -> Perturbations:
    """The draws of :func:`perturb_members` for a seed, in a fixed order (offsets, then noise)."""
    rng = np.random.default_rng(seed)
    offsets = rng.standard_normal((members, 2))
    return Perturbations(offsets, correlated_noise(reference_dbz, members, steps, ar1, rng))


MEMBER_CHUNK_PIXELS = 2**24  # members advected per call x leads x pixels: bounds the displacement arrays


def apply_perturbations(lagrangian_dbz: np.ndarray, motion: Motion | None, draws: Perturbations,
                        displacement_px: np.ndarray, noise_db: np.ndarray, floor_dbz: float, cap_dbz: float,
                        ) -> np.ndarray:
    """(K, H, W) network forecast -> (M, K, H, W) float32 dBZ members, for (K,) amplitudes per lead.

    Member m is ``advect(L_k + noise_db[k] * noise[m, k], D_k + displacement_px[k] * offsets[m])``,
    clipped to [floor, cap]; D_k is the slot's motion (zero for an Eulerian model).
    """
    import torch
    import torch.nn.functional as F

    from model.network.lagrangian import sampling_grid

    steps, h, w = lagrangian_dbz.shape
    members = draws.offsets.shape[0]
    base = np.zeros((steps, 2, h, w), np.float32) if motion is None else motion.displacements[:steps]
    # The member's offset is constant in space, so its sampling grid is the slot's grid plus a
    # constant: the grid is built once, not once per member (that is most of an advection's time).
    base_grid, _ = sampling_grid(torch.from_numpy(np.ascontiguousarray(base, dtype=np.float32)))  # (K, H, W, 2)
    to_grid = torch.tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)])
    field_t = torch.from_numpy(np.ascontiguousarray(lagrangian_dbz, dtype=np.float32)) - floor_dbz
    noise_std = torch.from_numpy(np.asarray(noise_db, dtype=np.float32)).view(1, steps, 1, 1)
    shift_std = torch.from_numpy(np.asarray(displacement_px, dtype=np.float32)).view(1, steps, 1, 1, 1)
    out = np.empty((members, steps, h, w), dtype=np.float32)
    chunk = max(1, MEMBER_CHUNK_PIXELS // (steps * h * w))
    with torch.no_grad():
        for first in range(0, members, chunk):
            last = min(first + chunk, members)
            count = last - first
            frames = field_t[None] + noise_std * torch.from_numpy(draws.noise[first:last])  # (m, K, H, W)
            offsets = torch.from_numpy(draws.offsets[first:last].astype(np.float32)) * to_grid  # (m, 2)
            grid = base_grid[None] + shift_std * offsets.view(count, 1, 1, 1, 2)  # (m, K, H, W, 2)
            # Beyond the edge pixels' centres is "no echo", as in the extrapolation's scheme.
            inside = (grid.abs() <= 1.0).all(dim=-1)
            sampled = F.grid_sample(frames.reshape(count * steps, 1, h, w), grid.reshape(count * steps, h, w, 2),
                                    mode="bilinear", padding_mode="zeros", align_corners=True)
            sampled = torch.where(inside, sampled.reshape(count, steps, h, w), torch.zeros(()))
            out[first:last] = (sampled + floor_dbz).clamp_(floor_dbz, cap_dbz).numpy()
    return out


def perturb_members(lagrangian_dbz: np.ndarray, motion: Motion | None, members: int, seed: int,
                    settings: EnsembleSettings, reference_dbz: np.ndarray, floor_dbz: float, cap_dbz: float,
                    ) -> np.ndarray:
    """One sample's members from its network forecast.

    Parameters
    ----------
    lagrangian_dbz : (K, H, W) dBZ, the network's frames before they are carried forward
        (on the grid already for an Eulerian model, whose ``motion`` is None).
    motion : the sample's motion (its displacements D_k), shared by every member.
    reference_dbz : (H, W) the newest scan, whose spectrum the noise copies.
    floor_dbz, cap_dbz : the scaling's dBZ range; "no echo" is the floor.

    Returns
    -------
    np.ndarray
        (members, K, H, W) float32 dBZ.
    """
    steps = lagrangian_dbz.shape[0]
    draws = draw_perturbations(reference_dbz, members, steps, seed, settings.noise_ar1)
    return apply_perturbations(lagrangian_dbz, motion, draws, settings.displacement_at(steps),
                               settings.noise_at(steps), floor_dbz, cap_dbz)


def forecast_ensemble_frames(
    model: PredRNN,
    frames: np.ndarray,
    steps: int,
    *,
    members: int,
    seed: int = 0,
    settings: EnsembleSettings | None = None,
    precision: str = "fp32",
    device: torch.device | str = "cpu",
    scaling: Scaling = DEFAULT_SCALING,
    timings: dict[str, float] | None = None,
) -> np.ndarray:
    """frames (B, T, 1, H, W) in model space -> (B, members, steps, 1, H, W) in model space.

    One network pass for the batch; sample i's members use the seed ``seed + i``. With
    ``members == 1`` this is :func:`model.forecast.forecast_frames` with a members axis.
    """
    import time

    import torch

    from model.forecast import forecast_frames, forecast_lagrangian_frames

    members = check_members(members)
    device = torch.device(device)
    frames = np.asarray(frames, dtype=np.float32)
    if members == 1:
        return forecast_frames(model, frames, steps, precision, device, scaling=scaling, timings=timings)[:, None]
    if frames.ndim != 5 or frames.shape[2] != 1:
        raise ValueError(f"an ensemble needs (B, T, 1, H, W) reflectivity, got shape {frames.shape}")
    settings = settings or EnsembleSettings()
    timings = {} if timings is None else timings
    predicted, motions = forecast_lagrangian_frames(model, frames, steps, precision, device, scaling=scaling,
                                                    timings=timings)
    started = time.perf_counter()
    floor, cap = float(scaling["dbz_min"]), float(scaling["dbz_max"])
    out = np.empty((frames.shape[0], members, steps, 1, *frames.shape[3:]), dtype=np.float32)
    for i in range(frames.shape[0]):
        newest = model_to_dbz(frames[i, -1, 0], scaling)
        motion = None if motions is None else motions[i]
        members_dbz = perturb_members(model_to_dbz(predicted[i, :, 0], scaling), motion, members, seed + i, settings,
                                      newest, floor, cap)
        out[i, :, :, 0] = dbz_to_model(members_dbz, scaling)
    timings["ensemble_perturb"] = time.perf_counter() - started
    return out


def forecast_ensemble_dbz(
    model: PredRNN,
    dbz: np.ndarray,
    steps: int,
    *,
    members: int,
    seed: int = 0,
    settings: EnsembleSettings | None = None,
    scaling: Scaling = DEFAULT_SCALING,
    precision: str = "fp32",
    device: torch.device | str = "cpu",
    timings: dict[str, float] | None = None,
) -> np.ndarray:
    """Context (T, H, W) dBZ -> (members, steps, H, W) dBZ.

    ``members == 1`` returns exactly :func:`model.forecast.forecast_dbz`'s field (with a leading
    axis of 1); otherwise the members of :func:`perturb_members`, the same for the same ``seed``.
    """
    from model.forecast import forecast_dbz

    members = check_members(members)
    if members == 1:
        return forecast_dbz(model, dbz, steps, scaling=scaling, precision=precision, device=device,
                            timings=timings)[None]
    frames = dbz_to_model(dbz, scaling)[None, :, None]  # (1, T, 1, H, W)
    predicted = forecast_ensemble_frames(model, frames, steps, members=members, seed=seed, settings=settings,
                                         precision=precision, device=device, scaling=scaling, timings=timings)
    return model_to_dbz(predicted[0, :, :, 0], scaling)


# ------------------------------------------------------------------------------- products


def exceedance_probability(members_dbz: np.ndarray,
                           thresholds: Sequence[float] = PROBABILITY_THRESHOLDS_DBZ) -> np.ndarray:
    """(M, ...) dBZ -> (len(thresholds), ...) float32: the share of members at or above each threshold.

    NaN (no data) in any member makes the pixel NaN. Monotone: a higher threshold never has a
    higher probability.
    """
    members_dbz = np.asarray(members_dbz, dtype=np.float32)
    missing = np.isnan(members_dbz).any(axis=0)
    out = np.stack([(members_dbz >= t).mean(axis=0, dtype=np.float32) for t in thresholds])
    out[:, missing] = np.nan
    return out


def ensemble_mean(members_dbz: np.ndarray) -> np.ndarray:
    """(M, ...) dBZ -> (...) float32: the members' mean reflectivity (dBZ averaged, as stored)."""
    return np.asarray(members_dbz, dtype=np.float32).mean(axis=0)
