"""The Lagrangian frame: pysteps' displacements, exact extrapolation when untrained, a differentiable twin."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import map_coordinates

from model.baselines import _import_pysteps, estimate_motion, extrapolation
from model.checkpoint import load_checkpoint, save_checkpoint
from model.data.synthetic import storm_frames
from model.forecast import forecast_dbz
from model.network.lagrangian import (
    Motion,
    advect_forward,
    advect_torch,
    align_context,
    displacements,
    motion_of,
)
from model.network.predrnn import PredRNN, PredRNNConfig

NO_ECHO = -10.0


def sample(field: np.ndarray, displacement: np.ndarray, outval: float) -> np.ndarray:
    """The reference: field (H, W) read at x + displacement (2, H, W) as pysteps reads it (scipy, float64)."""
    h, w = field.shape
    rows, cols = np.mgrid[0:h, 0:w]
    return map_coordinates(np.asarray(field, dtype=np.float64), [rows + displacement[1], cols + displacement[0]],
                           mode="constant", cval=outval, order=1, prefilter=False).astype(np.float32)


@pytest.fixture(scope="module")
def storm() -> np.ndarray:
    return storm_frames([0, 99, 3], 16, 72, 100)  # not square, not a multiple of the patch size


def test_displacements_reproduce_pysteps_extrapolation(storm: np.ndarray) -> None:
    pysteps = _import_pysteps()
    velocity = estimate_motion(storm[:6][-3:], zerovalue=NO_ECHO)
    last = np.maximum(storm[5].astype(np.float64), NO_ECHO)
    expected = pysteps.extrapolation.semilagrangian.extrapolate(last, velocity, 8, outval=NO_ECHO)
    d = displacements(velocity, 8)
    ours = np.stack([sample(last, d[k], NO_ECHO) for k in range(8)])
    np.testing.assert_allclose(ours, expected, atol=1e-4)
    # The displacement itself, against pysteps' own after 8 intervals.
    _, final = pysteps.extrapolation.semilagrangian.extrapolate(None, velocity, 8, return_displacement=True)
    np.testing.assert_allclose(d[-1], final, atol=1e-5)


def test_untrained_lagrangian_model_is_extrapolation(storm: np.ndarray) -> None:
    # The residual head starts at zero: the forecast is the newest scan advected, i.e. extrapolation.
    config = PredRNNConfig(num_hidden=[8, 8], frame="lagrangian", input_length=4, output_length=6)
    model = PredRNN(config).eval()
    assert torch.count_nonzero(model.conv_last.weight) == 0
    ours = forecast_dbz(model, storm[:8], 6)
    baseline = np.clip(extrapolation(storm[:8], 6), NO_ECHO, 60.0)
    assert ours.shape == (6, 72, 100)
    np.testing.assert_allclose(ours, baseline, atol=1e-3)


def test_an_eulerian_model_ignores_the_motion(storm: np.ndarray) -> None:
    torch.manual_seed(0)
    model = PredRNN(PredRNNConfig(num_hidden=[8, 8])).eval()
    assert not model.residual and model.config.frame == "eulerian"
    context = torch.from_numpy(((np.clip(storm[:5], -10, 60) + 10) / 70)[None, :, None].astype(np.float32))
    expected = model.forecast(context, 3)[0, :, 0].numpy() * 70 - 10
    np.testing.assert_allclose(forecast_dbz(model, storm[:5], 3), np.clip(expected, -10, 60), atol=1e-4)


def test_alignment_moves_each_scan_to_the_reference_time() -> None:
    # A block moving one pixel right per scan: aligned, every context scan sits where the newest is.
    scans = np.full((4, 20, 30), NO_ECHO, dtype=np.float32)
    for t in range(4):
        scans[t, 8:12, 5 + t:9 + t] = 40.0
    velocity = np.zeros((2, 20, 30))
    velocity[0] = 1.0
    motion = Motion(velocity.astype(np.float32), displacements(velocity, 3))
    aligned = align_context(scans, motion, NO_ECHO)
    for t in range(4):
        np.testing.assert_allclose(aligned[t], scans[-1], atol=1e-4)  # float32 sampling
    forward = advect_forward(scans[-1:].repeat(2, 0), motion, NO_ECHO)
    np.testing.assert_allclose(forward[1, 8:12, 10:14], 40.0)


def test_torch_advection_matches_scipy_and_masks_outside_sources(storm: np.ndarray) -> None:
    motion = motion_of(storm[:6], 10, zerovalue=NO_ECHO)
    frames = storm[6:16].astype(np.float32)
    expected = np.stack([sample(frames[k], motion.displacements[k], NO_ECHO) for k in range(10)])
    ours, inside = advect_torch(torch.from_numpy(frames)[None], torch.from_numpy(motion.displacements)[None], NO_ECHO)
    np.testing.assert_allclose(ours[0].numpy(), expected, atol=1e-3)
    # Where the source is outside the domain scipy gives "no echo"; the mask says so.
    assert not inside.all()
    np.testing.assert_array_equal(ours[0].numpy()[~inside[0].numpy()], NO_ECHO)


def test_gradients_flow_through_the_advection() -> None:
    frames = torch.rand(1, 2, 12, 12, requires_grad=True)
    d = torch.full((1, 2, 2, 12, 12), -0.5)
    out, inside = advect_torch(frames, d)
    out[inside].sum().backward()
    assert frames.grad is not None and frames.grad.abs().sum() > 0


def test_frame_is_validated_and_travels_in_the_checkpoint(tmp_path) -> None:
    with pytest.raises(ValueError, match="frame must be one of"):
        PredRNNConfig(frame="rotating")
    model = PredRNN(PredRNNConfig(num_hidden=[4, 4], frame="lagrangian"))
    save_checkpoint(tmp_path / "lag.pt", model)
    loaded, _ = load_checkpoint(tmp_path / "lag.pt")
    assert loaded.config.frame == "lagrangian" and loaded.residual
    # A checkpoint written before the field existed has no "frame": it is Eulerian.
    values = PredRNNConfig(num_hidden=[4, 4]).to_dict()
    del values["frame"]
    assert PredRNNConfig.from_dict(values).frame == "eulerian"


def test_the_trend_is_the_growth_per_scan_where_every_aligned_scan_has_echo() -> None:
    from model.network.lagrangian import TREND_LIMIT_DB, trend

    scans = np.full((5, 40, 40), NO_ECHO, dtype=np.float32)
    scans[:, 5:35, 5:20] = 20.0 + 0.8 * np.arange(5)[:, None, None]  # grows 0.8 dB per scan
    scans[:, 5:35, 20:35] = 30.0 - 0.5 * np.arange(5)[:, None, None]  # decays 0.5 dB per scan
    scans[:, 38, 38] = 10.0 + 9.0 * np.arange(5)  # steeper than any growth: clipped
    out = trend(torch.from_numpy(scans)[None], 2.0)
    edge = scans.copy()
    edge[-1, 1:3, 1:3] = 40.0  # echo in the newest scan only: an edge that moved, not growth
    assert torch.equal(trend(torch.from_numpy(edge)[None], 2.0), out)
    assert out.shape == (1, 1, 40, 40)
    field = out[0, 0].numpy()
    np.testing.assert_allclose(field[11:29, 11:14], 0.8, atol=1e-5)  # 3 sigma inside: smoothing keeps it
    np.testing.assert_allclose(field[11:29, 26:29], -0.5, atol=1e-5)
    assert 0.0 < field[38, 38] <= TREND_LIMIT_DB
    assert torch.count_nonzero(trend(torch.from_numpy(scans[:1])[None], 2.0)) == 0  # one scan: no trend


def test_a_wide_trend_keeps_the_growth_of_a_rain_area_and_averages_a_cells_away() -> None:
    from model.network.lagrangian import trend

    scans = np.full((6, 100, 100), NO_ECHO, dtype=np.float32)
    scans[:, 5:95, 5:95] = 25.0 + 0.6 * np.arange(6)[:, None, None]  # a rain area growing 0.6 dB per scan
    scans[:, 49:52, 49:52] = 25.0 + 3.0 * np.arange(6)[:, None, None]  # a cell in it growing 3 dB per scan
    narrow, wide = (trend(torch.from_numpy(scans)[None], sigma)[0, 0].numpy() for sigma in (2.0, 8.0))
    assert narrow[50, 50] > 1.2 and abs(wide[50, 50] - 0.6) < 0.15  # the cell shows at 2 px only
    np.testing.assert_allclose(wide[45:55, 30:35], 0.6, atol=0.02)  # the area's growth stays
    with pytest.raises(ValueError, match="trend_sigma_px"):
        PredRNNConfig(frame="lagrangian", trend_input=True, trend_sigma_px=0.0)


def test_a_trend_model_reads_the_trend_and_refuses_to_run_without_it(storm: np.ndarray) -> None:
    with pytest.raises(ValueError, match="trend_input needs frame"):
        PredRNNConfig(trend_input=True)
    torch.manual_seed(0)
    config = PredRNNConfig(num_hidden=[8, 8], frame="lagrangian", input_length=4, output_length=3, trend_input=True)
    model = PredRNN(config).eval()
    assert model.cell_list[0].conv_x[0].weight.shape[1] == 2 * 16  # frame and trend patches
    torch.nn.init.normal_(model.conv_last.weight, std=0.1)
    context = torch.rand(1, 4, 1, 16, 20)
    with pytest.raises(ValueError, match="1 condition channel"):
        model.forecast(context, 3)
    flat, rising = torch.zeros(1, 1, 16, 20), torch.ones(1, 1, 16, 20)
    assert not torch.equal(model.forecast(context, 3, condition=flat), model.forecast(context, 3, condition=rising))
    # The differentiable rollout and the inference levers compute the same forecast.
    rolled, _ = model.rollout(context, 3, rising)
    torch.testing.assert_close(rolled, model.forecast(context, 3, condition=rising))
    lever = model.forecast(context, 3, fused=True, channels_last=True, condition=rising)
    torch.testing.assert_close(lever, rolled, rtol=1e-5, atol=1e-5)
    # Through forecast_dbz, on a grid that is not a multiple of the patch size: it runs from the file.
    assert forecast_dbz(model, storm[:6], 3).shape == (3, 72, 100)


@pytest.mark.parametrize("sigma", [2.0, 10.0])
def test_the_trend_smoothing_equals_a_truncated_gaussian_convolution(sigma: float) -> None:
    import math

    import torch.nn.functional as F

    from model.network.lagrangian import trend

    scans = np.random.default_rng(3).uniform(0.0, 40.0, (2, 6, 48, 40)).astype(np.float32)
    flat = np.zeros_like(scans)  # growth 0 everywhere but one pixel: the output is the kernel itself
    flat[:, :, 20, 17] = 10.0 + np.arange(6)
    radius = math.ceil(3.0 * sigma)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(offsets**2) / (2.0 * sigma**2))
    kernel = kernel / kernel.sum()
    for x in (scans, flat):
        x = torch.from_numpy(x)
        steps = torch.arange(6.0) - 2.5
        slope = torch.einsum("t,bthw->bhw", steps, x) / (steps * steps).sum()
        slope = torch.where((x >= 5.0).all(dim=1), slope.clamp(-3.0, 3.0), torch.zeros_like(slope))
        expected = F.conv2d(F.conv2d(slope[:, None], kernel.view(1, 1, 1, -1), padding=(0, radius)),
                            kernel.view(1, 1, -1, 1), padding=(radius, 0))
        torch.testing.assert_close(trend(x, sigma), expected, atol=1e-6, rtol=0)
