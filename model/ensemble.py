"""Ensemble nowcasts from one deterministic network pass: perturbed motion, intensities and scales.

Interface
---------
forecast_ensemble_dbz(model, dbz (T, H, W), steps, *, members, seed, settings, ...) -> (M, steps, H, W) dBZ
forecast_ensemble_frames(model, frames (B, T, C, H, W), steps, *, members, seed, ...) -> (B, M, steps, C, H, W)
exceedance_probability(members (M, ..., H, W) dBZ, thresholds) -> (N, ..., H, W) in [0, 1]
ensemble_mean(members) -> (..., H, W) dBZ
EnsembleSettings.for_checkpoint(path): the calibration shipped beside a checkpoint, or the defaults

Why this design (docs/ensemble.md has the measurements): a nowcast's error has two parts that
grow with lead time. Where the rain will be is uncertain because the motion field is; what the
rain will look like is uncertain because its small scales stop being predictable sooner than its
large ones (the observation behind STEPS' cascade). The network runs once; each member then

1. takes, where the forecast has echo, a calibrated share a_k of the newest scan's echo
   intensities (:func:`match_intensities`: the echo keeps its place and area, its values by rank
   move towards the newest scan's quantiles). A network trained on a squared error hedges by
   smoothing, so its cores fade with lead time; the members already carry that uncertainty in
   their offsets, and sharp members are what STEPS' members are;
2. keeps, at each spatial frequency f of the network's Lagrangian forecast L_k (its frames
   before they are carried forward), the share A_k(f) of L_k's Fourier component and replaces
   the rest by noise of the same power with random phase: member = A L + sqrt(1 - A^2) |L| W.
   A_k(f) = sum_j w_j(f) rho_j ** (c_k * k) over pysteps' Gaussian cascade levels j (weights
   w_j), where rho_j is how well level j of the newest scan correlates with the scan before it
   (both in the newest scan's frame) and c_k the calibrated decorrelation at lead k; the noise W
   is an AR(1) in time with rho_j per level, so a member's small cells evolve rather than flicker;
3. is matched to L_k's values inside L_k's area at or above ``rearranged_from_dbz`` (empirical
   CDF matching, as STEPS does, within that area only), so that it has exactly the forecast's
   area above that level and its intensities, with the cores inside it moved, as cells that die
   and are born inside the rain; every other pixel keeps L_k's value;
4. shifts its echo by its own draw of ``intensity_spread_db[k]`` dB (a domain-wide error of
   intensity; 0 as served: on validation storms it made every lead worse);
5. is carried forward with the slot's motion displaced by its own offset: one random vector per
   member, of standard deviation ``displacement_px[k]`` per axis at lead k (a spatially constant
   error of the motion's mean, as STEPS' velocity perturbations are), scaled for the case by how
   much its motion changed through the context (:func:`motion_change`, when the calibration has a
   ``predictability_exponent``): a steady flow keeps its members close. The offsets are centred
   (zero mean over the members, unit RMS), so the ensemble stays on the slot's motion. With
   ``follows_case="all"`` the same factor also scales the decorrelation of step 2 and the
   matching share of step 1 (:meth:`EnsembleSettings.case_amplitudes`): a steady flow keeps the
   network's structure and intensity trend too;
6. is clipped to the scaling's dBZ range ("no echo" at its floor).

``members == 1`` is the deterministic forecast, bit for bit. The members share one motion field
and one network pass. A seed fixes every random draw: the same ``(input, steps, members, seed,
settings)`` gives the same members.

The amplitudes per lead are calibrated on validation storms (``python -m
benchmarks.ensemble_calibration``) and shipped beside the checkpoint as ``<checkpoint
stem>.ensemble.json``; the offsets are in pixels of the grid they were fitted on (about 1 km,
6-minute scans).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from model.io.units import DEFAULT_SCALING, Scaling, dbz_to_model, model_to_dbz
from model.members import (  # noqa: F401  (re-exported: the ensemble's interface in one place)
    MAX_MEMBERS,
    PROBABILITY_THRESHOLDS_DBZ,
    check_members,
    ensemble_mean,
    exceedance_probability,
)

if TYPE_CHECKING:
    import torch

    from model.network.lagrangian import Motion
    from model.network.predrnn import PredRNN

log = logging.getLogger(__name__)

PERTURBATIONS = ("both", "motion", "scales")
FOLLOWS_CASE = ("offsets", "all")  # what the case's predictability factor scales
# How a case's predictability is read off its context: its motion change (motion_change) or the
# error of extrapolation inside the context itself (hindcast_error).
CASE_MEASURES = ("motion_change", "hindcast")
HINDCAST_STEPS = 3  # the hindcast's lead, scans: a 6-scan context still has 3 scans of motion before it
ECHO_DBZ = 0.0  # what counts as echo for intensity matching: below 0 dBZ no product shows or scores rain


@dataclass(frozen=True)
class EnsembleSettings:
    """How members are perturbed; per-lead tables hold their last value beyond their length."""

    displacement_px: tuple[float, ...] = (0.5, 1.0, 2.0, 3.0, 4.0, 6.0)  # std per axis of each member's offset, px
    decorrelation: tuple[float, ...] = (1.0,)  # c_k: 0 keeps the network's scales, 1 decays them as the scans do
    # The decorrelated scales rearrange only the pixels at or above this level: the area it bounds is kept.
    rearranged_from_dbz: float = 0.0
    cascade_levels: int = 6  # pysteps' Gaussian bandpass levels that rho is estimated on
    perturb: str = "both"  # both | motion | scales
    # Offsets follow the case's predictability: scaled by (m / reference) ** exponent, m the
    # context's case_measure and reference the calibration storms' median of it, clipped to
    # spread_clip. Exponent 0: fixed offsets.
    predictability_exponent: float = 0.0
    case_measure: str = "motion_change"
    reference_acceleration: float = 0.05  # px per scan^2: the reference for "motion_change"
    reference_hindcast_dbz: float = 2.0  # dBZ: the reference for "hindcast"
    spread_clip: tuple[float, float] = (0.25, 3.0)
    # "offsets": that factor s scales the offsets only. "all": it also scales the decorrelation
    # (c_k * s) and the intensity matching share (a_k * min(s, 1)), so that a steady case keeps the
    # network's structure and intensity trend as well as its position.
    follows_case: str = "offsets"
    # Offsets of zero mean and unit RMS over the members: the ensemble is centred on the slot's motion.
    centred_offsets: bool = True
    # a_k: the share of the network's echo intensities at lead k replaced by the newest scan's (by rank).
    intensity_matching: tuple[float, ...] = (0.0,)
    # s_k: std (dB) of each member's shift of its echo at lead k, one draw per member for all leads.
    intensity_spread_db: tuple[float, ...] = (0.0,)
    source: str = "defaults"  # where these numbers came from (a calibration run, or the defaults)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)  # calibration provenance, kept as read

    def __post_init__(self) -> None:
        if self.perturb not in PERTURBATIONS:
            raise ValueError(f"perturb must be one of {PERTURBATIONS}, got {self.perturb!r}")
        if not self.displacement_px or not self.decorrelation:
            raise ValueError("displacement_px and decorrelation need at least one lead each")
        if min(self.displacement_px) < 0 or min(self.decorrelation) < 0:
            raise ValueError("displacement_px and decorrelation must not be negative")
        if not 1 <= self.cascade_levels <= 12:
            raise ValueError(f"cascade_levels must be from 1 to 12, got {self.cascade_levels}")
        if self.follows_case not in FOLLOWS_CASE:
            raise ValueError(f"follows_case must be one of {FOLLOWS_CASE}, got {self.follows_case!r}")
        if self.case_measure not in CASE_MEASURES:
            raise ValueError(f"case_measure must be one of {CASE_MEASURES}, got {self.case_measure!r}")
        if self.predictability_exponent < 0 or self.reference_acceleration <= 0 or self.reference_hindcast_dbz <= 0:
            raise ValueError("predictability_exponent must not be negative and the references must be > 0")
        if not 0 < self.spread_clip[0] <= self.spread_clip[1]:
            raise ValueError(f"spread_clip must be (low, high) with 0 < low <= high, got {self.spread_clip}")
        if not self.intensity_matching or not all(0.0 <= a <= 1.0 for a in self.intensity_matching):
            raise ValueError(f"intensity_matching must be shares in [0, 1], got {self.intensity_matching}")
        if not self.intensity_spread_db or min(self.intensity_spread_db) < 0:
            raise ValueError(f"intensity_spread_db must be non-negative dB, got {self.intensity_spread_db}")

    @property
    def reference_measure(self) -> float:
        """The value of :attr:`case_measure` at which a case's factor is 1."""
        return self.reference_acceleration if self.case_measure == "motion_change" else self.reference_hindcast_dbz

    def measure_case(self, context_dbz: np.ndarray, velocity: np.ndarray | None, *, zerovalue: float
                     ) -> float | None:
        """This case's :attr:`case_measure` from its context (T, H, W) dBZ and the slot's velocity
        (2, H, W); None when the offsets do not follow the case or the context is too short."""
        if self.predictability_exponent == 0:
            return None
        if self.case_measure == "hindcast":
            return hindcast_error(context_dbz, zerovalue=zerovalue)
        return None if velocity is None else motion_change(context_dbz, velocity, zerovalue=zerovalue)

    def spread_scale(self, measure: float | None) -> float:
        """The factor on this case's offsets: 1 without adaptation or without a measured case."""
        if self.predictability_exponent == 0 or measure is None or not np.isfinite(measure):
            return 1.0
        ratio = max(float(measure), 1e-6) / self.reference_measure
        return float(np.clip(ratio ** self.predictability_exponent, *self.spread_clip))

    def case_factors(self, measure: float | None) -> tuple[float, float, float]:
        """This case's factors on the offsets, the decorrelation and the matching share."""
        scale = self.spread_scale(measure)
        return (scale, scale, min(scale, 1.0)) if self.follows_case == "all" else (scale, 1.0, 1.0)

    def case_amplitudes(self, steps: int, measure: float | None
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(steps,) each: this case's offset std (px), decorrelation c_k and matching share a_k."""
        offsets, decorrelation, share = self.case_factors(measure)
        return (self.displacement_at(steps) * offsets, self.decorrelation_at(steps) * decorrelation,
                self.intensity_matching_at(steps) * share)

    def displacement_at(self, steps: int) -> np.ndarray:
        """(steps,) px: the offset's standard deviation at leads 1..steps (zero if not perturbed)."""
        values = _table(self.displacement_px, steps)
        return values if self.perturb in ("both", "motion") else np.zeros_like(values)

    def decorrelation_at(self, steps: int) -> np.ndarray:
        """(steps,): c_k at leads 1..steps (zero if the scales are not perturbed)."""
        values = _table(self.decorrelation, steps)
        return values if self.perturb in ("both", "scales") else np.zeros_like(values)

    def intensity_matching_at(self, steps: int) -> np.ndarray:
        """(steps,): a_k at leads 1..steps."""
        return _table(self.intensity_matching, steps)

    def intensity_spread_at(self, steps: int) -> np.ndarray:
        """(steps,) dB: s_k, the std of the members' echo shift at leads 1..steps."""
        return _table(self.intensity_spread_db, steps)

    def describe(self) -> str:
        """The product's provenance line: "<source>: <kind>[, centred offsets][, ...]"."""
        parts = [self.perturb]
        if self.centred_offsets:
            parts.append("centred offsets")
        if self.perturb != "motion" and max(self.decorrelation) > 0 and self.rearranged_from_dbz != ECHO_DBZ:
            parts.append(f"scales rearranged from {self.rearranged_from_dbz:g} dBZ")
        low, high = min(self.intensity_matching), max(self.intensity_matching)
        if high > 0:
            parts.append(f"intensity matching {low:g}" if low == high else f"intensity matching {low:g}..{high:g}")
        low, high = min(self.intensity_spread_db), max(self.intensity_spread_db)
        if high > 0:
            parts.append(f"intensity spread {low:g} dB" if low == high else f"intensity spread {low:g}..{high:g} dB")
        if self.predictability_exponent > 0 and self.case_measure == "hindcast":
            parts.append("offsets follow the context's hindcast error")
        if self.follows_case == "all" and self.predictability_exponent > 0:
            parts.append("scales and intensities follow the case")
        return f"{self.source}: {', '.join(parts)}"

    def with_perturb(self, perturb: str) -> EnsembleSettings:
        return replace(self, perturb=perturb)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        extra = out.pop("extra")
        return {**extra, **out}

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str) -> EnsembleSettings:
        known = {"displacement_px", "decorrelation", "cascade_levels", "perturb", "predictability_exponent",
                 "reference_acceleration", "spread_clip", "centred_offsets", "intensity_matching",
                 "intensity_spread_db", "rearranged_from_dbz", "follows_case", "case_measure",
                 "reference_hindcast_dbz"}
        defaults = cls()
        # A calibration written before offsets were centred was fitted on uncentred ones: read it so.
        return cls(
            displacement_px=tuple(float(v) for v in data["displacement_px"]),
            decorrelation=tuple(float(v) for v in data["decorrelation"]),
            rearranged_from_dbz=float(data.get("rearranged_from_dbz", defaults.rearranged_from_dbz)),
            cascade_levels=int(data.get("cascade_levels", 6)), perturb=str(data.get("perturb", "both")),
            predictability_exponent=float(data.get("predictability_exponent", 0.0)),
            case_measure=str(data.get("case_measure", defaults.case_measure)),
            reference_acceleration=float(data.get("reference_acceleration", defaults.reference_acceleration)),
            reference_hindcast_dbz=float(data.get("reference_hindcast_dbz", defaults.reference_hindcast_dbz)),
            spread_clip=tuple(float(v) for v in data.get("spread_clip", defaults.spread_clip)),  # type: ignore[arg-type]
            centred_offsets=bool(data.get("centred_offsets", False)),
            follows_case=str(data.get("follows_case", defaults.follows_case)),
            intensity_matching=tuple(float(v) for v in data.get("intensity_matching", defaults.intensity_matching)),
            intensity_spread_db=tuple(float(v) for v in data.get("intensity_spread_db", defaults.intensity_spread_db)),
            source=source, extra={k: v for k, v in data.items() if k not in known | {"source"}})

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


# ----------------------------------------------------------------------------------- members


@dataclass(frozen=True)
class Perturbations:
    """One sample's randomness and what it is scaled by.

    offsets (M, 2): each member's motion offset, x then y, in units of the per-lead std; seed:
    the noise's generator (the noise is drawn lead by lead when applied, the same every time);
    rho (J,): each cascade level's lag-1 correlation; weights (J, H, W // 2 + 1): the levels'
    share of each frequency (they sum to 1); gains (M,): each member's echo shift, in units of
    the per-lead std (centred as the offsets are).
    """

    offsets: np.ndarray
    seed: int
    rho: np.ndarray
    weights: np.ndarray
    gains: np.ndarray


def level_correlations(previous_dbz: np.ndarray, newest_dbz: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(J,) correlation of each cascade level of two consecutive scans (in one frame), in [0.001, 0.999].

    The scans' FFTs are split by the level weights; the correlation of two real fields' level
    components is their cross-power over the square root of their powers (Parseval).
    """
    a = np.fft.rfft2(np.asarray(previous_dbz, dtype=np.float64))
    b = np.fft.rfft2(np.asarray(newest_dbz, dtype=np.float64))
    a[0, 0] = b[0, 0] = 0.0  # correlation of the anomalies: the mean says nothing of structure
    # rfft halves the spectrum: every column but the first (and the Nyquist one) stands for two.
    multiplicity = np.full(a.shape[1], 2.0)
    multiplicity[0] = 1.0
    if newest_dbz.shape[1] % 2 == 0:
        multiplicity[-1] = 1.0
    rho = []
    for w in weights:
        cross = float(np.sum(multiplicity * (w**2) * np.real(a * np.conj(b))))
        power_a = np.sum(multiplicity * (w**2) * np.abs(a) ** 2)
        power = float(np.sqrt(power_a * np.sum(multiplicity * (w**2) * np.abs(b) ** 2)))
        rho.append(cross / power if power > 0 else 0.0)
    return np.clip(np.asarray(rho), 0.001, 0.999)


def draw_perturbations(previous_dbz: np.ndarray, newest_dbz: np.ndarray, members: int, seed: int,
                       cascade_levels: int, centred: bool = True) -> Perturbations:
    """The randomness of :func:`perturb_members` for a seed, and the scans' level correlations.

    ``centred``: the offsets are shifted to a zero mean over the members and scaled to a unit RMS
    (per axis, on average). Independent draws of 20 members have a mean of about 0.22 standard
    deviations, which would move the whole ensemble (and its mean) off the slot's motion, the
    best estimate there is; centring keeps the members' shapes and removes that shift.
    """
    from model.baselines import _import_pysteps

    _import_pysteps()
    from pysteps.cascade.bandpass_filters import filter_gaussian

    newest = np.nan_to_num(np.asarray(newest_dbz, dtype=np.float64), nan=float(np.nanmin(newest_dbz)))
    previous = np.nan_to_num(np.asarray(previous_dbz, dtype=np.float64), nan=float(np.nanmin(newest)))
    weights = filter_gaussian(newest.shape, cascade_levels)["weights_2d"].astype(np.float32)
    rng = np.random.default_rng(seed)
    offsets = rng.standard_normal((members, 2))
    noise_seed = int(rng.integers(2**63))
    gains = rng.standard_normal(members)  # drawn last: the offsets and noise of a seed stay what they were
    if centred and members > 1:
        offsets -= offsets.mean(axis=0)
        offsets /= np.sqrt(np.mean(offsets**2))
        gains -= gains.mean()
        gains /= np.sqrt(np.mean(gains**2))
    return Perturbations(offsets, noise_seed, level_correlations(previous, newest, weights), weights, gains)


def apply_perturbations(lagrangian_dbz: np.ndarray, motion: Motion | None, draws: Perturbations,
                        displacement_px: np.ndarray, decorrelation: np.ndarray, floor_dbz: float, cap_dbz: float,
                        intensity_spread_db: np.ndarray | None = None, rearranged_from_dbz: float = ECHO_DBZ
                        ) -> np.ndarray:
    """(K, H, W) network forecast -> (M, K, H, W) float32 dBZ members, for (K,) amplitudes per lead.

    Member m at lead k: the field with its scales decorrelated by ``decorrelation[k]`` (module
    docstring) and matched to L_k's distribution inside L_k's area at or above ``rearranged_from_dbz``
    (the rest keeps L_k's values), its echo (at or above :data:`ECHO_DBZ`) shifted
    by ``intensity_spread_db[k] * gains[m]`` dB, read at ``x + D_k + displacement_px[k] *
    offsets[m]`` (D_k: the slot's motion, zero for an Eulerian model) and clipped to [floor, cap].
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
    offsets = torch.from_numpy(draws.offsets.astype(np.float32)) * to_grid  # (M, 2)
    weights = torch.from_numpy(draws.weights)  # (J, H, W // 2 + 1)
    rho = torch.from_numpy(draws.rho.astype(np.float32))
    ar1 = torch.einsum("j,jhw->hw", rho, weights)  # the noise's correlation from one lead to the next, per frequency
    innovation = torch.sqrt((1.0 - ar1**2).clamp_min(0.0))
    rng = np.random.default_rng(draws.seed)
    spread = np.zeros(steps) if intensity_spread_db is None else np.asarray(intensity_spread_db, dtype=np.float64)
    gains = torch.from_numpy(draws.gains.astype(np.float32)).view(members, 1, 1)
    noise = None
    out = np.empty((members, steps, h, w), dtype=np.float32)
    with torch.no_grad():
        for k in range(steps):
            # Unit complex white noise per frequency (the rfft of real white noise keeps the result real).
            white = torch.fft.rfft2(torch.from_numpy(rng.standard_normal((members, h, w), dtype=np.float32)))
            white /= np.sqrt(h * w)
            noise = white if noise is None else ar1 * noise + innovation * white
            field = torch.from_numpy(np.ascontiguousarray(lagrangian_dbz[k], dtype=np.float32))
            if decorrelation[k] > 0:
                spectrum = torch.fft.rfft2(field)
                keep = torch.einsum("j,jhw->hw", rho ** float(decorrelation[k] * (k + 1)), weights)
                mixed = keep * spectrum + torch.sqrt((1.0 - keep**2).clamp_min(0.0)) * spectrum.abs() * noise
                mixed = torch.fft.irfft2(mixed, s=(h, w)).reshape(members, -1)
                # Empirical CDF matching inside L_k's area at or above the level only: each member's
                # pixels there take L_k's values there in its own order, and the area stays L_k's.
                # That area is what the network and the offsets forecast well; matching over the
                # whole grid would move rain into dry pixels and redraw the area's edge.
                flat = field.reshape(-1)
                area = torch.nonzero(flat >= rearranged_from_dbz).flatten()
                members_k = flat.expand(members, -1).clone()
                if area.numel():
                    order = torch.argsort(mixed[:, area], dim=1)
                    values = torch.sort(flat[area]).values.expand(members, -1).contiguous()
                    rearranged = torch.empty_like(values)
                    rearranged.scatter_(1, order, values)
                    members_k[:, area] = rearranged
                members_k = members_k.reshape(members, h, w)
            else:
                members_k = field.expand(members, h, w)
            if spread[k] > 0:
                # Only the echo moves: a member's shift changes how intense its rain is, not where it is.
                members_k = torch.where(members_k >= ECHO_DBZ, members_k + float(spread[k]) * gains, members_k)
            grid = base_grid[k][None] + float(displacement_px[k]) * offsets.view(members, 1, 1, 2)
            inside = (grid.abs() <= 1.0).all(dim=-1)  # beyond the edge pixels' centres is "no echo"
            sampled = F.grid_sample((members_k - floor_dbz)[:, None], grid, mode="bilinear", padding_mode="zeros",
                                    align_corners=True)[:, 0]
            sampled = torch.where(inside, sampled, torch.zeros(()))
            out[:, k] = (sampled + floor_dbz).clamp_(floor_dbz, cap_dbz).numpy()
    return out


def match_intensities(frames_dbz: np.ndarray, reference_dbz: np.ndarray, shares: float | Sequence[float]
                      ) -> np.ndarray:
    """(..., H, W) dBZ: each frame with its echo's values moved its share of the way to ``reference_dbz``'s.

    ``shares`` is one share for every frame, or one per frame of the leading axes (a lead's
    a_k). In each frame the echo (pixels at or above :data:`ECHO_DBZ`) keeps its place and its
    area; its pixels, in the order of their values, take the reference echo's quantiles (empirical
    CDF matching of the echo only), and the result is ``(1 - share) * frame + share * matched``
    there. A network trained on a squared error hedges where it is unsure by smoothing: its cores
    fade with lead time. The members already carry where the rain may be (their offsets), so the
    fading is counted twice; matching gives them the intensities of the newest scan, as STEPS'
    members have, while the network still decides where the echo is and how large it is.
    """
    frames = np.asarray(frames_dbz, dtype=np.float32)
    flat = frames.reshape(-1, frames.shape[-2] * frames.shape[-1])
    per_frame = np.broadcast_to(np.asarray(shares, dtype=np.float64), (flat.shape[0],))
    if not np.any(per_frame > 0):
        return frames
    reference = np.asarray(reference_dbz, dtype=np.float64)
    target = np.sort(reference[np.isfinite(reference) & (reference >= ECHO_DBZ)])  # once for every frame
    if target.size == 0:
        return frames
    out = flat.copy()
    for row, share in zip(out, per_frame, strict=True):
        echo = np.flatnonzero(row >= ECHO_DBZ)
        if share <= 0 or echo.size == 0:
            continue
        order = echo[np.argsort(row[echo], kind="stable")]
        quantiles = (np.arange(order.size) + 0.5) / order.size * target.size - 0.5
        share = float(share)  # a Python float keeps the blend in float32, the frames' precision
        row[order] = (1.0 - share) * row[order] + share * np.interp(quantiles, np.arange(target.size), target)
    return out.reshape(frames.shape)


def velocity_change(context_dbz: np.ndarray, velocity: np.ndarray, *, zerovalue: float) -> np.ndarray | None:
    """(2, H, W) px per scan^2, x then y: how the motion changed through the context; None with too few scans.

    The slot's velocity (``velocity`` (2, H, W), from the newest scans) minus the velocity of the
    oldest scans of ``context_dbz`` (T, H, W), over the scans between them.
    """
    from model.baselines import estimate_motion
    from model.network.lagrangian import MOTION_FRAMES

    context = np.asarray(context_dbz, dtype=np.float32)
    gap = context.shape[0] - MOTION_FRAMES
    if gap < 1:
        return None
    older = estimate_motion(context[:MOTION_FRAMES], zerovalue=zerovalue)
    return (np.asarray(velocity, dtype=np.float64) - older) / gap


def rms_change(change: np.ndarray) -> float:
    """The RMS over the grid of a (2, H, W) velocity change: its size, whatever its direction."""
    return float(np.sqrt(np.mean(np.sum(np.asarray(change, dtype=np.float64) ** 2, axis=0))))


def mean_acceleration(change: np.ndarray) -> np.ndarray:
    """(2,) the mean over the grid of a (2, H, W) velocity change: the part that moves all the rain alike."""
    return np.asarray(change, dtype=np.float64).reshape(2, -1).mean(axis=1)


def motion_change(context_dbz: np.ndarray, velocity: np.ndarray, *, zerovalue: float) -> float | None:
    """How fast this case's motion changes, px per scan^2; None with too few scans to tell.

    The RMS over the grid of :func:`velocity_change`. Where the motion has been steady through the
    context, extrapolating it is reliable and the members stay close; where it has turned or sped
    up, they spread wider.
    """
    change = velocity_change(context_dbz, velocity, zerovalue=zerovalue)
    return None if change is None else rms_change(change)


def hindcast_error(context_dbz: np.ndarray, *, zerovalue: float) -> float | None:
    """How wrong extrapolation already was inside this context, dBZ; None with too few scans.

    Extrapolation (model.baselines.extrapolation, motion from 3 scans) from the context (T, H, W)
    without its newest :data:`HINDCAST_STEPS` scans, scored against the newest scan: the MAE over
    the grid, below 0 dBZ counted as 0 dBZ. Cases whose cells grow, die and are born between scans,
    or whose motion turns, score high, and their forecasts err more; a rain field carried steadily
    by its flow scores low. Unlike the motion change, it ranks storms by their forecast error too
    (benchmarks.predictability).
    """
    from model.baselines import extrapolation
    from model.network.lagrangian import MOTION_FRAMES

    context = np.asarray(context_dbz, dtype=np.float32)
    if context.shape[0] < MOTION_FRAMES + HINDCAST_STEPS:
        return None
    hindcast = extrapolation(context[:-HINDCAST_STEPS], HINDCAST_STEPS, zerovalue=zerovalue,
                             motion_frames=MOTION_FRAMES)[-1]
    error = np.abs(np.maximum(hindcast, ECHO_DBZ) - np.maximum(context[-1], ECHO_DBZ))
    return float(np.nanmean(error)) if np.isfinite(error).any() else None


def perturb_members(lagrangian_dbz: np.ndarray, motion: Motion | None, members: int, seed: int,
                    settings: EnsembleSettings, previous_dbz: np.ndarray, newest_dbz: np.ndarray,
                    floor_dbz: float, cap_dbz: float, measure: float | None = None) -> np.ndarray:
    """One sample's members from its network forecast.

    Parameters
    ----------
    lagrangian_dbz : (K, H, W) dBZ, the network's frames before they are carried forward
        (on the grid already for an Eulerian model, whose ``motion`` is None).
    motion : the sample's motion (its displacements D_k), shared by every member.
    previous_dbz, newest_dbz : (H, W) the two newest scans in the newest one's frame, whose
        levels' correlation says how fast each scale loses predictability; the newest scan's
        echo intensities are what ``settings.intensity_matching`` moves the forecast towards.
    floor_dbz, cap_dbz : the scaling's dBZ range; "no echo" is the floor.
    measure : the case's ``settings.case_measure`` (:meth:`EnsembleSettings.measure_case`),
        which scales the offsets (and,
        with ``settings.follows_case == "all"``, the decorrelation and matching share) when
        ``settings.predictability_exponent`` > 0; None keeps the calibrated amplitudes.

    Returns
    -------
    np.ndarray
        (members, K, H, W) float32 dBZ.
    """
    steps = lagrangian_dbz.shape[0]
    draws = draw_perturbations(previous_dbz, newest_dbz, members, seed, settings.cascade_levels,
                               settings.centred_offsets)
    displacement, decorrelation, shares = settings.case_amplitudes(steps, measure)
    matched = match_intensities(lagrangian_dbz, newest_dbz, shares)
    return apply_perturbations(matched, motion, draws, displacement, decorrelation,
                               floor_dbz, cap_dbz, settings.intensity_spread_at(steps), settings.rearranged_from_dbz)


def newest_pair(frames: np.ndarray, motion: Motion | None) -> tuple[np.ndarray, np.ndarray]:
    """(T, H, W) model-space scans -> the two newest, the older advected into the newest one's frame."""
    from model.network.lagrangian import align_context

    pair = frames[-2:] if frames.shape[0] >= 2 else np.repeat(frames[-1:], 2, axis=0)
    if motion is not None:
        pair = align_context(pair, motion, 0.0)
    return pair[0], pair[1]


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
        motion = None if motions is None else motions[i]
        previous, newest = (model_to_dbz(f, scaling) for f in newest_pair(frames[i, :, 0], motion))
        measure = settings.measure_case(model_to_dbz(frames[i, :, 0], scaling),
                                        None if motion is None else motion.velocity, zerovalue=floor)
        members_dbz = perturb_members(model_to_dbz(predicted[i, :, 0], scaling), motion, members, seed + i, settings,
                                      previous, newest, floor, cap, measure)
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
