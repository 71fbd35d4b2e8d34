"""model.data.evolving: a rain field set in motion with a known trend, and textured rain to set in motion."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_erosion

from model.data.evolving import ECHO_DBZ, NO_ECHO_DBZ, evolving_sequence, textured_rain
from model.data.synthetic import storm_frames


def interior_roughness(field: np.ndarray) -> float:
    """Mean dBZ gradient (dB per pixel) inside the echo, two pixels away from its edges."""
    inner = binary_erosion(field >= ECHO_DBZ, iterations=2)
    rows, cols = np.gradient(field.astype(np.float64))
    return float(np.hypot(rows, cols)[inner].mean())


def test_textured_rain_has_the_drawn_shares_and_is_seeded() -> None:
    for seed in range(8):
        field = textured_rain(np.random.default_rng(seed), 128)
        assert field.shape == (128, 128) and field.dtype == np.float32
        np.testing.assert_array_equal(field, textured_rain(np.random.default_rng(seed), 128))
        echo, at_20, at_30 = (float(np.mean(field >= t)) for t in (ECHO_DBZ, 20.0, 30.0))
        assert 0.24 <= echo <= 0.76
        assert 0.29 * echo <= at_20 <= 0.71 * echo
        assert 0.09 * at_20 <= at_30 <= 0.41 * at_20
        assert field.max() <= 55.0
        assert set(np.unique(field[field < ECHO_DBZ])) == {NO_ECHO_DBZ}  # no echo, or echo from 5 dBZ up


def test_textured_rain_is_rougher_than_the_synthetic_storms() -> None:
    # The point of it: a composite's rain varies from pixel to pixel inside the echo (about 1.6 dB
    # per pixel in the composite in tests/data/), the storms' stratiform rain far less.
    storms = [interior_roughness(storm_frames([0, 11, i, 2], 9, 192, 192)[-1]) for i in range(6)]
    rains = [interior_roughness(textured_rain(np.random.default_rng(i), 192)) for i in range(6)]
    assert np.median(rains) > 2 * np.median(storms)
    assert min(rains) > 1.0


def test_a_sequence_grows_one_region_and_decays_another() -> None:
    field = np.full((200, 200), 30.0)
    scans = evolving_sequence(field, 6, window=(50, 50, 100), velocity=(0.0, 0.0), rotation=0.0, shear=0.0,
                              growth_db_per_scan=1.0)
    assert scans.shape == (6, 100, 100)
    assert scans[5, 25, 25] > scans[0, 25, 25] + 4.0  # north-west grows
    assert scans[5, 75, 75] < scans[0, 75, 75] - 4.0  # south-east decays
