"""Scores for predicted frames: the paper's protocol and nowcast skill, both accumulable.

Interface
---------
scores = PaperScores.init(n_frames)        # docs/model.md, Metrics, the protocol of thuml/predrnn-pytorch
scores.accum(truth, pred)                   # (B, T, C, H, W) in [0, 1]; any number of batches
scores = scores.merge(other)                # exact: batches and workers combine by addition
result = scores.compute()                   # {"per_frame": {mse, mae, ssim, psnr}, "mean": {...}, ...}

skill = SkillScores.init(n_leads)           # CSI, POD, FAR, bias, FSS per threshold, MAE and RMSE in dBZ
skill.accum(truth_dbz, pred_dbz)            # (B, L, H, W) reflectivity in dBZ, NaN = no data
observed = skill.observe(truth_dbz)         # the truth's share, once for several forecasts of it:
skill.accum_observed(observed, pred_dbz)    # the same sums as accum(truth_dbz, pred_dbz)
skill = skill.merge(other); skill.compute()

Both objects hold only sums (the pysteps ``detcatscores`` init -> accum -> merge -> compute
pattern), so scoring 3,000 sequences in one batch or in 3,000 batches gives the same numbers.

Paper protocol details (docs/model.md, Metrics): predictions are clipped to [0, 1]; MSE and MAE are
summed over the pixels of a frame and averaged over sequences ("MSE per frame", the paper's
48.4); SSIM and PSNR are computed on ``np.uint8(x * 255)`` (truncation, not rounding), SSIM with
scikit-image's default 7 x 7 uniform window and PSNR as ``20 log10(255) - 10 log10(mse)``, both per
sequence and averaged over sequences. A frame reproduced exactly has PSNR = +inf, as in the
reference (no guard). Every sequence counts: no batch is dropped. LPIPS needs AlexNet weights that
are not available offline, so it is reported as unavailable and never approximated.

Nowcast skill: an event is ``value >= threshold`` (as pysteps' FSS; pysteps' contingency table
uses ``>``, which differs only for values exactly on the threshold). Pixels where either field is
NaN are left out of the contingency table and of MAE / RMSE; for FSS they count as "no event",
as in pysteps. Rain-rate thresholds are applied as their Marshall-Palmer dBZ equivalents, which is
exact because the conversion is monotonic. The FSS sums come from exact integer window counts
(model/verification/fractions.py), so they are the correctly rounded values of the sums pysteps
builds with floating-point box filters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from skimage.metrics import structural_similarity

from model.io.units import rainrate_to_dbz
from model.verification.fractions import box_counts, product_sum

LPIPS_UNAVAILABLE = (
    "unavailable: LPIPS needs pretrained AlexNet weights, which are not shipped and are never "
    "downloaded at run time; it is not approximated"
)


def _check_pair(truth: np.ndarray, pred: np.ndarray, ndim: int, what: str) -> None:
    if truth.shape != pred.shape:
        raise ValueError(f"{what}: truth {truth.shape} and prediction {pred.shape} differ in shape")
    if truth.ndim != ndim:
        raise ValueError(f"{what}: expected {ndim}-D arrays, got shape {truth.shape}")


def to_uint8_frames(x: np.ndarray) -> np.ndarray:
    """[0, 1] -> uint8 by truncation, exactly ``np.uint8(x * 255)`` of the reference.

    The input is clipped to [0, 1] first so that out-of-range values cannot wrap around.
    """
    return (np.clip(x, 0.0, 1.0) * 255).astype(np.uint8)


def psnr_uint8(truth_u8: np.ndarray, pred_u8: np.ndarray) -> float:
    """PSNR of one frame (H, W, C) uint8: ``20 log10(255) - 10 log10(mean squared error)``.

    Returns +inf for identical frames (the reference has no guard for MSE = 0).
    """
    diff = truth_u8.astype(np.int32) - pred_u8.astype(np.int32)
    mse = float(np.sum(diff * diff, dtype=np.float64)) / diff.size
    with np.errstate(divide="ignore"):
        return float(20.0 * np.log10(255.0) - 10.0 * np.log10(mse))


def ssim_uint8(truth_u8: np.ndarray, pred_u8: np.ndarray) -> float:
    """SSIM of one frame (H, W, C) uint8, scikit-image defaults (7 x 7 uniform window, range 255)."""
    return float(structural_similarity(pred_u8, truth_u8, channel_axis=-1))


@dataclass
class PaperScores:
    """Sums for the paper's per-frame MSE, MAE, SSIM and PSNR (docs/model.md, Metrics).

    Attributes hold sums over sequences per predicted frame, shape (T,); ``count`` is the number
    of sequences. Build with :meth:`init`.
    """

    n_frames: int
    count: int = 0
    mse_sum: np.ndarray = field(default_factory=lambda: np.zeros(0))
    mae_sum: np.ndarray = field(default_factory=lambda: np.zeros(0))
    ssim_sum: np.ndarray = field(default_factory=lambda: np.zeros(0))
    psnr_sum: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @classmethod
    def init(cls, n_frames: int) -> PaperScores:
        if n_frames < 1:
            raise ValueError(f"n_frames must be at least 1, got {n_frames}")
        zeros = [np.zeros(n_frames, dtype=np.float64) for _ in range(4)]
        return cls(n_frames, 0, *zeros)

    def accum(self, truth: np.ndarray, pred: np.ndarray) -> None:
        """Add a batch of sequences.

        Parameters
        ----------
        truth, pred : np.ndarray
            (B, T, C, H, W) in model space [0, 1]; ``pred`` may be the raw (unclipped) network
            output and is clipped here. ``truth`` must lie in [0, 1].
        """
        truth = np.asarray(truth)
        pred = np.asarray(pred)
        _check_pair(truth, pred, 5, "paper scores")
        if truth.shape[1] != self.n_frames:
            raise ValueError(f"paper scores: expected {self.n_frames} frames, got {truth.shape[1]}")
        if truth.shape[-1] < 7 or truth.shape[-2] < 7:
            raise ValueError(f"paper scores: SSIM's 7 x 7 window needs 7 x 7 frames, got {truth.shape}")
        if not np.all(np.isfinite(truth)) or truth.min() < 0.0 or truth.max() > 1.0:
            raise ValueError("paper scores: truth must be finite and within [0, 1]")
        if not np.all(np.isfinite(pred)):
            raise ValueError("paper scores: prediction holds NaN or inf")
        truth64 = truth.astype(np.float64)
        pred64 = np.clip(pred.astype(np.float64), 0.0, 1.0)
        error = pred64 - truth64
        self.mse_sum += np.sum(error * error, axis=(0, 2, 3, 4))
        self.mae_sum += np.sum(np.abs(error), axis=(0, 2, 3, 4))
        # (B, T, C, H, W) -> (B, T, H, W, C): scikit-image wants the channel last.
        truth_u8 = np.moveaxis(to_uint8_frames(truth64), 2, -1)
        pred_u8 = np.moveaxis(to_uint8_frames(pred64), 2, -1)
        for b in range(truth.shape[0]):
            for t in range(self.n_frames):
                self.ssim_sum[t] += ssim_uint8(truth_u8[b, t], pred_u8[b, t])
                self.psnr_sum[t] += psnr_uint8(truth_u8[b, t], pred_u8[b, t])
        self.count += truth.shape[0]

    def merge(self, other: PaperScores) -> PaperScores:
        """A new object holding the sums of both (exact, order-independent up to float addition)."""
        if other.n_frames != self.n_frames:
            raise ValueError(f"cannot merge paper scores of {self.n_frames} and {other.n_frames} frames")
        return PaperScores(
            self.n_frames,
            self.count + other.count,
            self.mse_sum + other.mse_sum,
            self.mae_sum + other.mae_sum,
            self.ssim_sum + other.ssim_sum,
            self.psnr_sum + other.psnr_sum,
        )

    def compute(self) -> dict[str, Any]:
        """Per-frame means over sequences and their mean over frames.

        Returns
        -------
        dict
            ``protocol``, ``sequences``, ``per_frame`` (lists of length T for ``mse``, ``mae``
            [sum over a frame's pixels, [0, 1] units], ``ssim``, ``psnr`` [dB]), ``mean`` (the
            same keys, mean over frames), ``mse_per_sequence`` (sum over frames, as the reference
            prints it) and ``lpips`` (None) with ``lpips_note``.
        """
        if self.count == 0:
            raise ValueError("paper scores: no sequences were accumulated")
        per_frame = {
            "mse": self.mse_sum / self.count,
            "mae": self.mae_sum / self.count,
            "ssim": self.ssim_sum / self.count,
            "psnr": self.psnr_sum / self.count,
        }
        return {
            "protocol": "paper",
            "sequences": self.count,
            "frames": self.n_frames,
            "per_frame": {name: values.tolist() for name, values in per_frame.items()},
            "mean": {name: float(np.mean(values)) for name, values in per_frame.items()},
            "mse_per_sequence": float(np.sum(per_frame["mse"])),
            "lpips": None,
            "lpips_note": LPIPS_UNAVAILABLE,
        }


# Thresholds as (name, dBZ). Rain rates go through Marshall-Palmer (Z = 200 R^1.6).
DBZ_THRESHOLDS: tuple[float, ...] = (20.0, 30.0, 40.0)
RAIN_THRESHOLDS_MM_H: tuple[float, ...] = (0.5, 1.0, 5.0, 10.0)
FSS_SCALES: tuple[int, ...] = (1, 5, 15)  # window widths in pixels


def default_thresholds() -> tuple[tuple[str, float], ...]:
    """The skill thresholds: 20 / 30 / 40 dBZ and 0.5 / 1 / 5 / 10 mm/h, as (name, dBZ)."""
    dbz = [(f"{value:g}dBZ", value) for value in DBZ_THRESHOLDS]
    rain = [(f"{value:g}mm/h", float(rainrate_to_dbz(np.array(value)))) for value in RAIN_THRESHOLDS_MM_H]
    return tuple(dbz + rain)


@dataclass
class ObservedEvents:
    """The truth's share of a skill accumulation, computed once for any number of forecasts.

    ``truth`` (B, L, H, W) float64 dBZ and where it is finite; per threshold the events
    (``truth >= threshold``) and their window counts per scale above 1; ``obs_sq`` (L, K, S) the FSS
    sum ΣPo². Build with :meth:`of` (or :meth:`SkillScores.observe`).
    """

    thresholds: tuple[tuple[str, float], ...]
    scales: tuple[int, ...]
    truth: np.ndarray
    finite: np.ndarray
    events: list[np.ndarray]
    counts: list[dict[int, np.ndarray]]
    obs_sq: np.ndarray

    @classmethod
    def of(cls, truth_dbz: np.ndarray, thresholds: tuple[tuple[str, float], ...], scales: tuple[int, ...]
           ) -> ObservedEvents:
        truth = np.asarray(truth_dbz, dtype=np.float64)
        if truth.ndim != 4:
            raise ValueError(f"skill scores: expected 4-D arrays, got shape {truth.shape}")
        events = [truth >= threshold for _, threshold in thresholds]
        counts = [box_counts(event, scales) for event in events]
        obs_sq = np.zeros((truth.shape[1], len(thresholds), len(scales)), dtype=np.float64)
        for k, per_scale in enumerate(counts):
            for s, scale in enumerate(scales):
                obs_sq[:, k, s] = _window_sum(events[k], events[k], per_scale, per_scale, scale)
        return cls(tuple(thresholds), tuple(scales), truth, np.isfinite(truth), events, counts, obs_sq)


def _window_sum(a_events: np.ndarray, b_events: np.ndarray, a_counts: dict[int, np.ndarray],
                b_counts: dict[int, np.ndarray], scale: int) -> np.ndarray:
    """Σ Pa·Pb per lead over batch and pixels, for the fractions of two event fields in ``scale`` windows."""
    if scale == 1:  # the fractions are the 0 / 1 events: the sum counts the pixels where both hold
        both = a_events if a_events is b_events else a_events & b_events
        return np.count_nonzero(both, axis=(0, 2, 3)).astype(np.float64)
    # P = count / scale², so a product of two fractions is a product of counts / scale⁴.
    return product_sum(a_counts[scale], b_counts[scale], scale) / float(scale) ** 4


@dataclass
class SkillScores:
    """Contingency tables, FSS sums and error sums per lead time (and threshold, scale).

    Count arrays are (L, K) for L lead times and K thresholds; FSS sums (L, K, S) for S scales;
    error sums (L,). Build with :meth:`init`.
    """

    thresholds: tuple[tuple[str, float], ...]
    scales: tuple[int, ...]
    hits: np.ndarray
    misses: np.ndarray
    false_alarms: np.ndarray
    correct_negatives: np.ndarray
    fss_fct_sq: np.ndarray
    fss_fct_obs: np.ndarray
    fss_obs_sq: np.ndarray
    abs_error_sum: np.ndarray
    sq_error_sum: np.ndarray
    valid_pixels: np.ndarray
    count: int = 0

    @classmethod
    def init(
        cls,
        n_leads: int,
        thresholds: tuple[tuple[str, float], ...] | None = None,
        scales: tuple[int, ...] = FSS_SCALES,
    ) -> SkillScores:
        """Empty sums for ``n_leads`` lead times; thresholds as (name, dBZ) pairs."""
        if n_leads < 1:
            raise ValueError(f"n_leads must be at least 1, got {n_leads}")
        thresholds = default_thresholds() if thresholds is None else tuple(thresholds)
        if any(int(s) < 1 for s in scales):
            raise ValueError(f"FSS scales must be positive pixel counts, got {scales}")
        k, s = len(thresholds), len(scales)
        counts = [np.zeros((n_leads, k), dtype=np.int64) for _ in range(4)]
        fss = [np.zeros((n_leads, k, s), dtype=np.float64) for _ in range(3)]
        errors = [np.zeros(n_leads, dtype=np.float64) for _ in range(2)]
        return cls(thresholds, tuple(int(x) for x in scales), *counts, *fss, *errors,
                   np.zeros(n_leads, dtype=np.int64))

    @property
    def n_leads(self) -> int:
        return self.hits.shape[0]

    def observe(self, truth_dbz: np.ndarray) -> ObservedEvents:
        """What :meth:`accum` derives from the truth alone, to score several forecasts of one truth.

        The observed events and their window counts are most of the work of an accumulation; the
        model and the extrapolation forecast of a slot share one truth, so the sweep computes them
        once (``accum_observed``) and the numbers are the same as two ``accum`` calls.
        """
        return ObservedEvents.of(truth_dbz, self.thresholds, self.scales)

    def accum(self, truth_dbz: np.ndarray, pred_dbz: np.ndarray) -> None:
        """Add a batch.

        Parameters
        ----------
        truth_dbz, pred_dbz : np.ndarray
            (B, L, H, W) reflectivity in dBZ at lead times 1..L; NaN marks no data.
        """
        self.accum_observed(self.observe(truth_dbz), pred_dbz)

    def accum_observed(self, observed: ObservedEvents, pred_dbz: np.ndarray) -> None:
        """Add a batch whose truth went through :meth:`observe` (of these thresholds and scales)."""
        pred = np.asarray(pred_dbz, dtype=np.float64)
        truth = observed.truth
        _check_pair(truth, pred, 4, "skill scores")
        if truth.shape[1] != self.n_leads:
            raise ValueError(f"skill scores: expected {self.n_leads} lead times, got {truth.shape[1]}")
        if (observed.thresholds, observed.scales) != (self.thresholds, self.scales):
            raise ValueError("skill scores: the observed events were made for other thresholds or scales")
        axes = (0, 2, 3)
        valid = observed.finite & np.isfinite(pred)
        error = np.where(valid, pred - truth, 0.0)
        self.abs_error_sum += np.sum(np.abs(error), axis=axes)
        self.sq_error_sum += np.sum(error * error, axis=axes)
        valid_count = np.count_nonzero(valid, axis=axes)
        self.valid_pixels += valid_count
        for k, (_, threshold) in enumerate(self.thresholds):
            # NaN >= threshold is False: "no event", which is what FSS wants.
            obs_event = observed.events[k]
            fct_event = pred >= threshold
            # The four cells from three counts: misses = observed - hits, and so on (all on valid pixels).
            hits = np.count_nonzero(obs_event & fct_event & valid, axis=axes)
            observed_valid = np.count_nonzero(obs_event & valid, axis=axes)
            forecast_valid = np.count_nonzero(fct_event & valid, axis=axes)
            self.hits[:, k] += hits
            self.misses[:, k] += observed_valid - hits
            self.false_alarms[:, k] += forecast_valid - hits
            self.correct_negatives[:, k] += valid_count - observed_valid - forecast_valid + hits
            fct_counts = box_counts(fct_event, self.scales)
            obs_counts = observed.counts[k]
            for s, scale in enumerate(self.scales):
                self.fss_fct_sq[:, k, s] += _window_sum(fct_event, fct_event, fct_counts, fct_counts, scale)
                self.fss_fct_obs[:, k, s] += _window_sum(fct_event, obs_event, fct_counts, obs_counts, scale)
                self.fss_obs_sq[:, k, s] += observed.obs_sq[:, k, s]
        self.count += truth.shape[0]

    def merge(self, other: SkillScores) -> SkillScores:
        """A new object holding the sums of both; thresholds, scales and lead times must match."""
        if (self.thresholds, self.scales, self.n_leads) != (other.thresholds, other.scales, other.n_leads):
            raise ValueError("cannot merge skill scores with different thresholds, scales or lead times")
        return SkillScores(
            self.thresholds,
            self.scales,
            self.hits + other.hits,
            self.misses + other.misses,
            self.false_alarms + other.false_alarms,
            self.correct_negatives + other.correct_negatives,
            self.fss_fct_sq + other.fss_fct_sq,
            self.fss_fct_obs + other.fss_fct_obs,
            self.fss_obs_sq + other.fss_obs_sq,
            self.abs_error_sum + other.abs_error_sum,
            self.sq_error_sum + other.sq_error_sum,
            self.valid_pixels + other.valid_pixels,
            self.count + other.count,
        )

    def compute(self) -> dict[str, Any]:
        """Scores per lead time; undefined ratios (0 / 0) are NaN.

        Returns
        -------
        dict
            ``protocol``, ``sequences``, ``lead_steps`` [1..L], ``thresholds`` {name: dBZ},
            ``csi``, ``pod``, ``far``, ``bias`` {name: [L values]}, ``fss`` {name: {scale: [L]}},
            ``mae_dbz``, ``rmse_dbz`` [L values], and the raw ``contingency`` counts.
        """
        if self.count == 0:
            raise ValueError("skill scores: no sequences were accumulated")
        h = self.hits.astype(np.float64)
        m = self.misses.astype(np.float64)
        f = self.false_alarms.astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            csi = h / (h + m + f)
            pod = h / (h + m)
            far = f / (h + f)
            bias = (h + f) / (h + m)
            fss = 1.0 - (self.fss_fct_sq - 2.0 * self.fss_fct_obs + self.fss_obs_sq) / (
                self.fss_fct_sq + self.fss_obs_sq
            )
            mae = self.abs_error_sum / self.valid_pixels
            rmse = np.sqrt(self.sq_error_sum / self.valid_pixels)
        names = [name for name, _ in self.thresholds]

        def per_threshold(values: np.ndarray) -> dict[str, list[float]]:
            return {name: values[:, k].tolist() for k, name in enumerate(names)}

        return {
            "protocol": "nowcast",
            "sequences": self.count,
            "lead_steps": list(range(1, self.n_leads + 1)),
            "thresholds": {name: float(value) for name, value in self.thresholds},
            "csi": per_threshold(csi),
            "pod": per_threshold(pod),
            "far": per_threshold(far),
            "bias": per_threshold(bias),
            "fss": {
                name: {str(scale): fss[:, k, s].tolist() for s, scale in enumerate(self.scales)}
                for k, name in enumerate(names)
            },
            "mae_dbz": mae.tolist(),
            "rmse_dbz": rmse.tolist(),
            "contingency": {
                "hits": per_threshold(self.hits),
                "misses": per_threshold(self.misses),
                "false_alarms": per_threshold(self.false_alarms),
                "correct_negatives": per_threshold(self.correct_negatives),
            },
        }


def json_safe(value: Any) -> Any:
    """Replace NaN and inf by None, recursively, so the result is strict JSON."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
