"""Scheduled sampling (PredRNN v1) and reverse scheduled sampling (PredRNN-V2) as pure functions.

A mask holds one Bernoulli draw per (sample, step) for steps t = 1 .. T-2 of a T-frame
sequence: shape (B, T-2), 1 = feed the ground-truth frame, 0 = feed the model's own prediction.
Both schedules use this one layout (the reference's RSS indexing, ``mask[:, t-1]``); for plain
scheduled sampling the encoder entries are always 1, which is the same as the reference's
decoder-only mask. See docs/model.md.

    reverse (RSS), iteration k, s1 <= k < s2:
        encoder P(GT) = 1 - 0.5 * exp(-(k - s1) / alpha)      (0.5 before s1, 1 after s2)
        decoder P(GT) = 0.5 - 0.5 * (k - s1) / (s2 - s1)      (0.5 before s1, 0 after s2)
    scheduled (SS):
        encoder P(GT) = 1; decoder P(GT) = start - k * rate for k < stop_iter, else 0
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SamplingConfig:
    kind: str = "rss"  # "rss" (V2) | "ss" (v1) | "none" (decoder always fed its own output)
    r_sampling_step_1: int = 25000  # RSS: s1, iterations
    r_sampling_step_2: int = 50000  # RSS: s2, iterations
    r_exp_alpha: float = 2500.0  # RSS: alpha of the encoder's exponential rise, iterations
    sampling_stop_iter: int = 50000  # SS: iteration from which the decoder never sees ground truth
    sampling_start_value: float = 1.0  # SS: decoder P(GT) at iteration 0
    sampling_changing_rate: float = 2e-5  # SS: decrease of decoder P(GT) per iteration

    def __post_init__(self) -> None:
        if self.kind not in ("rss", "ss", "none"):
            raise ValueError(f"sampling kind must be 'rss', 'ss' or 'none', not {self.kind!r}")
        if self.kind == "rss" and not 0 <= self.r_sampling_step_1 < self.r_sampling_step_2:
            raise ValueError("RSS needs 0 <= r_sampling_step_1 < r_sampling_step_2")


def rss_probabilities(iteration: int, config: SamplingConfig) -> tuple[float, float]:
    """(encoder P(GT), decoder P(GT)) of reverse scheduled sampling at ``iteration``."""
    s1, s2 = config.r_sampling_step_1, config.r_sampling_step_2
    if iteration < s1:
        return 0.5, 0.5
    if iteration < s2:
        encoder = 1.0 - 0.5 * math.exp(-float(iteration - s1) / config.r_exp_alpha)
        decoder = 0.5 - (0.5 / (s2 - s1)) * (iteration - s1)
        return encoder, decoder
    return 1.0, 0.0


def ss_probability(iteration: int, config: SamplingConfig) -> float:
    """Decoder P(GT) of scheduled sampling at ``iteration`` (the reference decrements before use)."""
    if iteration >= config.sampling_stop_iter:
        return 0.0
    return max(0.0, config.sampling_start_value - iteration * config.sampling_changing_rate)


def probabilities(iteration: int, config: SamplingConfig) -> tuple[float, float]:
    """(encoder P(GT), decoder P(GT)) for any schedule kind."""
    if config.kind == "rss":
        return rss_probabilities(iteration, config)
    if config.kind == "ss":
        return 1.0, ss_probability(iteration, config)
    return 1.0, 0.0


def sampling_mask(
    iteration: int,
    batch_size: int,
    input_length: int,
    total_length: int,
    config: SamplingConfig,
    rng: np.random.Generator,
) -> np.ndarray:
    """Draw the training mask (batch_size, total_length - 2), float32 of 0/1."""
    encoder_p, decoder_p = probabilities(iteration, config)
    n_encoder = input_length - 1
    n_decoder = total_length - input_length - 1
    draws = rng.random((batch_size, n_encoder + n_decoder))
    threshold = np.concatenate([np.full(n_encoder, encoder_p), np.full(n_decoder, decoder_p)])
    return (draws < threshold).astype(np.float32)


def test_mask(batch_size: int, input_length: int, total_length: int) -> np.ndarray:
    """Ground truth for the context, own predictions after it: (batch_size, total_length - 2)."""
    mask = np.zeros((batch_size, total_length - 2), dtype=np.float32)
    mask[:, : input_length - 1] = 1.0
    return mask
