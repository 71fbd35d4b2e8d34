"""Paper-protocol and nowcast-skill scores: hand-computed cases, scikit-image and pysteps agreement."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from model.verification.metrics import (
    LPIPS_UNAVAILABLE,
    PaperScores,
    SkillScores,
    default_thresholds,
    json_safe,
    to_uint8_frames,
)


def _block_frames(n_frames: int = 2, size: int = 64, shift: int = 0) -> np.ndarray:
    """(1, T, 1, H, W): a 4 x 4 block of ones at rows/cols 10..13, moved right by ``shift``."""
    frames = np.zeros((1, n_frames, 1, size, size), dtype=np.float32)
    frames[..., 10:14, 10 + shift : 14 + shift] = 1.0
    return frames


def test_identical_frames_score_perfectly() -> None:
    truth = _block_frames()
    scores = PaperScores.init(2)
    scores.accum(truth, truth.copy())
    result = scores.compute()
    assert result["per_frame"]["mse"] == [0.0, 0.0]
    assert result["per_frame"]["mae"] == [0.0, 0.0]
    assert result["per_frame"]["ssim"] == [1.0, 1.0]
    # The reference has no guard for MSE = 0: PSNR is +inf, written as null in strict JSON.
    assert result["per_frame"]["psnr"] == [math.inf, math.inf]
    assert json_safe(result)["mean"]["psnr"] is None
    assert result["sequences"] == 1
    assert result["lpips"] is None and result["lpips_note"] == LPIPS_UNAVAILABLE


def test_shifted_block_by_hand() -> None:
    truth, pred = _block_frames(), _block_frames(shift=2)
    scores = PaperScores.init(2)
    scores.accum(truth, pred)
    result = scores.compute()
    # Columns 10-11 are lost and 14-15 gained, 4 rows each: 16 pixels off by exactly 1.
    assert result["per_frame"]["mse"] == [16.0, 16.0]
    assert result["per_frame"]["mae"] == [16.0, 16.0]
    mse_uint8 = 16 * 255**2 / (64 * 64)
    expected_psnr = 20 * math.log10(255) - 10 * math.log10(mse_uint8)
    assert result["mean"]["psnr"] == pytest.approx(expected_psnr, abs=1e-12)
    expected_ssim = structural_similarity(
        (pred[0, 0, 0] * 255).astype(np.uint8), (truth[0, 0, 0] * 255).astype(np.uint8)
    )
    assert result["mean"]["ssim"] == pytest.approx(expected_ssim, abs=1e-12)
    assert result["mse_per_sequence"] == 32.0


def test_all_zero_prediction_sums_the_truth() -> None:
    rng = np.random.default_rng(3)
    truth = rng.random((3, 4, 1, 16, 16))
    scores = PaperScores.init(4)
    scores.accum(truth, np.zeros_like(truth))
    result = scores.compute()
    expected_mse = (truth**2).sum(axis=(2, 3, 4)).mean(axis=0)
    expected_mae = truth.sum(axis=(2, 3, 4)).mean(axis=0)
    np.testing.assert_allclose(result["per_frame"]["mse"], expected_mse, rtol=1e-12)
    np.testing.assert_allclose(result["per_frame"]["mae"], expected_mae, rtol=1e-12)


def test_predictions_are_clipped_and_uint8_truncates() -> None:
    truth = np.ones((1, 1, 1, 8, 8))
    pred = np.full_like(truth, 1.5)
    scores = PaperScores.init(1)
    scores.accum(truth, pred)
    assert scores.compute()["per_frame"]["mse"] == [0.0]
    # 0.999 * 255 = 254.745 truncates to 254, not 255: one grey level everywhere.
    assert to_uint8_frames(np.array([0.999, 1.0, 0.0039])).tolist() == [254, 255, 0]
    scores = PaperScores.init(1)
    scores.accum(truth, np.full_like(truth, 0.999))
    assert scores.compute()["per_frame"]["psnr"][0] == pytest.approx(20 * math.log10(255), abs=1e-12)


def test_agrees_with_scikit_image_called_directly() -> None:
    rng = np.random.default_rng(0)
    truth = rng.random((3, 2, 1, 32, 24))
    pred = np.clip(truth + rng.normal(0, 0.1, truth.shape), -0.2, 1.2)
    scores = PaperScores.init(2)
    scores.accum(truth, pred)
    result = scores.compute()
    for t in range(2):
        ssims, psnrs = [], []
        for b in range(3):
            gt = np.uint8(truth[b, t, 0] * 255)
            pd = np.uint8(np.clip(pred[b, t, 0], 0, 1) * 255)
            ssims.append(structural_similarity(pd, gt, win_size=7, data_range=255))
            psnrs.append(peak_signal_noise_ratio(gt, pd, data_range=255))
        assert result["per_frame"]["ssim"][t] == pytest.approx(np.mean(ssims), abs=1e-12)
        assert result["per_frame"]["psnr"][t] == pytest.approx(np.mean(psnrs), abs=1e-9)


def test_merge_equals_one_pass_and_counts_every_sequence() -> None:
    rng = np.random.default_rng(1)
    truth = rng.random((5, 3, 1, 16, 16))
    pred = rng.random((5, 3, 1, 16, 16))
    whole = PaperScores.init(3)
    whole.accum(truth, pred)
    first, second = PaperScores.init(3), PaperScores.init(3)
    first.accum(truth[:2], pred[:2])
    second.accum(truth[2:], pred[2:])
    merged = first.merge(second).compute()
    assert merged["sequences"] == 5
    for key in ("mse", "mae", "ssim", "psnr"):
        np.testing.assert_allclose(merged["per_frame"][key], whole.compute()["per_frame"][key], rtol=1e-12)
    json.dumps(json_safe(merged), allow_nan=False)


def test_paper_scores_reject_bad_input() -> None:
    scores = PaperScores.init(2)
    with pytest.raises(ValueError, match="differ in shape"):
        scores.accum(np.zeros((1, 2, 1, 8, 8)), np.zeros((1, 2, 1, 8, 9)))
    with pytest.raises(ValueError, match="expected 2 frames"):
        scores.accum(np.zeros((1, 3, 1, 8, 8)), np.zeros((1, 3, 1, 8, 8)))
    with pytest.raises(ValueError, match="within \\[0, 1\\]"):
        scores.accum(np.full((1, 2, 1, 8, 8), 2.0), np.zeros((1, 2, 1, 8, 8)))
    with pytest.raises(ValueError, match="no sequences"):
        scores.compute()


def test_default_thresholds_include_rain_rates_in_dbz() -> None:
    thresholds = dict(default_thresholds())
    assert list(thresholds)[:3] == ["20dBZ", "30dBZ", "40dBZ"]
    # Z = 200 R^1.6 at R = 1 mm/h is 200 mm^6 m^-3: 10 log10(200) dBZ.
    assert thresholds["1mm/h"] == pytest.approx(10 * math.log10(200), abs=1e-5)
    assert thresholds["10mm/h"] == pytest.approx(10 * math.log10(200 * 10**1.6), abs=1e-4)


def test_contingency_and_fss_agree_with_pysteps() -> None:
    from pysteps import verification

    rng = np.random.default_rng(7)
    truth = rng.normal(20, 12, (3, 2, 40, 48))
    pred = truth + rng.normal(0, 8, truth.shape)
    thresholds = (("20dBZ", 20.0), ("35dBZ", 35.0))
    skill = SkillScores.init(2, thresholds=thresholds, scales=(1, 5, 15))
    skill.accum(truth[:1], pred[:1])
    rest = SkillScores.init(2, thresholds=thresholds, scales=(1, 5, 15))
    rest.accum(truth[1:], pred[1:])
    result = skill.merge(rest).compute()
    for lead in range(2):
        for name, value in thresholds:
            table = verification.det_cat_fct_init(value)
            fss = {scale: verification.fss_init(value, scale) for scale in (1, 5, 15)}
            for b in range(3):
                verification.det_cat_fct_accum(table, pred[b, lead], truth[b, lead])
                for scale in fss:
                    verification.fss_accum(fss[scale], pred[b, lead], truth[b, lead])
            expected = verification.det_cat_fct_compute(table, ["CSI", "POD", "FAR", "BIAS"])
            assert result["csi"][name][lead] == pytest.approx(expected["CSI"], abs=1e-12)
            assert result["pod"][name][lead] == pytest.approx(expected["POD"], abs=1e-12)
            assert result["far"][name][lead] == pytest.approx(expected["FAR"], abs=1e-12)
            assert result["bias"][name][lead] == pytest.approx(expected["BIAS"], abs=1e-12)
            for scale in fss:
                assert result["fss"][name][str(scale)][lead] == pytest.approx(
                    verification.fss_compute(fss[scale]), abs=1e-12
                )
    errors = pred - truth
    np.testing.assert_allclose(result["mae_dbz"], np.abs(errors).mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(result["rmse_dbz"], np.sqrt((errors**2).mean(axis=(0, 2, 3))), rtol=1e-12)


def test_skill_by_hand_with_threshold_edge_and_no_data() -> None:
    truth = np.array([[[[20.0, 25.0], [10.0, np.nan]]]])  # (1, 1, 2, 2)
    pred = np.array([[[[19.0, 30.0], [20.0, 50.0]]]])
    skill = SkillScores.init(1, thresholds=(("20dBZ", 20.0),), scales=(1,))
    skill.accum(truth, pred)
    result = skill.compute()
    # 20 >= 20 is an event: a miss (19), a hit (30), a false alarm (20 over 10); NaN is left out.
    assert result["contingency"]["hits"]["20dBZ"] == [1]
    assert result["contingency"]["misses"]["20dBZ"] == [1]
    assert result["contingency"]["false_alarms"]["20dBZ"] == [1]
    assert result["contingency"]["correct_negatives"]["20dBZ"] == [0]
    assert result["csi"]["20dBZ"] == [pytest.approx(1 / 3)]
    assert result["bias"]["20dBZ"] == [1.0]
    assert result["mae_dbz"] == [pytest.approx((1 + 5 + 10) / 3)]
    assert result["rmse_dbz"] == [pytest.approx(math.sqrt((1 + 25 + 100) / 3))]


def test_skill_without_events_is_nan_not_an_error() -> None:
    skill = SkillScores.init(1, thresholds=(("40dBZ", 40.0),), scales=(1,))
    skill.accum(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 4, 4)))
    result = json_safe(skill.compute())
    assert result["csi"]["40dBZ"] == [None]
    assert result["far"]["40dBZ"] == [None]
    with pytest.raises(ValueError, match="different thresholds"):
        skill.merge(SkillScores.init(1, scales=(1,)))
