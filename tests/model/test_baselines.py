"""Baseline forecasters: registry, persistence, and extrapolation recovering a known translation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from model.baselines import estimate_motion, extrapolation, forecast_model_space, get_method, persistence, sprog
from model.io.units import DEFAULT_SCALING, IDENTITY_SCALING, dbz_to_model

# Echo moves down 1 pixel and right 2 pixels per frame.
SHIFT_ROWS, SHIFT_COLS, SIZE = 1, 2, 72


@pytest.fixture(scope="module")
def moving_field() -> tuple[np.ndarray, np.ndarray]:
    """Context (4, H, W) and truth (3, H, W) in dBZ: windows of one smooth field sliding over it."""
    rng = np.random.default_rng(0)
    field = gaussian_filter(rng.normal(size=(160, 160)), 4)
    field = (field - field.mean()) / field.std() * 15 + 15

    def frame(k: int) -> np.ndarray:
        top, left = 40 - k * SHIFT_ROWS, 40 - k * SHIFT_COLS
        return field[top : top + SIZE, left : left + SIZE]

    return np.stack([frame(k) for k in range(4)]), np.stack([frame(k) for k in range(4, 7)])


@pytest.mark.parametrize("name", ["persistence", "extrapolation", "sprog", "Persistence", "EXTRAPOLATION"])
def test_registry_resolves_names(name: str) -> None:
    expected = {"persistence": persistence, "extrapolation": extrapolation, "sprog": sprog}
    assert get_method(name) is expected[name.lower()]


def test_registry_rejects_bad_names() -> None:
    with pytest.raises(TypeError, match="must be a string"):
        get_method(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"valid names: \['extrapolation', 'persistence', 'sprog'\]"):
        get_method("steps")


def test_persistence_repeats_the_last_frame() -> None:
    frames = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    frames[1, 0, 0] = np.nan
    out = persistence(frames, lead_times=[6, 12, 18])
    assert out.shape == (3, 3, 4)
    np.testing.assert_array_equal(out, np.repeat(frames[1:], 3, axis=0))
    with pytest.raises(ValueError, match="exactly one"):
        persistence(frames, 2, lead_times=[6])
    with pytest.raises(ValueError, match="strictly increasing"):
        persistence(frames, lead_times=[12, 6])
    with pytest.raises(ValueError, match=r"\(T, H, W\)"):
        persistence(frames[0], 1)


def test_extrapolation_recovers_a_known_translation(moving_field: tuple[np.ndarray, np.ndarray]) -> None:
    context, truth = moving_field
    motion = estimate_motion(context[-3:], zerovalue=-10.0)
    interior = (slice(10, -10), slice(10, -10))
    assert motion[0][interior].mean() == pytest.approx(SHIFT_COLS, abs=0.05)
    assert motion[1][interior].mean() == pytest.approx(SHIFT_ROWS, abs=0.05)

    forecast = extrapolation(context, 3)
    assert forecast.shape == (3, SIZE, SIZE) and forecast.dtype == np.float32
    stale = persistence(context, 3)
    inner = (slice(None), slice(12, -12), slice(12, -12))  # away from the inflow boundary
    error_extrapolation = np.abs(forecast - truth)[inner].mean(axis=(1, 2))
    error_persistence = np.abs(stale - truth)[inner].mean(axis=(1, 2))
    assert np.all(error_extrapolation < 1.0)  # dBZ; the field spans about 90 dBZ
    assert np.all(error_extrapolation < 0.15 * error_persistence)
    np.testing.assert_allclose(extrapolation(context, lead_times=[6, 12, 18]), forecast)


def test_extrapolation_fills_no_data_and_inflow(moving_field: tuple[np.ndarray, np.ndarray]) -> None:
    context = moving_field[0].copy()
    context[-1, :5, :5] = np.nan
    forecast = extrapolation(context, 2, zerovalue=-12.0)
    assert np.all(np.isfinite(forecast))
    assert forecast.min() >= -12.0
    # Echo moves right and down, so the top-left corner receives air from outside: "no echo".
    assert np.all(forecast[1, :2, :4] == -12.0)
    with pytest.raises(ValueError, match="at least 2 frame"):
        extrapolation(context[:1], 1)


def test_model_space_variant_for_unitless_frames() -> None:
    # A textured 12 x 12 patch (corner features for Lucas-Kanade) moving 2 columns per frame.
    patch = np.random.default_rng(2).random((12, 12)).astype(np.float32)
    frames = np.zeros((2, 3, 1, 48, 48), dtype=np.float32)
    for t in range(3):
        frames[:, t, 0, 14:26, 8 + 2 * t : 20 + 2 * t] = patch
    out = forecast_model_space("persistence", frames, 2, IDENTITY_SCALING)
    assert out.shape == (2, 2, 1, 48, 48)
    np.testing.assert_array_equal(out[:, 0], frames[:, -1])
    moved = forecast_model_space("extrapolation", frames, 1, IDENTITY_SCALING)
    assert moved.min() >= 0.0 and moved.max() <= 1.0

    def centre_column(image: np.ndarray) -> float:
        return float((image.sum(axis=0) * np.arange(image.shape[1])).sum() / image.sum())

    assert centre_column(moved[0, 0, 0]) == pytest.approx(centre_column(frames[0, -1, 0]) + 2.0, abs=0.1)


def test_model_space_round_trip_for_radar_scaling() -> None:
    dbz = np.full((1, 2, 1, 16, 16), 25.0, dtype=np.float32)
    out = forecast_model_space("persistence", dbz_to_model(dbz), 3, DEFAULT_SCALING)
    np.testing.assert_allclose(out, dbz_to_model(np.full((1, 3, 1, 16, 16), 25.0)), atol=1e-6)


def test_sprog_runs_pysteps_on_the_baselines_motion_and_keeps_its_contract() -> None:
    from model.data.synthetic import storm_frames

    frames = storm_frames([0, 98, 1], 8, 64, 80)
    frames[0, :3, :3] = np.nan  # no data in an old scan must not reach pysteps
    out = sprog(frames[:6], 4)
    assert out.shape == (4, 64, 80) and out.dtype == np.float32 and np.isfinite(out).all()
    assert out.min() >= -10.0
    # The 'cdf' probability matching keeps the last scan's distribution of echo: the wet area at
    # 20 dBZ stays within a few pixels of the last scan's (extrapolation loses what leaves the grid).
    wet_last = int((frames[5] >= 20).sum())
    assert wet_last > 50
    assert abs(int((out[0] >= 20).sum()) - wet_last) <= 0.1 * wet_last
    with pytest.raises(ValueError, match="at least 3"):
        sprog(frames[:2], 2)
    with pytest.raises(ValueError, match="whole scan intervals"):
        sprog(frames[:6], lead_times=[3.0, 9.0])
