"""Probabilistic scores for ensemble nowcasts, accumulable like the deterministic ones.

Interface
---------
scores = EnsembleScores.init(n_leads, members)   # thresholds (name, dBZ), default 20 / 30 / 40 dBZ
scores.accum(truth_dbz, members_dbz)             # (B, L, H, W) and (B, M, L, H, W) dBZ; NaN = not scored
scores = scores.merge(other)                     # sums add: batches and workers combine
result = scores.compute()                        # CRPS, Brier, BSS, reliability, ROC area, spread-skill,
                                                 # rank histogram per lead time
brier_skill_against(result, reference)           # {threshold: [1 - BS / BS_ref per lead]}
crps_skill_against(result, reference)            # [1 - CRPS / CRPS_ref per lead]

Everything is in dBZ, and every value below :data:`FLOOR_DBZ` counts as the floor ("no echo"):
the data's no-echo value is -10 dBZ and the models leave a faint -10..0 dBZ residual in clear air
that no product shows, so scoring it would reward or punish noise nobody sees. A deterministic
forecast is a one-member ensemble: its CRPS is its MAE (of floored fields) and its Brier score is
that of 0 / 1 probabilities, so the numbers compare across every method.

The object holds sums only (the init -> accum -> merge -> compute pattern of
model/verification/metrics.py). The floating-point sums are kept scaled by powers of M (M² CRPS,
M (M - 1) variance, M² squared error of the mean) so that for fields on a dyadic grid (whole or
half dBZ, as radar products are quantised) every term is an exact float and a merge of two halves
equals one pass bit for bit. Reliability, Brier and ROC come from integer counts per probability
level k / M, exact for any input. The rank histogram breaks ties between the truth and members at
random with a seeded numpy Generator: the same accumulation order gives the same histogram; a
merge equals one pass where there are no ties.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

FLOOR_DBZ = 0.0  # below this a field counts as "no echo" (0 dBZ)
ENSEMBLE_THRESHOLDS: tuple[tuple[str, float], ...] = (("20dBZ", 20.0), ("30dBZ", 30.0), ("40dBZ", 40.0))


@dataclass
class EnsembleScores:
    """Sums for probabilistic scores per lead time (and threshold, probability level).

    Arrays: ``pixels`` (L,) scored pixels; ``crps_sum`` (L,) Σ M²·CRPS; ``variance_sum`` (L,)
    Σ M(M-1)·unbiased ensemble variance; ``mean_sq_error_sum`` (L,) Σ M²·(ensemble mean - truth)²;
    ``forecasts`` and ``observed`` (L, K, M + 1) pixels per probability level k / M and how many
    of them had the event; ``ranks`` (L, M + 1) rank histogram counts. Build with :meth:`init`.
    """

    members: int
    thresholds: tuple[tuple[str, float], ...]
    pixels: np.ndarray
    crps_sum: np.ndarray
    variance_sum: np.ndarray
    mean_sq_error_sum: np.ndarray
    forecasts: np.ndarray
    observed: np.ndarray
    ranks: np.ndarray
    seed: int = 0
    count: int = 0
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0), repr=False, compare=False)

    @classmethod
    def init(cls, n_leads: int, members: int, thresholds: tuple[tuple[str, float], ...] = ENSEMBLE_THRESHOLDS,
             seed: int = 0) -> EnsembleScores:
        """Empty sums for ``n_leads`` lead times of ``members``-member ensembles (1 = deterministic)."""
        if n_leads < 1:
            raise ValueError(f"n_leads must be at least 1, got {n_leads}")
        if isinstance(members, bool) or not isinstance(members, int | np.integer) or members < 1:
            raise ValueError(f"members must be a positive integer, got {members!r}")
        thresholds = tuple((str(name), float(value)) for name, value in thresholds)
        members, k = int(members), len(thresholds)
        return cls(
            members, thresholds,
            np.zeros(n_leads, dtype=np.int64),
            *[np.zeros(n_leads, dtype=np.float64) for _ in range(3)],
            np.zeros((n_leads, k, members + 1), dtype=np.int64),
            np.zeros((n_leads, k, members + 1), dtype=np.int64),
            np.zeros((n_leads, members + 1), dtype=np.int64),
            int(seed), 0, np.random.default_rng(int(seed)),
        )

    @property
    def n_leads(self) -> int:
        return self.pixels.shape[0]

    def accum(self, truth_dbz: np.ndarray, members_dbz: np.ndarray) -> None:
        """Add a batch.

        Parameters
        ----------
        truth_dbz : np.ndarray
            (B, L, H, W) observed reflectivity in dBZ at lead times 1..L; NaN = not scored.
        members_dbz : np.ndarray
            (B, M, L, H, W) the members in dBZ; a pixel where any member is NaN is not scored.

        Works on one (sample, lead) slice at a time: the temporaries are a few (M, pixels) arrays,
        so 20 members of 256 x 256 at 20 leads never hold more than a few copies of one slice.
        """
        truth = np.asarray(truth_dbz)
        ens = np.asarray(members_dbz)
        if truth.ndim != 4 or ens.ndim != 5:
            raise ValueError(f"ensemble scores: expected truth (B, L, H, W) and members (B, M, L, H, W), "
                             f"got {truth.shape} and {ens.shape}")
        b, m, leads = ens.shape[:3]
        if (b, leads, *ens.shape[3:]) != truth.shape:
            raise ValueError(f"ensemble scores: members {ens.shape} do not match the truth {truth.shape}")
        if m != self.members:
            raise ValueError(f"ensemble scores: made for {self.members} members, got {m}")
        if leads != self.n_leads:
            raise ValueError(f"ensemble scores: expected {self.n_leads} lead times, got {leads}")
        for i in range(b):
            for lead in range(leads):
                self._accum_slice(lead, truth[i, lead], ens[i, :, lead])
        self.count += b

    def _accum_slice(self, lead: int, truth: np.ndarray, ens: np.ndarray) -> None:
        """One (H, W) truth and its (M, H, W) members at one lead time."""
        m = self.members
        y = np.maximum(truth.astype(np.float64).ravel(), FLOOR_DBZ)  # NaN stays NaN
        x = np.maximum(ens.astype(np.float64).reshape(m, -1), FLOOR_DBZ)
        valid = np.isfinite(y) & np.all(np.isfinite(x), axis=0)
        if not valid.all():
            y, x = y[valid], x[:, valid]
        n = y.size
        if n == 0:
            return
        self.pixels[lead] += n
        x.sort(axis=0)  # in place: x is already a private float64 copy
        # CRPS = mean|X - y| - 1/2 mean|X - X'|; over sorted members Σ_ij |x_i - x_j| = 2 Σ_i (2i - M + 1) x_(i),
        # so M² CRPS = M Σ_i |x_i - y| - Σ_i (2i - M + 1) x_(i)   (i = 0..M-1).
        weights = (2.0 * np.arange(m) - m + 1.0)[:, None]
        self.crps_sum[lead] += m * np.sum(np.abs(x - y)) - np.sum(weights * x)
        total = np.sum(x, axis=0)
        # M (M - 1) · unbiased variance = M Σ x² - (Σ x)²; 0 for one member.
        if m > 1:
            self.variance_sum[lead] += np.sum(m * np.sum(x * x, axis=0) - total * total)
        error = total - m * y  # M · (ensemble mean - truth)
        self.mean_sq_error_sum[lead] += np.sum(error * error)
        for k, (_, threshold) in enumerate(self.thresholds):
            # Members sorted: the count at or above the threshold is M minus the count below.
            level = m - np.count_nonzero(x < threshold, axis=0)
            event = y >= threshold
            self.forecasts[lead, k] += np.bincount(level, minlength=m + 1)
            self.observed[lead, k] += np.bincount(level[event], minlength=m + 1)
        # Rank of the truth among the members (0..M); pixels where everything is "no echo" say nothing.
        scored = (y > FLOOR_DBZ) | (x[-1] > FLOOR_DBZ)
        below = np.count_nonzero(x[:, scored] < y[scored], axis=0)
        ties = np.count_nonzero(x[:, scored] == y[scored], axis=0)
        rank = below + self.rng.integers(0, ties + 1)
        self.ranks[lead] += np.bincount(rank, minlength=m + 1)

    def merge(self, other: EnsembleScores) -> EnsembleScores:
        """A new object holding the sums of both; members, thresholds and lead times must match."""
        if (self.members, self.thresholds, self.n_leads) != (other.members, other.thresholds, other.n_leads):
            raise ValueError("cannot merge ensemble scores with different members, thresholds or lead times")
        return EnsembleScores(
            self.members, self.thresholds,
            self.pixels + other.pixels,
            self.crps_sum + other.crps_sum,
            self.variance_sum + other.variance_sum,
            self.mean_sq_error_sum + other.mean_sq_error_sum,
            self.forecasts + other.forecasts,
            self.observed + other.observed,
            self.ranks + other.ranks,
            self.seed, self.count + other.count, self.rng,
        )

    def compute(self) -> dict[str, Any]:
        """Scores per lead time; undefined ones (no pixels, no events, 0 / 0) are NaN or None.

        Returns
        -------
        dict
            ``members``, ``sequences``, ``lead_steps`` [1..L], ``floor_dbz``, ``thresholds``
            {name: dBZ}, ``pixels`` [L];
            ``crps_dbz`` [L] (dBZ);
            ``brier`` {name: [L]} (probability², 0 best), ``base_rate`` {name: [L]} (observed
            frequency), ``brier_skill_climatology`` {name: [L]} (1 - BS / (o (1 - o)));
            ``roc_area`` {name: [L]} (0.5 no skill, 1 perfect);
            ``reliability`` {name: {``probability`` [M + 1] levels k / M, ``forecast_probability``,
            ``observed_frequency`` [L][M + 1] (None where a level is empty), ``forecasts``,
            ``observed`` [L][M + 1] counts}};
            ``spread_skill`` {``spread_dbz``, ``rmse_dbz``, ``ratio``} [L];
            ``rank_histogram`` {``frequency`` [L][M + 1] summing to 1, ``counts`` [L][M + 1]}.
        """
        if self.count == 0:
            raise ValueError("ensemble scores: no sequences were accumulated")
        m = self.members
        n = self.pixels.astype(np.float64)
        levels = np.arange(m + 1) / m  # the probability of level k
        with np.errstate(divide="ignore", invalid="ignore"):
            crps = self.crps_sum / (m * m * n)
            spread = np.sqrt(self.variance_sum / (m * max(m - 1, 1) * n))
            rmse = np.sqrt(self.mean_sq_error_sum / (m * m * n))
            ratio = np.sqrt((m + 1) / m) * spread / rmse
            fct = self.forecasts.astype(np.float64)
            obs = self.observed.astype(np.float64)
            # Σ (p - o)² over pixels from the counts per level: the n_k - o_k non-events at p_k, the o_k events.
            brier = np.sum((fct - obs) * levels**2 + obs * (1.0 - levels) ** 2, axis=-1) / n[:, None]
            base_rate = np.sum(obs, axis=-1) / n[:, None]
            bss = 1.0 - brier / (base_rate * (1.0 - base_rate))
            observed_frequency = obs / fct
            rank_frequency = self.ranks / np.sum(self.ranks, axis=-1, keepdims=True)
        roc = _roc_area(fct, obs)
        names = [name for name, _ in self.thresholds]

        def per_threshold(values: np.ndarray) -> dict[str, list[float]]:
            return {name: values[:, k].tolist() for k, name in enumerate(names)}

        reliability = {}
        for k, name in enumerate(names):
            empty = self.forecasts[:, k] == 0
            reliability[name] = {
                "probability": levels.tolist(),
                "forecast_probability": [[None if e else float(p) for p, e in zip(levels, row, strict=True)]
                                         for row in empty],
                "observed_frequency": [[None if e else float(f) for f, e in zip(freq, row, strict=True)]
                                       for freq, row in zip(observed_frequency[:, k], empty, strict=True)],
                "forecasts": self.forecasts[:, k].tolist(),
                "observed": self.observed[:, k].tolist(),
            }
        return {
            "members": m,
            "sequences": self.count,
            "lead_steps": list(range(1, self.n_leads + 1)),
            "floor_dbz": FLOOR_DBZ,
            "thresholds": dict(self.thresholds),
            "pixels": self.pixels.tolist(),
            "crps_dbz": crps.tolist(),
            "brier": per_threshold(brier),
            "base_rate": per_threshold(base_rate),
            "brier_skill_climatology": per_threshold(bss),
            "roc_area": per_threshold(roc),
            "reliability": reliability,
            "spread_skill": {"spread_dbz": spread.tolist(), "rmse_dbz": rmse.tolist(),
                             "ratio": (ratio if m > 1 else np.where(np.isfinite(rmse), 0.0, np.nan)).tolist()},
            "rank_histogram": {"frequency": rank_frequency.tolist(), "counts": self.ranks.tolist()},
        }


def _roc_area(forecasts: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """(L, K, M + 1) counts per level -> (L, K) area under the ROC curve (NaN without events or non-events).

    "Yes" when the probability is at least k / M, for k = M + 1 (never: (0, 0)) down to 0 (always:
    (1, 1)); the hit rate and false-alarm rate at each decision level, joined by trapezoids.
    """
    non_events = forecasts - observed
    # Cumulative from the top level down: the pixels forecast "yes" at decision level k.
    hits = np.cumsum(observed[..., ::-1], axis=-1)
    false_alarms = np.cumsum(non_events[..., ::-1], axis=-1)
    zero = np.zeros((*forecasts.shape[:-1], 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        hit_rate = np.concatenate([zero, hits], axis=-1) / hits[..., -1:]
        false_alarm_rate = np.concatenate([zero, false_alarms], axis=-1) / false_alarms[..., -1:]
    widths = np.diff(false_alarm_rate, axis=-1)
    return np.sum(widths * (hit_rate[..., 1:] + hit_rate[..., :-1]) / 2.0, axis=-1)


def brier_skill_against(result: dict[str, Any], reference: dict[str, Any]) -> dict[str, list[float | None]]:
    """1 - BS / BS_ref per threshold and lead time, for two :meth:`EnsembleScores.compute` results.

    None where either score is missing or the reference is perfect (BS_ref = 0).
    """
    out: dict[str, list[float | None]] = {}
    for name, scores in result["brier"].items():
        if name not in reference["brier"]:
            continue
        out[name] = _skill(scores, reference["brier"][name])
    return out


def crps_skill_against(result: dict[str, Any], reference: dict[str, Any]) -> list[float | None]:
    """1 - CRPS / CRPS_ref per lead time (None where undefined)."""
    return _skill(result["crps_dbz"], reference["crps_dbz"])


def _skill(scores: list[Any], reference: list[Any]) -> list[float | None]:
    if len(scores) != len(reference):
        raise ValueError(f"skill against a reference: {len(scores)} and {len(reference)} lead times differ")
    out: list[float | None] = []
    for value, ref in zip(scores, reference, strict=True):
        ok = value is not None and ref is not None and np.isfinite(value) and np.isfinite(ref) and ref != 0
        out.append(float(1.0 - value / ref) if ok else None)
    return out
