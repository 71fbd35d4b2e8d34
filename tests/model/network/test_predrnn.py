"""PredRNN against the reference equations (docs/model.md)."""

import math

import pytest
import torch

from model.network.patch import to_patches
from model.network.predrnn import PredRNN, PredRNNConfig

torch.set_num_threads(1)


def sig(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def tiny(version="v2", layers=2, nh=8, **kw) -> PredRNN:
    torch.manual_seed(0)
    kw = {"input_length": 3, "output_length": 3, **kw}
    return PredRNN(PredRNNConfig(version=version, num_hidden=[nh] * layers, **kw))


@pytest.mark.parametrize("version,count", [("v2", 23_855_104), ("v1", 23_838_720)])
def test_parameter_counts_of_the_paper_config(version, count):
    model = PredRNN(PredRNNConfig(version=version, num_hidden=[128] * 4, filter_size=5, patch_size=4))
    assert model.num_parameters() == count


def test_state_dict_keys_are_the_authors():
    keys = set(tiny(layers=2).state_dict())
    for layer in range(2):
        for name in ("conv_x.0", "conv_h.0", "conv_m.0", "conv_o.0"):
            assert f"cell_list.{layer}.{name}.weight" in keys
        assert f"cell_list.{layer}.conv_last.weight" in keys
    assert {"conv_last.weight", "adapter.weight"} <= keys
    assert not any(k.endswith(".bias") for k in keys)  # no conv bias anywhere
    assert "adapter.weight" not in tiny(version="v1").state_dict()


def test_one_pixel_model_matches_hand_computed_equations():
    """1 x 1 grid, nh = 1, filter 1, patch 1: every convolution is a scalar product."""
    config = PredRNNConfig(version="v2", num_hidden=[1, 1], filter_size=1, patch_size=1,
                           input_length=2, output_length=1)
    model = PredRNN(config)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.8)
    w = {k: v.flatten().tolist() for k, v in model.state_dict().items()}

    def cell(layer, x, h, c, m):
        wx, wh, wm = (w[f"cell_list.{layer}.conv_{n}.0.weight"] for n in "xhm")
        wo, wl = w[f"cell_list.{layer}.conv_o.0.weight"], w[f"cell_list.{layer}.conv_last.weight"]
        gx = [a * x for a in wx]  # i f g i' f' g' o
        gh = [b * h for b in wh]  # i f g o
        gm = [b * m for b in wm]  # i' f' g'
        i, f, g = sig(gx[0] + gh[0]), sig(gx[1] + gh[1] + 1.0), math.tanh(gx[2] + gh[2])
        c_new = f * c + i * g
        i2, f2, g2 = sig(gx[3] + gm[0]), sig(gx[4] + gm[1] + 1.0), math.tanh(gx[5] + gm[2])
        m_new = f2 * m + i2 * g2
        o = sig(gx[6] + gh[3] + wo[0] * c_new + wo[1] * m_new)
        h_new = o * math.tanh(wl[0] * c_new + wl[1] * m_new)
        return h_new, c_new, m_new

    frames = [0.3, -0.7, 0.9]
    h, c, m = [0.0, 0.0], [0.0, 0.0], 0.0
    expected = []
    x_gen = None
    for t in range(2):  # T - 1 steps; test-time rule: ground truth for t < input_length
        x = frames[t] if t < 2 else x_gen
        h[0], c[0], m = cell(0, x, h[0], c[0], m)
        h[1], c[1], m = cell(1, h[0], h[1], c[1], m)  # M goes up, then on to layer 0 at t + 1 (zigzag)
        x_gen = w["conv_last.weight"][0] * h[1]
        expected.append(x_gen)
    predictions, _ = model(torch.tensor(frames).reshape(1, 3, 1, 1, 1))
    assert predictions.flatten().tolist() == pytest.approx(expected, abs=1e-6)


def test_loss_is_mse_over_all_next_frames_plus_beta_decouple():
    model = tiny(decouple_beta=0.25)
    frames = torch.rand(2, 6, 1, 16, 16)
    predictions, loss = model(frames)
    assert predictions.shape == (2, 5, 1, 16, 16)
    assert loss.mse.item() == pytest.approx(torch.mean((predictions - frames[:, 1:]) ** 2).item(), rel=1e-6)
    assert loss.total.item() == pytest.approx(loss.mse.item() + 0.25 * loss.decouple.item(), rel=1e-6)
    assert 0.0 < loss.decouple.item() <= 1.0


def test_decoupling_term_alone_trains_the_adapter():
    model = tiny()
    _, loss = model(torch.rand(2, 6, 1, 16, 16))
    (mse_grad,) = torch.autograd.grad(loss.mse, [model.adapter.weight], retain_graph=True, allow_unused=True)
    assert mse_grad is None  # the adapter only appears in the decoupling loss
    (decouple_grad,) = torch.autograd.grad(loss.decouple, [model.adapter.weight], retain_graph=True)
    assert decouple_grad.abs().sum() > 0  # cut off from the graph, the adapter would never train
    loss.total.backward()
    assert model.cell_list[0].conv_x[0].weight.grad.abs().sum() > 0


def test_v1_has_no_decoupling_term():
    model = tiny(version="v1")
    _, loss = model(torch.rand(1, 6, 1, 8, 8))
    assert loss.decouple.item() == 0.0
    assert loss.total.item() == loss.mse.item()


def test_forecast_equals_forward_with_the_test_time_mask():
    model = tiny().eval()
    frames = torch.rand(2, 6, 1, 16, 16)
    with torch.no_grad():
        full, _ = model(frames)
        mask = torch.zeros(2, 4)
        mask[:, :2] = 1.0  # ground truth for context steps 1..input_length-1
        explicit, _ = model(frames, mask)
    forecast = model.forecast(frames[:, :3], 3)
    assert torch.equal(full, explicit)
    assert torch.equal(forecast, full[:, -3:])


def test_zero_mask_feeds_the_model_its_own_output():
    model = tiny().eval()
    frames = torch.rand(1, 6, 1, 8, 8)
    changed = frames.clone()
    changed[:, 1:] = torch.rand(1, 5, 1, 8, 8)
    with torch.no_grad():
        a, _ = model(frames, torch.zeros(1, 4))
        b, _ = model(changed, torch.zeros(1, 4))
    assert torch.equal(a, b)  # only frame 0 is ever read


def test_non_square_grids_are_padded_and_cropped():
    model = tiny().eval()
    context = torch.rand(1, 3, 1, 18, 30)
    forecast = model.forecast(context, 2)
    assert forecast.shape == (1, 2, 1, 18, 30)
    padded = torch.zeros(1, 3, 1, 20, 32)
    padded[..., :18, :30] = context
    assert torch.equal(forecast, model.forecast(padded, 2)[..., :18, :30])


def test_layer_norm_normalises_over_the_actual_non_square_grid():
    model = tiny(layer_norm=True, height=32, width=48)
    ln = model.cell_list[0].conv_x[1]
    assert tuple(ln.normalized_shape) == (7 * 8, 8, 12)
    predictions, _ = model(torch.rand(1, 6, 1, 32, 48))
    assert predictions.shape == (1, 5, 1, 32, 48)
    with pytest.raises(ValueError, match="only takes 32x48"):
        model.forecast(torch.rand(1, 3, 1, 16, 16), 1)


def test_multichannel_frames_use_patch_space():
    model = tiny(channels=3, patch_size=2)
    predictions, _ = model(torch.rand(1, 6, 3, 8, 12))
    assert predictions.shape == (1, 5, 3, 8, 12)
    assert model.conv_last.weight.shape[0] == 12
    assert to_patches(torch.zeros(1, 1, 3, 8, 12), 2).shape[2] == 12


@pytest.mark.parametrize("bad", [{"num_hidden": [8, 16]}, {"version": "v3"}, {"filter_size": 4}])
def test_bad_configs_are_rejected(bad):
    with pytest.raises(ValueError):
        PredRNNConfig(**bad)


@pytest.mark.parametrize("fused,channels_last", [(True, False), (False, True), (True, True)])
@pytest.mark.parametrize("version,layer_norm,grid", [("v2", False, (20, 28)), ("v2", False, (17, 23)),
                                                     ("v1", False, (13, 9)), ("v2", True, (16, 24))])
def test_inference_levers_match_the_plain_path(fused, channels_last, version, layer_norm, grid):
    """The fused gates and NHWC layout reorder float sums only; odd grids go through the padding."""
    model = tiny(version=version, layers=3, layer_norm=layer_norm, height=grid[0], width=grid[1]).eval()
    context = torch.rand(2, 3, 1, *grid)
    reference = model.forecast(context, 4)
    if channels_last and not fused:  # the plain path uses the module's own weights
        model = model.to(memory_format=torch.channels_last)
    lever = model.forecast(context, 4, fused=fused, channels_last=channels_last)
    assert lever.shape == reference.shape and lever.dtype == torch.float32
    torch.testing.assert_close(lever, reference, rtol=1e-5, atol=1e-5)


def test_fused_weights_are_prepared_in_the_autocast_dtype_and_layout():
    cell = tiny(layers=1).cell_list[0]
    weights = cell.inference_weights(torch.bfloat16, torch.channels_last)
    assert weights.temporal.shape == (4 * 8, 16 + 8, 5, 5) and weights.spatiotemporal.shape == (3 * 8, 16 + 8, 5, 5)
    for w in weights:
        assert w.dtype == torch.bfloat16 and w.is_contiguous(memory_format=torch.channels_last)
    assert cell.conv_x[0].weight.dtype == torch.float32  # the module itself is left alone
    w_x = cell.conv_x[0].weight.to(torch.bfloat16)
    assert torch.equal(weights.temporal[:, :16], torch.cat((w_x[:24], w_x[48:])))  # i, f, g, o from conv_x


def test_fused_channels_last_forecast_under_bf16_autocast_stays_close_to_fp32():
    model = tiny(layers=3).eval()
    context = torch.rand(1, 3, 1, 32, 32)
    reference = model.forecast(context, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lever = model.forecast(context, 4, fused=True, channels_last=True)
    assert lever.dtype == torch.bfloat16
    torch.testing.assert_close(lever.float(), reference, rtol=0.0, atol=0.02)
