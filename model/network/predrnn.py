"""PredRNN (NeurIPS 2017) and PredRNN-V2 (TPAMI 2022) in one readable file.

The equations, widths and parameter names follow the authors' code (thuml/predrnn-pytorch, see
docs/model.md), so their released weights load unchanged:

    cell_list.{l}.conv_x.0.weight  (7*nh, C_in, k, k)  -> i, f, g, i', f', g', o
    cell_list.{l}.conv_h.0.weight  (4*nh, nh, k, k)    -> i, f, g, o
    cell_list.{l}.conv_m.0.weight  (3*nh, nh, k, k)    -> i', f', g'
    cell_list.{l}.conv_o.0.weight  (nh, 2*nh, k, k)    output gate's look at [C_new; M_new]
    cell_list.{l}.conv_last.weight (nh, 2*nh, 1, 1)    fusion of [C_new; M_new] into H
    conv_last.weight               (p*p*C, nh, 1, 1)   frame head: no bias, no activation
    adapter.weight                 (nh, nh, 1, 1)      V2 only; used by the decoupling loss alone

Shapes: frames are (B, T, C, H, W) in model space [0, 1]; inside, the network runs on
space-to-depth patches (B, T, p*p*C, H/p, W/p). C_in of the first layer is p*p*C, plus p*p*C_c
when the config has condition channels (``trend_input``): fields (B, C_c, H, W) that join the
input of every step and that the head does not predict.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from model.network.patch import from_patches, pad_to_multiple, to_patches

FRAMES = ("eulerian", "lagrangian")


@dataclass
class PredRNNConfig:
    version: str = "v2"  # "v1" (PredRNN) | "v2" (PredRNN-V2: adds the decoupling loss and its adapter)
    num_hidden: list[int] = field(default_factory=lambda: [64, 64])  # per layer; all equal (zigzag M)
    filter_size: int = 5  # k of every k x k convolution
    stride: int = 1
    patch_size: int = 4  # space-to-depth factor p
    channels: int = 1  # image channels C before patching
    layer_norm: bool = False  # every published script uses 0; LN fixes the grid to (height, width)
    height: int = 64  # pixels; only layer_norm depends on it, otherwise any grid works
    width: int = 64
    input_length: int = 10  # context frames
    output_length: int = 10  # frames predicted after the context
    decouple_beta: float = 0.1  # weight of the V2 decoupling loss (0.1 MNIST, 0.01 KTH)
    # "eulerian": the authors' model, frames on the fixed grid. "lagrangian": the network sees the
    # context advected to the newest scan and predicts each frame as a residual on the previous
    # one, with the residual head starting at zero (model/network/lagrangian.py, docs/model.md).
    frame: str = "eulerian"
    # Lagrangian only: one more input channel, the context's trend in the Lagrangian frame (dB per
    # scan, model/network/lagrangian.py ``trend``), read at every step and never predicted. Growth
    # of 1 dB per scan is 0.014 per scan in model space, a signal the network did not learn to
    # read from the frames themselves (docs/lagrangian.md).
    trend_input: bool = False
    # Pixels: the Gaussian that smooths the trend. At 2 px a single convective cell's growth
    # shows; at several times a cell's size only growth and decay of whole rain areas do, the
    # part that persists through a 2-hour forecast (a cell's growth stops within its life).
    trend_sigma_px: float = 2.0

    def __post_init__(self) -> None:
        self.num_hidden = [int(n) for n in self.num_hidden]
        if self.version not in ("v1", "v2"):
            raise ValueError(f"version must be 'v1' or 'v2', not {self.version!r}")
        if self.frame not in FRAMES:
            raise ValueError(f"frame must be one of {FRAMES}, not {self.frame!r}")
        if self.trend_input and self.frame != "lagrangian":
            raise ValueError("trend_input needs frame = 'lagrangian'")
        if not self.trend_sigma_px > 0:
            raise ValueError(f"trend_sigma_px must be positive, got {self.trend_sigma_px}")
        if not self.num_hidden or len(set(self.num_hidden)) != 1:
            raise ValueError(f"num_hidden must be non-empty with equal widths, got {self.num_hidden}")
        if self.filter_size % 2 != 1:
            raise ValueError(f"filter_size must be odd, got {self.filter_size}")
        if self.input_length < 1 or self.output_length < 1:
            raise ValueError("input_length and output_length must be at least 1")
        if self.layer_norm and (self.height % self.patch_size or self.width % self.patch_size):
            raise ValueError("with layer_norm, height and width must be divisible by patch_size")

    @property
    def total_length(self) -> int:
        return self.input_length + self.output_length

    @property
    def frame_channels(self) -> int:
        return self.patch_size * self.patch_size * self.channels

    @property
    def condition_channels(self) -> int:
        """Channels before patching that the network reads beside the frames but does not predict."""
        return 1 if self.trend_input else 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PredRNNConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown PredRNNConfig fields: {sorted(unknown)}")
        return cls(**values)


class LossTerms(NamedTuple):
    total: torch.Tensor  # mse + decouple_beta * decouple; what gets .backward()
    mse: torch.Tensor  # mean squared error over all T-1 next-frame predictions
    decouple: torch.Tensor  # mean |cos(adapter(dC), adapter(dM))|; zero for v1


class InferenceWeights(NamedTuple):
    """One layer's weights for the fused inference path (SpatioTemporalLSTMCell.inference_weights)."""

    temporal: torch.Tensor  # (4nh, C_in+nh, k, k): i, f, g, o over [x; h]
    spatiotemporal: torch.Tensor  # (3nh, C_in+nh, k, k): i', f', g' over [x; m]
    output: torch.Tensor  # conv_o (nh, 2nh, k, k) over [C_new; M_new]
    fusion: torch.Tensor  # conv_last (nh, 2nh, 1, 1) over [C_new; M_new]


def _conv_block(config: PredRNNConfig, c_in: int, c_out: int) -> nn.Sequential:
    """k x k conv without bias, optionally followed by LayerNorm over the actual (C, H/p, W/p)."""
    k = config.filter_size
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, k, config.stride, k // 2, bias=False)]
    if config.layer_norm:
        p = config.patch_size
        layers.append(nn.LayerNorm([c_out, config.height // p, config.width // p]))
    return nn.Sequential(*layers)


class SpatioTemporalLSTMCell(nn.Module):
    """One ST-LSTM layer: temporal memory C (from x and H), spatiotemporal memory M (from x and M)."""

    def __init__(self, config: PredRNNConfig, in_channels: int) -> None:
        super().__init__()
        nh = config.num_hidden[0]
        self.num_hidden = nh
        self.conv_x = _conv_block(config, in_channels, 7 * nh)
        self.conv_h = _conv_block(config, nh, 4 * nh)
        self.conv_m = _conv_block(config, nh, 3 * nh)
        self.conv_o = _conv_block(config, 2 * nh, nh)
        self.conv_last = nn.Conv2d(2 * nh, nh, 1, 1, 0, bias=False)

    def inference_weights(self, dtype: torch.dtype, memory_format: torch.memory_format) -> InferenceWeights:
        """This layer's weights regrouped for the fused inference path (no layer norm).

        The reference sums conv_x(x) and conv_h(h) for i, f, g, o and conv_x(x) and conv_m(m) for
        i', f', g'. A convolution over the concatenated inputs computes those sums inside the GEMM:
        the same FLOPs, one call and no separate additions. Everything is cast to ``dtype`` and laid
        out in ``memory_format`` here, once per forecast, not by autocast at every step.
        """
        nh = self.num_hidden
        w_x = self.conv_x[0].weight
        temporal = torch.cat((torch.cat((w_x[: 3 * nh], w_x[6 * nh :])), self.conv_h[0].weight), dim=1)
        spatiotemporal = torch.cat((w_x[3 * nh : 6 * nh], self.conv_m[0].weight), dim=1)
        weights = (temporal, spatiotemporal, self.conv_o[0].weight, self.conv_last.weight)
        return InferenceWeights(*(w.to(dtype=dtype, memory_format=memory_format) for w in weights))

    def forward(
        self,
        x: torch.Tensor,
        h: torch.Tensor,
        c: torch.Tensor,
        m: torch.Tensor,
        fused: InferenceWeights | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, C_in, h, w); h, c, m (B, nh, h, w). Returns H_new, C_new, M_new, dC, dM.

        ``fused`` (from :meth:`inference_weights`) takes the two-gate-convolution path: the same
        equations, with the gate sums accumulated in another order, so equal to float rounding only.
        """
        nh = self.num_hidden
        if fused is None:
            i_x, f_x, g_x, i_xm, f_xm, g_xm, o_x = torch.split(self.conv_x(x), nh, dim=1)
            i_h, f_h, g_h, o_h = torch.split(self.conv_h(h), nh, dim=1)
            i_m, f_m, g_m = torch.split(self.conv_m(m), nh, dim=1)
            i_pre, f_pre, g_pre, o_pre = i_x + i_h, f_x + f_h, g_x + g_h, o_x + o_h
            i_pre_m, f_pre_m, g_pre_m = i_xm + i_m, f_xm + f_m, g_xm + g_m
        else:
            # Cast the inputs to the weights' dtype here: torch.cat would promote a bf16 x and a
            # float32 m to float32, and autocast would then round them again inside every conv.
            conv, dtype = self.conv_x[0], fused.temporal.dtype
            x_low = x.to(dtype)
            x_h = torch.cat((x_low, h.to(dtype)), 1)
            x_m = torch.cat((x_low, m.to(dtype)), 1)
            temporal = F.conv2d(x_h, fused.temporal, None, conv.stride, conv.padding)
            spatiotemporal = F.conv2d(x_m, fused.spatiotemporal, None, conv.stride, conv.padding)
            i_pre, f_pre, g_pre, o_pre = torch.split(temporal, nh, dim=1)
            i_pre_m, f_pre_m, g_pre_m = torch.split(spatiotemporal, nh, dim=1)

        # Temporal memory. The +1.0 forget bias sits inside the sigmoid, as in the reference.
        i_t = torch.sigmoid(i_pre)
        f_t = torch.sigmoid(f_pre + 1.0)
        g_t = torch.tanh(g_pre)
        delta_c = i_t * g_t
        c_new = f_t * c + delta_c

        # Spatiotemporal memory: the incoming M (from the layer below, or the top at t-1), never H.
        i_tm = torch.sigmoid(i_pre_m)
        f_tm = torch.sigmoid(f_pre_m + 1.0)
        g_tm = torch.tanh(g_pre_m)
        delta_m = i_tm * g_tm
        m_new = f_tm * m + delta_m

        memory = torch.cat((c_new, m_new), dim=1)
        if fused is None:
            o_t = torch.sigmoid(o_pre + self.conv_o(memory))
            h_new = o_t * torch.tanh(self.conv_last(memory))
        else:  # C and M stay float32 (they accumulate over every step); round once for both convs
            memory = memory.to(fused.output.dtype)
            conv = self.conv_o[0]
            o_t = torch.sigmoid(o_pre + F.conv2d(memory, fused.output, None, conv.stride, conv.padding))
            h_new = o_t * torch.tanh(F.conv2d(memory, fused.fusion))
        return h_new, c_new, m_new, delta_c, delta_m


def _decouple_term(adapter: nn.Conv2d, delta_c: torch.Tensor, delta_m: torch.Tensor) -> torch.Tensor:
    """Mean over (B, channels) of |cosine over spatial positions| of the adapted increments."""
    b, ch = delta_c.shape[:2]
    dc = F.normalize(adapter(delta_c).reshape(b, ch, -1), dim=2)
    dm = F.normalize(adapter(delta_m).reshape(b, ch, -1), dim=2)
    return torch.mean(torch.abs(torch.cosine_similarity(dc, dm, dim=2)))


class PredRNN(nn.Module):
    """A stack of ST-LSTM cells with the zigzag memory; v1 or v2 by ``config.version``."""

    def __init__(self, config: PredRNNConfig) -> None:
        super().__init__()
        self.config = config
        nh = config.num_hidden[0]
        first = config.frame_channels + config.patch_size**2 * config.condition_channels
        in_channels = [first] + config.num_hidden[:-1]
        self.cell_list = nn.ModuleList(SpatioTemporalLSTMCell(config, c) for c in in_channels)
        self.conv_last = nn.Conv2d(nh, config.frame_channels, 1, 1, 0, bias=False)
        # In the Lagrangian frame the head predicts a change of the previous frame. Starting it at
        # zero makes the untrained model persistence in that frame, which is extrapolation on the
        # grid: training starts from the operational baseline and can only add to it.
        self.residual = config.frame == "lagrangian"
        if self.residual:
            nn.init.zeros_(self.conv_last.weight)
        if config.version == "v2":
            self.adapter = nn.Conv2d(nh, nh, 1, 1, 0, bias=False)

    @property
    def num_layers(self) -> int:
        return len(self.cell_list)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _unroll(
        self,
        patches: torch.Tensor,
        steps: int,
        mask_true: torch.Tensor | None,
        keep_from: int,
        with_decouple: bool,
        fused: list[InferenceWeights] | None = None,
        memory_format: torch.memory_format = torch.contiguous_format,
        condition: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run ``steps`` recurrent steps over patch-space frames (B, T_avail, p*p*C, h, w).

        At step t the input is the given frame for t == 0; for t >= 1 it is
        ``mask[t-1] * frame_t + (1 - mask[t-1]) * x_gen`` when a mask (B, steps-1) is given,
        else the given frame while one exists (the context) and the model's own output after.
        Returns the head outputs for steps t >= keep_from, stacked (B, steps-keep_from, ...),
        and the decoupling loss (or None). ``fused`` (one per layer) and ``memory_format`` (of the
        recurrent states) are the inference levers of :meth:`forecast`. ``condition`` (B, p*p*C_c,
        h, w), required when the config has condition channels, joins the input of every step.
        """
        if (condition is None) != (self.config.condition_channels == 0):
            raise ValueError(f"this model takes {self.config.condition_channels} condition channel(s); "
                             f"got {'none' if condition is None else 'a condition'}")
        b, t_avail, _, h, w = patches.shape
        nh = self.config.num_hidden[0]
        zeros = patches.new_zeros(b, nh, h, w).contiguous(memory_format=memory_format)
        hidden = [zeros] * self.num_layers
        cell = [zeros] * self.num_layers
        memory = zeros  # one M for the whole stack: it zigzags up the layers and on to the next step
        outputs: list[torch.Tensor] = []
        decouple: list[torch.Tensor] = []
        x_gen: torch.Tensor | None = None
        weights = fused or [None] * self.num_layers
        for t in range(steps):
            if t == 0 or (mask_true is None and t < t_avail):
                net = patches[:, t]
            elif mask_true is None:
                net = x_gen
            else:
                m = mask_true[:, t - 1].reshape(b, 1, 1, 1)
                net = m * patches[:, t] + (1 - m) * x_gen
            first_input = net if condition is None else torch.cat((net, condition), dim=1)
            for layer, lstm in enumerate(self.cell_list):
                layer_input = first_input if layer == 0 else hidden[layer - 1]
                hidden[layer], cell[layer], memory, delta_c, delta_m = lstm(
                    layer_input, hidden[layer], cell[layer], memory, weights[layer]
                )
                if with_decouple:
                    decouple.append(_decouple_term(self.adapter, delta_c, delta_m))
            # The head is needed for the next input (autoregressive) or for an output we keep.
            needs_head = t >= keep_from or mask_true is not None or t + 1 >= t_avail
            if needs_head:
                x_gen = self.conv_last(hidden[-1])
                if self.residual:
                    x_gen = x_gen + net
                if t >= keep_from:
                    outputs.append(x_gen)
        decouple_loss = torch.stack(decouple).mean() if with_decouple else None
        return torch.stack(outputs, dim=1), decouple_loss

    def forward(
        self, frames: torch.Tensor, mask_true: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, LossTerms]:
        """Training and evaluation pass over a whole sequence, as the reference does it.

        frames: (B, T, C, H, W), H and W divisible by the patch size.
        mask_true: (B, T-2), P(ground truth) draws for steps 1..T-2 (see model/network/sampling.py);
            None means the test-time rule: ground truth for the context, own output after it.
        Returns predictions (B, T-1, C, H, W) of frames 1..T-1 (unclipped) and the loss terms.
        """
        b, t_total = frames.shape[:2]
        if t_total < 2:
            raise ValueError("need at least 2 frames")
        if mask_true is not None and mask_true.shape[:2] != (b, t_total - 2):
            raise ValueError(f"mask_true must be ({b}, {t_total - 2}, ...), got {tuple(mask_true.shape)}")
        if self.config.condition_channels:
            raise ValueError("a model with condition channels runs through rollout or forecast")
        p = self.config.patch_size
        patches = to_patches(frames, p)  # (B, T, p*p*C, H/p, W/p)
        if mask_true is None:
            # Test-time rule expressed as a mask so that forward and forecast share one path.
            context = min(self.config.input_length, t_total)
            mask_true = torch.zeros(b, t_total - 2, dtype=frames.dtype, device=frames.device)
            mask_true[:, : context - 1] = 1.0
        with_decouple = self.config.version == "v2"
        predicted, decouple = self._unroll(patches, t_total - 1, mask_true, 0, with_decouple)
        mse = F.mse_loss(predicted, patches[:, 1:])
        if decouple is None:
            decouple = mse.new_zeros(())
        total = mse + self.config.decouple_beta * decouple if with_decouple else mse
        return from_patches(predicted, p), LossTerms(total, mse, decouple)

    def rollout(self, context: torch.Tensor, steps: int, condition: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Differentiable :meth:`forecast` for training on forecasts: the test-time rule with autograd.

        context: (B, T_in, C, H, W), H and W divisible by the patch size; condition: (B, C_c, H, W)
        when the config has condition channels. Returns the ``steps`` frames after the context
        (B, steps, C, H, W), unclipped, and the decoupling loss (zero for v1).
        """
        t_in = context.shape[1]
        if t_in < 1 or steps < 1:
            raise ValueError("need at least one context frame and one step")
        p = self.config.patch_size
        if context.shape[-2] % p or context.shape[-1] % p:
            raise ValueError(f"rollout needs H and W divisible by the patch size {p}, got {tuple(context.shape[-2:])}")
        with_decouple = self.config.version == "v2"
        patched = None if condition is None else to_patches(condition[:, None], p)[:, 0]
        predicted, decouple = self._unroll(to_patches(context, p), t_in - 1 + steps, None, t_in - 1, with_decouple,
                                           condition=patched)
        if decouple is None:
            decouple = predicted.new_zeros(())
        return from_patches(predicted, p), decouple

    @torch.inference_mode()
    def forecast(
        self, context: torch.Tensor, steps: int, fused: bool = False, channels_last: bool = False,
        condition: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict ``steps`` frames after ``context`` (B, T_in, C, H, W) of any H and W.

        ``condition`` (B, C_c, H, W): the condition channels, when the config has them (padded
        like the context).

        Ground truth for the context, the model's own output afterwards; H and W are zero-padded
        to a multiple of the patch size and cropped back. Returns (B, steps, C, H, W), unclipped.
        The defaults compute exactly what :meth:`forward` computes. Two levers change only the
        order of float operations (README, Results > Speed, has what each gains):

        - ``fused=True``: two gate convolutions per layer instead of three plus additions, with the
          weights regrouped, cast to the autocast dtype and laid out once per call (see
          :meth:`SpatioTemporalLSTMCell.inference_weights`). Ignored with layer norm, whose
          per-convolution normalisation does not commute with the sum.
        - ``channels_last=True``: frames, states and the fused weights in NHWC, the layout oneDNN's
          CPU convolutions run natively (NCHW costs a reorder around every call). Without
          ``fused``, convert the module too: ``model.to(memory_format=torch.channels_last)``.
        """
        if context.dim() != 5:
            raise ValueError(f"context must be (B, T, C, H, W), got shape {tuple(context.shape)}")
        t_in = context.shape[1]
        if t_in < 1 or steps < 1:
            raise ValueError("need at least one context frame and one step")
        if context.shape[2] != self.config.channels:
            raise ValueError(f"model expects {self.config.channels} channel(s), got {context.shape[2]}")
        p = self.config.patch_size
        padded, (h, w) = pad_to_multiple(context, p)
        if self.config.layer_norm and padded.shape[-2:] != (self.config.height, self.config.width):
            raise ValueError(
                f"this model uses layer norm and only takes {self.config.height}x{self.config.width} grids"
            )
        patches = to_patches(padded, p)  # (B, T, p*p*C, h, w)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        patched = None if condition is None else to_patches(pad_to_multiple(condition, p)[0][:, None], p)[:, 0]
        if channels_last:  # (B, T, h, w, C) in memory, so that every frame patches[:, t] is NHWC
            patches = patches.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
            if patched is not None:
                patched = patched.contiguous(memory_format=torch.channels_last)
        weights = None
        if fused and not self.config.layer_norm:
            device_type = context.device.type
            dtype = (torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type)
                     else self.conv_last.weight.dtype)
            weights = [lstm.inference_weights(dtype, memory_format) for lstm in self.cell_list]
        predicted, _ = self._unroll(patches, t_in - 1 + steps, None, t_in - 1, False, weights, memory_format,
                                    patched)
        return from_patches(predicted, p)[..., :h, :w]


def flops_per_step(config: PredRNNConfig, height: int, width: int) -> float:
    """Multiply-adds x 2 of one recurrent step on an H x W grid (for benchmark reports)."""
    p, k, nh = config.patch_size, config.filter_size, config.num_hidden[0]
    pixels = math.ceil(height / p) * math.ceil(width / p)
    total = 0
    for layer in range(len(config.num_hidden)):
        c_in = config.frame_channels + p * p * config.condition_channels if layer == 0 else nh
        total += k * k * (c_in * 7 * nh + nh * 4 * nh + nh * 3 * nh + 2 * nh * nh) + 2 * nh * nh
    total += nh * config.frame_channels
    return 2.0 * total * pixels
