"""model.motion: pysteps' dense Lucas-Kanade motion, the same numbers in less time."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from model.baselines import _import_pysteps, estimate_motion
from model.data.evolving import evolving_sequence
from model.data.synthetic import storm_frames
from model.io.odim import read_odim
from model.motion import dense_lucaskanade, idw_grid, local_outliers

ODIM = Path(__file__).resolve().parents[1] / "data" / "RFO_example_h5_grid.h5"


def real_rain(size: int) -> np.ndarray:
    field = read_odim(ODIM).dbz[0]
    scans = evolving_sequence(field, 3, window=(300, 300, size), velocity=(1.0, 3.0), rotation=-0.006)
    return np.maximum(np.nan_to_num(scans.astype(np.float64), nan=-10.0), -10.0)


CASES = {
    "real rain 160 x 160": lambda: real_rain(160),
    "synthetic storm 96 x 96": lambda: storm_frames([0, 1, 2], 3, 96, 96).astype(np.float64),
    "non-square 64 x 80": lambda: storm_frames([0, 1, 3], 3, 64, 80).astype(np.float64),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("options", [{}, {"decl_scale": 6}, {"decl_scale": 1}])
def test_it_equals_pysteps_dense_lucaskanade(case: str, options: dict) -> None:
    pysteps = _import_pysteps()
    frames = CASES[case]()
    theirs = pysteps.motion.lucaskanade.dense_lucaskanade(frames, **options)
    ours = dense_lucaskanade(frames, **options)
    assert ours.shape == theirs.shape == (2, *frames.shape[1:])
    assert np.abs(theirs).max() > 0.5, "the case must move"
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)


def test_other_interpolations_are_pysteps_own() -> None:
    pysteps = _import_pysteps()
    frames = CASES["synthetic storm 96 x 96"]()
    options = {"interp_method": "idwinterp2d", "interp_kwargs": {"k": 5, "power": 1.0}}
    np.testing.assert_array_equal(dense_lucaskanade(frames, **options),
                                  pysteps.motion.lucaskanade.dense_lucaskanade(frames, **options))


def test_the_interpolation_keeps_pysteps_shortcuts_and_neighbours() -> None:
    from pysteps.utils.interpolate import idwinterp2d

    rng = np.random.default_rng(4)
    xs, ys = np.arange(30), np.arange(20)
    for n in (1, 7, 40):  # one vector, fewer than 20, more than 20
        xy = rng.uniform(0, 29, size=(n, 2))
        uv = rng.normal(size=(n, 2))
        np.testing.assert_allclose(idw_grid(xy, uv, 20, 30), idwinterp2d(xy, uv, xs, ys), rtol=0, atol=1e-12)
    same = np.full((5, 2), 1.5)
    np.testing.assert_array_equal(idw_grid(rng.uniform(0, 19, (5, 2)), same, 20, 30), np.full((2, 20, 30), 1.5))


def test_no_trackable_echo_is_no_motion() -> None:
    assert not estimate_motion(np.full((3, 32, 32), -10.0), zerovalue=-10.0).any()


def test_the_outlier_test_flags_what_pysteps_flags() -> None:
    from pysteps.utils.cleansing import detect_outliers

    rng = np.random.default_rng(7)
    for n, k in ((12, 30), (200, 30), (600, 30), (300, 8)):  # fewer vectors than neighbours, and more
        xy = rng.uniform(0, 255, size=(n, 2))
        uv = rng.normal(1.0, 0.3, size=(n, 2))
        uv[rng.choice(n, size=n // 20 + 1, replace=False)] += rng.normal(0, 3.0, size=(n // 20 + 1, 2))
        expected = detect_outliers(uv, 3.0, xy, k)
        assert expected.any(), "the case must hold outliers"
        np.testing.assert_array_equal(local_outliers(uv, xy, 3.0, k), expected)
    two = rng.normal(size=(2, 2))  # one neighbour each: pysteps' own path
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_array_equal(local_outliers(two, two, 3.0, 30), detect_outliers(two, 3.0, two, 30))


def test_a_singular_neighbourhood_is_no_outlier_as_in_pysteps() -> None:
    from pysteps.utils.cleansing import detect_outliers

    xy = np.column_stack((np.arange(10.0), np.zeros(10)))
    uv = np.ones((10, 2))  # every neighbourhood has zero covariance
    uv[3] = (5.0, 5.0)
    with pytest.warns(UserWarning, match="outlier detection"):
        expected = detect_outliers(uv, 3.0, xy, 4)
    with pytest.warns(UserWarning, match="outlier detection"):
        ours = local_outliers(uv, xy, 3.0, 4)
    np.testing.assert_array_equal(ours, expected)


@pytest.mark.parametrize("options", [{"k_outlier": 8, "nr_std_outlier": 2.0}, {"size_opening": 0},
                                     {"lk_kwargs": {"winsize": (30, 30)}}, {"verbose": False}])
def test_the_other_tracking_options_give_pysteps_field(options: dict) -> None:
    pysteps = _import_pysteps()
    frames = CASES["real rain 160 x 160"]()
    np.testing.assert_allclose(dense_lucaskanade(frames, **options),
                               pysteps.motion.lucaskanade.dense_lucaskanade(frames, **options), rtol=0, atol=1e-12)
