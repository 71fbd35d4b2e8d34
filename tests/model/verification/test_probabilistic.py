"""EnsembleScores: exact CRPS, Brier, ROC, reliability counts, merge, rank histogram and spread-skill."""

from __future__ import annotations

import numpy as np
import pytest

from model.verification.probabilistic import (
    FLOOR_DBZ,
    EnsembleScores,
    brier_skill_against,
    crps_skill_against,
)


def _scores(truth: np.ndarray, members: np.ndarray, **kwargs) -> dict:
    scores = EnsembleScores.init(truth.shape[1], members.shape[1], **kwargs)
    scores.accum(truth, members)
    return scores.compute()


def test_crps_by_hand() -> None:
    # Members 0, 10, 20 and truth 5: the CDF steps 1/3 at 0, 10 and 20, so
    # ∫ (F - H)² = 5 (1/3)² + 5 (2/3)² + 10 (1/3)² = 35/9.
    truth = np.full((1, 1, 1, 1), 5.0)
    members = np.array([0.0, 10.0, 20.0]).reshape(1, 3, 1, 1, 1)
    assert _scores(truth, members)["crps_dbz"] == [pytest.approx(35 / 9, abs=1e-12)]
    # Two members 10 and 30, truth 30: mean |X - y| = 10, mean |X - X'| = 10, CRPS = 5.
    truth = np.full((1, 1, 1, 1), 30.0)
    members = np.array([30.0, 10.0]).reshape(1, 2, 1, 1, 1)
    assert _scores(truth, members)["crps_dbz"] == [5.0]


def test_floor_counts_below_zero_as_zero() -> None:
    # A member of -8 dBZ is "no echo": CRPS as for 0 dBZ; a truth of -10 is 0 dBZ too.
    truth = np.full((1, 1, 1, 1), -10.0)
    members = np.array([-8.0, 6.0]).reshape(1, 2, 1, 1, 1)
    # X = {0, 6}, y = 0: mean |X - y| = 3, 1/2 mean |X - X'| = 1/2 · 12/4 = 1.5.
    assert _scores(truth, members)["crps_dbz"] == [1.5]
    assert FLOOR_DBZ == 0.0


def test_crps_of_one_member_is_the_mae() -> None:
    rng = np.random.default_rng(1)
    truth = rng.uniform(-10, 60, (2, 3, 8, 8))
    pred = rng.uniform(-10, 60, (2, 1, 3, 8, 8))
    truth[0, 1, 2, 3] = np.nan  # not scored
    result = _scores(truth, pred)
    floored_t, floored_p = np.maximum(truth, 0.0), np.maximum(pred[:, 0], 0.0)
    mae = np.nanmean(np.abs(floored_p - floored_t), axis=(0, 2, 3))
    np.testing.assert_allclose(result["crps_dbz"], mae, rtol=1e-12)
    assert result["pixels"] == [128, 127, 128]
    assert result["spread_skill"]["spread_dbz"] == [0.0, 0.0, 0.0]
    assert result["spread_skill"]["ratio"] == [0.0, 0.0, 0.0]


def test_merge_of_two_halves_is_one_pass() -> None:
    rng = np.random.default_rng(2)
    # Whole-dBZ members and half-dBZ truth above the floor: every sum is exact and there are no rank ties.
    truth = rng.integers(1, 60, (4, 3, 16, 16)) + 0.5
    members = rng.integers(-10, 60, (4, 5, 3, 16, 16)).astype(np.float64)
    one = EnsembleScores.init(3, 5)
    one.accum(truth, members)
    first, second = EnsembleScores.init(3, 5), EnsembleScores.init(3, 5)
    first.accum(truth[:1], members[:1])
    second.accum(truth[1:], members[1:])
    merged = first.merge(second)
    assert merged.compute() == one.compute()
    assert merged.count == 4


def test_brier_perfect_and_reliability_counts() -> None:
    rng = np.random.default_rng(3)
    truth = rng.uniform(-10, 55, (3, 2, 12, 12))
    # Every member equals the truth: probabilities 0 / 1 that are always right.
    members = np.repeat(truth[:, None], 4, axis=1)
    result = _scores(truth, members)
    for name in ("20dBZ", "30dBZ", "40dBZ"):
        assert result["brier"][name] == [0.0, 0.0]
        assert result["roc_area"][name] == [1.0, 1.0]
        assert result["brier_skill_climatology"][name] == [1.0, 1.0]
        counts = np.array(result["reliability"][name]["forecasts"])
        assert counts.sum(axis=1).tolist() == [3 * 144, 3 * 144]
        assert counts[:, 1:4].sum() == 0  # only the levels 0 and 1
        assert result["reliability"][name]["observed_frequency"][0][0] == 0.0
        assert result["reliability"][name]["observed_frequency"][0][4] == 1.0
        assert result["reliability"][name]["forecast_probability"][0][1] is None
    assert result["crps_dbz"] == [0.0, 0.0]


def test_brier_by_hand_and_skill_against_a_reference() -> None:
    # Four pixels at 30 dBZ threshold: truth events [1, 0, 1, 0]; probabilities 2/2, 1/2, 0/2, 0/2.
    truth = np.array([35.0, 10.0, 31.0, 5.0]).reshape(1, 1, 1, 4)
    members = np.array([[40.0, 10.0, 20.0, 0.0], [33.0, 32.0, 25.0, 1.0]]).reshape(1, 2, 1, 1, 4)
    result = _scores(truth, members, thresholds=(("30dBZ", 30.0),))
    # (0² + 0.5² + 1² + 0²) / 4 = 0.3125; base rate 0.5, BSS = 1 - 0.3125 / 0.25.
    assert result["brier"]["30dBZ"] == [0.3125]
    assert result["base_rate"]["30dBZ"] == [0.5]
    assert result["brier_skill_climatology"]["30dBZ"] == [1.0 - 0.3125 / 0.25]
    assert result["reliability"]["30dBZ"]["forecasts"] == [[2, 1, 1]]
    assert result["reliability"]["30dBZ"]["observed"] == [[1, 0, 1]]
    # ROC: p >= 1: HR 1/2, FAR 0; p >= 1/2: HR 1/2, FAR 1/2; area 0.5·0.5 + 0.5·(0.5 + 1)/2 = 0.625.
    assert result["roc_area"]["30dBZ"] == [0.625]
    perfect = _scores(truth, np.repeat(truth[:, None], 2, axis=1), thresholds=(("30dBZ", 30.0),))
    assert brier_skill_against(perfect, result) == {"30dBZ": [1.0]}
    assert brier_skill_against(result, perfect) == {"30dBZ": [None]}  # against a perfect reference
    assert crps_skill_against(perfect, result) == [1.0]


def test_roc_of_a_constant_probability_is_one_half() -> None:
    rng = np.random.default_rng(4)
    truth = rng.uniform(0, 60, (2, 1, 10, 10))
    # Half the members always at 50 dBZ, half at 0: probability 1/2 everywhere.
    members = np.concatenate([np.full((2, 2, 1, 10, 10), 50.0), np.zeros((2, 2, 1, 10, 10))], axis=1)
    result = _scores(truth, members)
    assert result["roc_area"]["30dBZ"] == [0.5]
    assert result["reliability"]["30dBZ"]["forecasts"] == [[0, 0, 200, 0, 0]]


def test_rank_histogram_is_flat_for_an_exchangeable_truth_and_reproducible() -> None:
    rng = np.random.default_rng(5)
    m = 9
    centre = rng.uniform(10, 50, (4, 1, 1, 64, 64))
    draws = centre + rng.normal(0, 4, (4, m + 1, 1, 64, 64))
    truth, members = draws[:, 0], draws[:, 1:]
    result = _scores(truth, members)
    counts = np.array(result["rank_histogram"]["counts"][0], dtype=float)
    total = counts.sum()
    assert total == 4 * 64 * 64
    expected = total / (m + 1)
    chi2 = float(np.sum((counts - expected) ** 2 / expected))
    assert chi2 < 27.9  # the chi-square 0.999 quantile with 9 degrees of freedom
    assert sum(result["rank_histogram"]["frequency"][0]) == pytest.approx(1.0)
    # Ties (whole-dBZ fields) are broken by the seeded generator: the same seed gives the same histogram.
    rounded_t, rounded_m = np.round(truth), np.round(members)
    assert _scores(rounded_t, rounded_m, seed=3) == _scores(rounded_t, rounded_m, seed=3)


def test_rank_histogram_leaves_out_pixels_where_everything_is_no_echo() -> None:
    truth = np.array([-10.0, -3.0, 25.0]).reshape(1, 1, 1, 3)
    members = np.array([[-10.0, 4.0, 30.0], [-5.0, -10.0, 20.0]]).reshape(1, 2, 1, 1, 3)
    result = _scores(truth, members)
    # Pixel 0: all at the floor, left out. Pixel 1: truth 0 ties the member at 0, below the 4: rank 0 or 1.
    # Pixel 2: 25 between 20 and 30: rank 1.
    counts = result["rank_histogram"]["counts"][0]
    assert sum(counts) == 2 and counts[1] >= 1 and counts[2] == 0


def test_spread_skill_of_a_consistent_ensemble_is_one() -> None:
    rng = np.random.default_rng(6)
    m = 10
    centre = rng.uniform(20, 50, (3, 1, 2, 48, 48))
    draws = centre + rng.normal(0, 3, (3, m + 1, 2, 48, 48))
    result = _scores(draws[:, 0], draws[:, 1:])
    for ratio in result["spread_skill"]["ratio"]:
        assert 0.9 < ratio < 1.1
    assert result["spread_skill"]["spread_dbz"][0] == pytest.approx(3.0, rel=0.05)


def test_bad_shapes_are_refused() -> None:
    scores = EnsembleScores.init(2, 3)
    with pytest.raises(ValueError, match="made for 3 members"):
        scores.accum(np.zeros((1, 2, 4, 4)), np.zeros((1, 2, 2, 4, 4)))
    with pytest.raises(ValueError, match="lead times"):
        scores.accum(np.zeros((1, 1, 4, 4)), np.zeros((1, 3, 1, 4, 4)))
    with pytest.raises(ValueError, match="no sequences"):
        scores.compute()
    with pytest.raises(ValueError, match="cannot merge"):
        scores.merge(EnsembleScores.init(2, 4))
