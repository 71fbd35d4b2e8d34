"""Exact window counts for FSS: the same fractions as scipy's box filter, and one truth shared by two forecasts
giving the very sums of two separate accumulations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import uniform_filter

from benchmarks.verification_baseline import baseline_accum
from model.verification.fractions import box_counts, product_sum
from model.verification.metrics import SkillScores

THRESHOLDS = (("20dBZ", 20.0), ("30dBZ", 30.0), ("40dBZ", 40.0))
SCALES = (1, 5, 15)
SUMS = ("hits", "misses", "false_alarms", "correct_negatives", "fss_fct_sq", "fss_fct_obs", "fss_obs_sq",
        "abs_error_sum", "sq_error_sum", "valid_pixels")


def fields(seed: int = 3, shape: tuple[int, ...] = (2, 4, 37, 53)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A truth with no-data pixels and two forecasts of it (one also with no data)."""
    rng = np.random.default_rng(seed)
    truth = rng.normal(25, 12, shape)
    truth[rng.random(shape) < 0.05] = np.nan
    near = truth + rng.normal(0, 5, shape)
    far = np.roll(truth, 4, axis=-1) + rng.normal(0, 8, shape)
    far[..., :3, :] = np.nan
    return truth, near, far


@pytest.mark.parametrize("scale", [2, 3, 4, 5, 8, 15, 16, 40])
def test_window_counts_are_scipys_box_filter_times_the_window(scale: int) -> None:
    events = fields()[0] >= 30.0
    fractions = uniform_filter(events.astype(np.float64), size=(1, 1, scale, scale), mode="constant", cval=0.0)
    counts = box_counts(events, (1, scale))[scale]
    assert np.array_equal(counts, np.rint(fractions * scale * scale))  # whole numbers, same windows
    np.testing.assert_allclose(counts / scale**2, fractions, rtol=0, atol=1e-12)


def test_product_sum_is_exact_on_both_paths() -> None:
    events = fields()[0] >= 20.0
    counts = box_counts(events, (15,))[15]
    exact = np.sum(counts.astype(np.int64) ** 2, axis=(0, 2, 3))
    assert np.array_equal(product_sum(counts, counts, 15), exact.astype(np.float64))
    assert np.array_equal(product_sum(counts, counts, 10**4), exact.astype(np.float64))  # the int64 path


def test_one_truth_shared_by_two_forecasts_gives_the_sums_of_two_accumulations() -> None:
    truth, near, far = fields()
    separate = [SkillScores.init(4, THRESHOLDS, SCALES) for _ in range(2)]
    separate[0].accum(truth, near)
    separate[1].accum(truth, far)
    shared = [SkillScores.init(4, THRESHOLDS, SCALES) for _ in range(2)]
    observed = shared[0].observe(truth)
    shared[0].accum_observed(observed, near)
    shared[1].accum_observed(observed, far)
    for one, other in zip(separate, shared, strict=True):
        for name in SUMS:
            assert np.array_equal(getattr(one, name), getattr(other, name)), name  # bit for bit


def test_the_sums_equal_the_float_box_filter_path_they_replace() -> None:
    truth, near, far = fields(seed=11)
    for forecast in (near, far):
        new = SkillScores.init(4, THRESHOLDS, SCALES)
        new.accum(truth, forecast)
        old = SkillScores.init(4, THRESHOLDS, SCALES)
        baseline_accum(old, truth, forecast)
        for name in ("hits", "misses", "false_alarms", "correct_negatives", "valid_pixels", "abs_error_sum",
                     "sq_error_sum"):
            assert np.array_equal(getattr(new, name), getattr(old, name)), name
        for name in ("fss_fct_sq", "fss_fct_obs", "fss_obs_sq"):
            np.testing.assert_allclose(getattr(new, name), getattr(old, name), rtol=1e-12, atol=0)
        assert np.array_equal(new.fss_fct_sq[..., 0], old.fss_fct_sq[..., 0])  # scale 1: counts, exact in both


def test_observed_events_of_other_thresholds_are_refused() -> None:
    truth, near, _ = fields()
    observed = SkillScores.init(4, THRESHOLDS[:2], SCALES).observe(truth)
    with pytest.raises(ValueError, match="other thresholds or scales"):
        SkillScores.init(4, THRESHOLDS, SCALES).accum_observed(observed, near)
