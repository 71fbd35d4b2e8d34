"""``flops_per_step``, behind every GFLOP/s figure, against torch's own count of the convolutions
the network actually runs (``torch.utils.flop_counter``), and one value worked out on paper."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from model.network.predrnn import PredRNN, PredRNNConfig, flops_per_step

torch.set_num_threads(1)


@pytest.mark.parametrize(("version", "hidden", "kernel", "patch", "grid"), [
    ("v2", [8, 8], 3, 4, (32, 32)),
    ("v2", [16, 16, 16], 5, 2, (30, 22)),  # the grid is padded up to whole patches
    ("v1", [8, 8], 3, 4, (16, 24)),
])
def test_flops_per_step_matches_torch_counting_the_real_forward(version: str, hidden: list[int], kernel: int,
                                                                  patch: int, grid: tuple[int, int]) -> None:
    # One input frame: every recurrent step then decodes a frame, as a training step does.
    config = PredRNNConfig(version=version, num_hidden=hidden, filter_size=kernel, patch_size=patch,
                           input_length=1, output_length=3)
    model = PredRNN(config).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.forecast(torch.zeros(1, 1, config.channels, *grid), 3)
    assert flops_per_step(config, *grid) == counter.get_total_flops() / 3


def test_flops_per_step_on_paper() -> None:
    # One layer, 4 hidden channels, 3 x 3 kernels, patch 2 (4 frame channels), an 8 x 8 grid = 16 patches.
    # Per patch, multiply-adds: x -> 7 gates 9*4*28 = 1008, h -> 4 gates 9*4*16 = 576, m -> 3 gates
    # 9*4*12 = 432, (c, m) -> o 9*8*4 = 288, 1x1 (c, m) -> h 8*4 = 32, 1x1 h -> frame 4*4 = 16: 2352.
    config = PredRNNConfig(num_hidden=[4], filter_size=3, patch_size=2, input_length=1, output_length=1)
    assert flops_per_step(config, 8, 8) == 2 * 2352 * 16
