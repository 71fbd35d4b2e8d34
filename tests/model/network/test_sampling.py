import math

import numpy as np
import pytest

from model.network.sampling import (
    SamplingConfig,
    probabilities,
    rss_probabilities,
    sampling_mask,
    ss_probability,
)
from model.network.sampling import (
    test_mask as make_test_mask,
)

MNIST_RSS = SamplingConfig(kind="rss", r_sampling_step_1=25000, r_sampling_step_2=50000, r_exp_alpha=2500)


@pytest.mark.parametrize(
    "iteration,encoder,decoder",
    [
        (0, 0.5, 0.5),
        (24999, 0.5, 0.5),
        (25000, 0.5, 0.5),  # s1: exp(0) = 1 -> 1 - 0.5; linear part starts at 0.5
        (37500, 1.0 - 0.5 * math.exp(-12500 / 2500), 0.25),  # (s1 + s2) / 2
        (50000, 1.0, 0.0),  # s2
        (80000, 1.0, 0.0),
    ],
)
def test_rss_schedule_at_chosen_iterations(iteration, encoder, decoder):
    got_encoder, got_decoder = rss_probabilities(iteration, MNIST_RSS)
    assert got_encoder == pytest.approx(encoder, abs=1e-12)
    assert got_decoder == pytest.approx(decoder, abs=1e-12)


@pytest.mark.parametrize("iteration,eta", [(0, 1.0), (1, 1.0 - 2e-5), (25000, 0.5), (49999, 2e-5), (50000, 0.0)])
def test_ss_schedule_at_chosen_iterations(iteration, eta):
    config = SamplingConfig(kind="ss")
    assert ss_probability(iteration, config) == pytest.approx(eta, abs=1e-9)
    assert probabilities(iteration, config) == pytest.approx((1.0, eta), abs=1e-9)


def test_mask_layout_and_encoder_decoder_split():
    rng = np.random.default_rng(0)
    mask = sampling_mask(60000, 4, 10, 20, MNIST_RSS, rng)  # after s2: encoder GT, decoder own output
    assert mask.shape == (4, 18) and mask.dtype == np.float32
    assert (mask[:, :9] == 1).all() and (mask[:, 9:] == 0).all()
    np.testing.assert_array_equal(mask, make_test_mask(4, 10, 20))


def test_ss_mask_keeps_encoder_on_ground_truth_and_draws_decoder():
    rng = np.random.default_rng(1)
    mask = sampling_mask(25000, 4000, 10, 20, SamplingConfig(kind="ss"), rng)
    assert (mask[:, :9] == 1).all()
    assert mask[:, 9:].mean() == pytest.approx(0.5, abs=0.01)


def test_rss_mask_draw_frequencies_follow_the_schedule():
    rng = np.random.default_rng(2)
    mask = sampling_mask(0, 4000, 10, 20, MNIST_RSS, rng)
    assert mask[:, :9].mean() == pytest.approx(0.5, abs=0.01)  # early on, even context frames are replaced
    assert mask[:, 9:].mean() == pytest.approx(0.5, abs=0.01)


def test_mask_is_a_pure_function_of_the_generator_state():
    a = sampling_mask(100, 3, 10, 20, MNIST_RSS, np.random.default_rng(7))
    b = sampling_mask(100, 3, 10, 20, MNIST_RSS, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)


def test_bad_kind_is_rejected():
    with pytest.raises(ValueError, match="sampling kind"):
        SamplingConfig(kind="reverse")
