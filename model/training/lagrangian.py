"""Training a Lagrangian PredRNN-V2 for skill: the loss is taken where the forecast is verified.

    nowcast train --config model/training/configs/radar_lagrangian_cpu.toml --out runs/NAME [--resume]

One iteration (shapes for batch B, context T_in, forecast K, grid H x W):

1. B storms from the on-disk cache: scans (B, T_in + K, H, W) dBZ and the pysteps displacements
   (B, K, 2, H, W) of the motion estimated from the context, exactly as at inference;
2. the context advected to its newest scan (differentiable bilinear sampling, no gradient needed);
3. the network's K frames in the Lagrangian frame (test-time rule, no scheduled sampling: future
   scans exist on the grid only, and advecting them back would blur every target);
4. each frame advected forward by its lead inside the graph and compared with the raw observed
   scan, leaving out pixels whose source lies outside the domain;
5. loss = intensity-weighted MAE + MSE (weights rise with the verified dBZ thresholds, after
   Shi et al. 2017's balanced loss; by the observed class, or by the higher of the observed and
   the forecast class, ``[loss] weight_by``) + a differentiable CSI term per threshold (the
   threshold a steep sigmoid; pooled over the batch or per sequence, ``[loss] csi_pooling``) +
   PredRNN-V2's decoupling loss.

``best.pt`` is chosen on validation CSI (the thresholds and leads of ``[run] selection_*``), never
on MSE, which rewards the blur that loses echoes; with ``[run] selection_guard``, only among
validations where no kind of rain loses to extrapolation at any lead and threshold. Validation
at iteration 0 scores the untrained model, which is extrapolation (its residual head starts at
zero): every later row says what training added. A run stops and resumes anywhere (``last.pt``
holds optimizer and iteration; the batches are a function of seed and iteration), and the cache
is built once, shard by shard.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
import tomllib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model import InputError
from model.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from model.io.units import DEFAULT_SCALING
from model.network.lagrangian import advect_torch, motion_of, trend
from model.network.precision import autocast, resolve
from model.network.predrnn import PredRNN, PredRNNConfig
from model.training.history import append_history, format_duration, truncate_history
from model.training.signals import StopRequest
from model.verification.metrics import SkillScores

log = logging.getLogger(__name__)

SHARD_STORMS = 64  # storms per cache file: small enough to rebuild, few enough files
_SPLIT_CODES = {"train": 11, "valid": 12}  # distinct from the evaluation source's split codes


# ------------------------------------------------------------------------------------ config


@dataclass
class DataOptions:
    seed: int = 0  # storm seeds: (seed, split code, index)
    height: int = 96  # pixels; large enough that storms stay in the domain for the forecast
    width: int = 96
    input_length: int = 6  # scans of context
    output_length: int = 20  # scans forecast (2 hours at 6 minutes)
    train_storms: int = 1536
    valid_storms: int = 64
    # Share of storms that are one synthetic rain field set in motion with persistent growth and
    # decay (model/data/evolving.py) instead of a storm's own life cycle: a trend the context
    # shows and the forecast must continue, of either sign, where real rain is judged.
    evolving_fraction: float = 0.0
    # Share of those evolving sequences whose rain field has a composite's texture (multi-scale,
    # graded edges, 30 dBZ in filaments; model.data.evolving.textured_rain) instead of being a
    # developed synthetic storm: the synthetic storms are smoother than any real rain.
    textured_fraction: float = 0.0
    cache_dir: str = "var/cache/lagrangian"


@dataclass
class LossOptions:
    thresholds: list[float] = field(default_factory=lambda: [20.0, 30.0, 40.0])  # dBZ
    weights: list[float] = field(default_factory=lambda: [2.0, 5.0, 10.0])  # pixel weight at or above each
    mae: float = 1.0  # weight of the weighted absolute error
    mse: float = 1.0  # weight of the weighted squared error
    csi: float = 0.3  # weight of mean (1 - soft CSI) over thresholds and leads
    temperature: float = 2.0  # dBZ: width of the sigmoid that stands in for the threshold
    # "batch": one soft CSI per lead over the whole batch, as the verification pools its counts;
    # "sequence": one per sequence and lead, then the mean, so that the few intense pixels of one
    # storm weigh as much as a field of intense rain elsewhere in the batch (pooled, such a field
    # makes the union so large that a storm's cores hardly move the term).
    csi_pooling: str = "batch"
    # "truth": a pixel's weight is its observed class (Shi et al.), so a miss of intense echo
    # costs more than a false alarm of it and the optimum over-forecasts intense echo;
    # "both": the higher class of observation and forecast, so either error costs the same.
    weight_by: str = "truth"


@dataclass
class OptimOptions:
    batch_size: int = 8
    lr: float = 5e-4
    max_iterations: int = 1000
    grad_clip: float = 1.0


@dataclass
class RunOptions:
    display_interval: int = 10
    eval_interval: int = 50
    checkpoint_interval: int = 25
    precision: str = "auto"  # bf16 where native (AVX512-BF16, AMX, CUDA), else fp32
    selection_leads: list[int] = field(default_factory=lambda: [5, 10])  # scans: 30 and 60 minutes
    selection_thresholds: list[float] = field(default_factory=lambda: [20.0, 30.0])
    # CSI. When set, a validation counts for best.pt only if, for each kind of sequence in the
    # validation set (storms, evolving and textured rain) and each loss threshold, no lead's CSI
    # is below extrapolation's by more than this: a gain on one kind of rain may not hide a loss
    # on another. Until one passes, the validation closest to passing is kept.
    selection_guard: float | None = None
    init_from: str = ""  # a Lagrangian checkpoint whose weights start a new run (fine-tuning)


@dataclass
class LagrangianConfig:
    name: str
    seed: int
    model: PredRNNConfig
    data: DataOptions
    loss: LossOptions
    optim: OptimOptions
    run: RunOptions
    trainer: str = "lagrangian"

    def __post_init__(self) -> None:
        if self.model.frame != "lagrangian":
            raise ValueError("[model] frame must be 'lagrangian' for this trainer")
        if (self.model.input_length, self.model.output_length) != (self.data.input_length, self.data.output_length):
            raise ValueError("[model] and [data] must agree on input_length and output_length")
        if self.loss.csi_pooling not in ("batch", "sequence"):
            raise ValueError(f"[loss] csi_pooling must be 'batch' or 'sequence', got {self.loss.csi_pooling!r}")
        if self.run.selection_guard is not None and self.run.selection_guard < 0:
            raise ValueError("[run] selection_guard must be a CSI difference of 0 or more")
        if self.loss.weight_by not in ("truth", "both"):
            raise ValueError(f"[loss] weight_by must be 'truth' or 'both', got {self.loss.weight_by!r}")
        if len(self.loss.thresholds) != len(self.loss.weights):
            raise ValueError("[loss] thresholds and weights must have the same length")
        p = self.model.patch_size
        if self.data.height % p or self.data.width % p:
            raise ValueError(f"[data] height and width must be divisible by the patch size {p}")
        if any(not 1 <= k <= self.data.output_length for k in self.run.selection_leads):
            raise ValueError("[run] selection_leads must lie in 1..output_length")
        for name in ("evolving_fraction", "textured_fraction"):
            if not 0.0 <= getattr(self.data, name) <= 1.0:
                raise ValueError(f"[data] {name} must lie in [0, 1]")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> LagrangianConfig:
        sections = {"model": PredRNNConfig, "data": DataOptions, "loss": LossOptions,
                    "optim": OptimOptions, "run": RunOptions}
        known = {"name", "seed", "trainer", *sections}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}")
        built: dict[str, Any] = {"name": str(values["name"]), "seed": int(values.get("seed", 0))}
        for key, section in sections.items():
            given = dict(values.get(key, {}))
            wrong = set(given) - {f.name for f in dataclasses.fields(section)}
            if wrong:
                raise ValueError(f"[{key}]: unknown keys {sorted(wrong)}")
            built[key] = section(**given)
        return cls(**built)


def is_lagrangian_preset(path: Path) -> bool:
    """True when a TOML preset (or a run's config.json) asks for this trainer."""
    try:
        text = path.read_text()
        values = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (OSError, ValueError):
        return False
    return values.get("trainer") == "lagrangian"


def load_config(path: Path) -> LagrangianConfig:
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the preset ({exc.strerror or exc})") from exc
    try:
        values = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
        return LagrangianConfig.from_dict(values)
    except (ValueError, TypeError, KeyError) as exc:
        raise InputError(f"{path}: {exc}") from exc


# ------------------------------------------------------------------------------------- cache


SEQUENCE_KINDS = ("storm", "evolving", "textured")


def sequence_kind(data: DataOptions, split: str, index: int) -> str:
    """Which kind of sequence storm ``index`` of ``split`` is: one of :data:`SEQUENCE_KINDS`.

    "storm": a synthetic storm with its own cells' life cycles; "evolving": a developed storm
    field set in motion with a persistent trend; "textured": the same with a composite's texture.
    """
    entropy = [data.seed, _SPLIT_CODES[split], index]
    if np.random.default_rng([*entropy, 1]).random() >= data.evolving_fraction:
        return "storm"
    # Its own stream, so that presets without textured rain keep their storms bit for bit.
    return "textured" if np.random.default_rng([*entropy, 3]).random() < data.textured_fraction else "evolving"


def _storm(data: DataOptions, split: str, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Scans (T, H, W) dBZ and displacements (K, 2, H, W) px of one storm."""
    from model.data.synthetic import storm_frames

    total = data.input_length + data.output_length
    entropy = [data.seed, _SPLIT_CODES[split], index]
    kind = sequence_kind(data, split, index)
    if kind != "storm":
        rng = np.random.default_rng([*entropy, 1])
        rng.random()  # the draw that chose the kind: the flow and trend draws follow it
        scans = evolving_storm(rng, entropy, total, data.height, data.width, textured=kind == "textured")
    else:
        scans = storm_frames(entropy, total, data.height, data.width)
    steps = max(data.output_length, data.input_length - 1)
    motion = motion_of(scans[: data.input_length], steps, zerovalue=DEFAULT_SCALING["dbz_min"])
    return scans, motion.displacements


def evolving_storm(rng: np.random.Generator, entropy: list[int], total: int, height: int, width: int,
                   *, textured: bool = False) -> np.ndarray:
    """One rain field, twice the grid, set in motion with growth and decay.

    The field is a developed synthetic storm or, if ``textured``, rain with a composite's texture.
    Flows and trends are drawn around the ranges a 6-minute radar sees: up to 3 px per scan,
    rotation and shear of a few degrees per hour, and up to 1 dB per scan of growth in one region
    and decay in another, anywhere in the window, on echo lifted by 0-8 dB.
    """
    from model.data.evolving import evolving_sequence, textured_rain
    from model.data.synthetic import storm_frames

    size = min(height, width)
    # Real composites hold far more rain at 30 dBZ and above than the synthetic storms (15 % of
    # an active window against about 1 %): lift the storm's echo by up to 8 dB to cover that range.
    # Drawn for textured rain too, so that the flow and trend draws after it are the ones the
    # trial presets' caches were built with.
    lift = rng.uniform(0.0, 8.0)
    if textured:
        field = textured_rain(np.random.default_rng([*entropy, 4]), 2 * size)
    else:
        field = storm_frames([*entropy, 2], 9, 2 * size, 2 * size)[-1]  # cells have grown by scan 9
        field = np.where(field > 5.0, field + lift, field)
    offset = rng.integers(0, size + 1, size=2)
    scans = evolving_sequence(
        field, total, window=(int(offset[0]), int(offset[1]), size),
        velocity=tuple(rng.uniform(-3.0, 3.0, size=2)), rotation=rng.uniform(-0.008, 0.008),
        shear=rng.uniform(-0.003, 0.003), growth_db_per_scan=rng.uniform(-1.0, 1.0),
        growth_radius=rng.uniform(0.15, 0.35), grow_at=tuple(rng.uniform(0.1, 0.9, size=2)),
        decay_at=tuple(rng.uniform(0.1, 0.9, size=2)))
    if (height, width) != (size, size):  # a non-square grid takes the square window's top left
        scans = np.pad(scans, ((0, 0), (0, height - size), (0, width - size)), constant_values=scans.min())
    return scans


def _shard_path(data: DataOptions, split: str, shard: int) -> Path:
    tag = f"s{data.seed}_{data.height}x{data.width}_{data.input_length}-{data.output_length}"
    if data.evolving_fraction > 0:
        tag += f"_e{data.evolving_fraction:g}"
    if data.evolving_fraction > 0 and data.textured_fraction > 0:
        tag += f"_t{data.textured_fraction:g}"
    return Path(data.cache_dir) / tag / f"{split}_{shard:04d}.npz"


def _write_shard(data: DataOptions, split: str, shard: int, count: int) -> str:
    path = _shard_path(data, split, shard)
    start = shard * SHARD_STORMS
    storms = [_storm(data, split, i) for i in range(start, min(start + SHARD_STORMS, count))]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
    # float16: dBZ to 0.03 and displacements to 0.03 px at 50 px, half the disk and page cache.
    np.savez(tmp, scans=np.stack([s for s, _ in storms]).astype(np.float16),
             displacements=np.stack([d for _, d in storms]).astype(np.float16))
    os.replace(tmp, path)  # a shard exists whole or not at all: an interrupted build resumes
    return str(path)


def build_cache(data: DataOptions, workers: int | None = None) -> None:
    """Generate the storms and their motion once; existing shards are kept (resumable)."""
    jobs = []
    for split, count in (("train", data.train_storms), ("valid", data.valid_storms)):
        for shard in range(math.ceil(count / SHARD_STORMS)):
            if not _shard_path(data, split, shard).is_file():
                jobs.append((split, shard, count))
    if not jobs:
        return
    workers = workers or max(1, min(2, os.cpu_count() or 1))
    log.info("cache: %d shard(s) of %d storms to build in %s with %d process(es)", len(jobs), SHARD_STORMS,
             data.cache_dir, workers)
    started = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        futures = [pool.submit(_write_shard, data, split, shard, count) for split, shard, count in jobs]
        for done, future in enumerate(futures, 1):
            future.result()
            elapsed = time.perf_counter() - started
            log.info("cache: %d/%d shards, %.1f storms/s, ETA %s", done, len(jobs), done * SHARD_STORMS / elapsed,
                     format_duration(elapsed / done * (len(jobs) - done)))


class StormCache:
    """All cached storms of one split in memory: scans (N, T, H, W), displacements (N, K, 2, H, W)."""

    def __init__(self, data: DataOptions, split: str) -> None:
        count = data.train_storms if split == "train" else data.valid_storms
        shards = [np.load(_shard_path(data, split, s)) for s in range(math.ceil(count / SHARD_STORMS))]
        self.scans = np.concatenate([s["scans"] for s in shards])[:count]
        self.displacements = np.concatenate([s["displacements"] for s in shards])[:count]
        self.kinds = np.array([sequence_kind(data, split, i) for i in range(count)])

    def __len__(self) -> int:
        return int(self.scans.shape[0])

    def batch(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(scans (B, T, H, W), displacements (B, K, 2, H, W)) as float32 tensors."""
        return (torch.from_numpy(self.scans[indices].astype(np.float32)),
                torch.from_numpy(self.displacements[indices].astype(np.float32)))


# ---------------------------------------------------------------------------- forward, loss


def to_model_space(dbz: torch.Tensor) -> torch.Tensor:
    lo, hi = DEFAULT_SCALING["dbz_min"], DEFAULT_SCALING["dbz_max"]
    return (dbz.clamp(lo, hi) - lo) / (hi - lo)


def to_dbz(x: torch.Tensor) -> torch.Tensor:
    """Model space -> dBZ without clipping, so that gradients pass beyond [0, 1]."""
    lo, hi = DEFAULT_SCALING["dbz_min"], DEFAULT_SCALING["dbz_max"]
    return x * (hi - lo) + lo


def lagrangian_forecast(model: PredRNN, scans_dbz: torch.Tensor, displacements: torch.Tensor,
                        precision: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Forecast on the grid, in the graph.

    scans_dbz (B, T, H, W): the context is the first ``input_length`` scans; displacements
    (B, K', 2, H, W) with K' >= output_length. Returns the advected forecast (B, K, H, W) in model
    space (unclipped), the mask of pixels whose source lies inside the domain (B, K, H, W) and the
    decoupling loss.
    """
    t_in, steps = model.config.input_length, model.config.output_length
    context = to_model_space(scans_dbz[:, :t_in])
    if t_in > 1:  # scan t_in-1-j advected forward by j intervals, j = 1..t_in-1
        older = context[:, : t_in - 1].flip(1)
        aligned_older, _ = advect_torch(older, displacements[:, : t_in - 1], 0.0)
        context = torch.cat((aligned_older.flip(1), context[:, -1:]), dim=1)
    condition = trend(to_dbz(context), model.config.trend_sigma_px) if model.config.trend_input else None
    with autocast(precision, scans_dbz.device):
        predicted, decouple = model.rollout(context[:, :, None], steps, condition)
    advected, inside = advect_torch(predicted[:, :, 0].float(), displacements[:, :steps], 0.0)
    return advected, inside, decouple.float()


def skill_loss(forecast: torch.Tensor, inside: torch.Tensor, truth_dbz: torch.Tensor,
               options: LossOptions) -> dict[str, torch.Tensor]:
    """Weighted MAE/MSE and soft CSI of forecast (B, K, H, W) model space against truth (B, K, H, W) dBZ."""
    forecast_dbz = to_dbz(forecast)
    classed = truth_dbz if options.weight_by == "truth" else torch.maximum(truth_dbz, forecast_dbz.detach())
    weight = torch.ones_like(truth_dbz)
    for threshold, w in zip(options.thresholds, options.weights, strict=True):
        weight = torch.where(classed >= threshold, torch.full_like(weight, w), weight)
    mask = inside.float()
    weight = weight * mask
    error = forecast - to_model_space(truth_dbz)
    norm = mask.sum().clamp_min(1.0)
    mae = (weight * error.abs()).sum() / norm
    mse = (weight * error * error).sum() / norm
    soft_csi = []
    pooled = (0, 2, 3) if options.csi_pooling == "batch" else (2, 3)
    for threshold in options.thresholds:
        p = torch.sigmoid((forecast_dbz - threshold) / options.temperature) * mask
        o = (truth_dbz >= threshold).float() * mask
        hits = (p * o).sum(dim=pooled)
        union = p.sum(dim=pooled) + o.sum(dim=pooled) - hits
        soft_csi.append(hits / (union + 1.0))  # per lead (and sequence); +1 keeps rain-free ones finite
    csi = 1.0 - torch.stack(soft_csi).mean()
    total = options.mae * mae + options.mse * mse + options.csi * csi
    return {"total": total, "mae": mae, "mse": mse, "csi": csi}


@torch.no_grad()
def validate(model: PredRNN, cache: StormCache, config: LagrangianConfig, precision: str,
             batch_size: int = 16) -> dict[str, Any]:
    """Skill of the model on the validation storms and the selection score (mean CSI).

    The scores of all sequences, plus ``by_kind``: the CSI per threshold and lead of each kind of
    sequence in the set (:data:`SEQUENCE_KINDS`), which the selection guard compares.
    """
    model.eval()
    t_in, steps = config.model.input_length, config.model.output_length
    kinds = {kind: SkillScores.init(steps) for kind in SEQUENCE_KINDS if kind in cache.kinds}
    for start in range(0, len(cache), batch_size):
        indices = np.arange(start, min(start + batch_size, len(cache)))
        scans, disp = cache.batch(indices)
        forecast, _, _ = lagrangian_forecast(model, scans, disp, precision)
        predicted = to_dbz(forecast.clamp(0.0, 1.0)).numpy()
        truth = scans[:, t_in:].numpy()
        for kind, scores in kinds.items():
            chosen = cache.kinds[indices] == kind
            if chosen.any():
                scores.accum(truth[chosen], predicted[chosen])
    model.train()
    parts = list(kinds.values())
    total = parts[0]
    for part in parts[1:]:
        total = total.merge(part)
    result = total.compute()
    chosen = [result["csi"][f"{t:g}dBZ"][k - 1] for t in config.run.selection_thresholds
              for k in config.run.selection_leads]
    result["selection_score"] = float(np.mean(np.nan_to_num(chosen, nan=0.0)))
    result["by_kind"] = {}
    for kind, scores in kinds.items():
        csi = scores.compute()["csi"]
        result["by_kind"][kind] = {f"{t:g}dBZ": [float(v) for v in np.nan_to_num(csi[f"{t:g}dBZ"])]
                                   for t in config.loss.thresholds}
    return result


def worst_gap(by_kind: dict[str, dict[str, list[float]]], reference: dict[str, dict[str, list[float]]]) -> float:
    """The lowest CSI difference to ``reference`` over every kind, threshold and lead (both ``by_kind``)."""
    return min(float(np.min(np.subtract(csi, reference[kind][name])))
               for kind, thresholds in by_kind.items() for name, csi in thresholds.items())


def selection_rank(score: float, gap: float, guard: float | None) -> tuple[bool, float]:
    """Order of validations for best.pt: higher is better.

    Without a guard the score alone decides. With one, passing it (``gap >= -guard``) beats failing
    it; among those that pass the score decides, among those that fail the smaller shortfall.
    """
    passed = guard is None or gap >= -guard
    return passed, score if passed else gap


# ------------------------------------------------------------------------------------- loop


@dataclass
class RunState:
    """What a resumed run needs besides the weights."""

    iteration: int = 0
    best_score: float = -math.inf
    best_iteration: int = -1
    baseline_score: float = math.nan  # iteration 0: the untrained model, i.e. extrapolation
    baseline_by_kind: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # its CSI, per kind
    best_worst_gap: float = -math.inf  # best.pt's lowest CSI difference to extrapolation


def _best_passed_guard(state: RunState, config: LagrangianConfig) -> bool:
    """Whether best.pt passed the selection guard (always, without a guard)."""
    return selection_rank(state.best_score, state.best_worst_gap, config.run.selection_guard)[0]


def batch_indices(seed: int, iteration: int, storms: int, batch_size: int) -> np.ndarray:
    """The storms of one iteration: a function of (seed, iteration) only, so resuming repeats nothing."""
    return np.random.default_rng([seed, iteration]).choice(storms, size=batch_size, replace=False)


def _save(path: Path, model: PredRNN, config: LagrangianConfig, state: RunState,
          optimizer: torch.optim.Optimizer | None, score: dict[str, Any] | None = None) -> None:
    extra = {"frame": "lagrangian", "preset": config.name, "trainer": config.to_dict(),
             "selection": {"score": state.best_score, "iteration": state.best_iteration,
                           "extrapolation_score": state.baseline_score,
                           "guard": config.run.selection_guard, "passed_guard": _best_passed_guard(state, config),
                           "worst_gap_to_extrapolation": state.best_worst_gap,
                           "thresholds_dbz": config.run.selection_thresholds,
                           "leads": config.run.selection_leads}}
    if score is not None:
        extra["validation"] = {"selection_score": score["selection_score"], "csi": score["csi"]}
    train_state = None
    if optimizer is not None:
        train_state = {"optimizer": optimizer.state_dict(), "run_state": dataclasses.asdict(state),
                       "torch_rng": torch.get_rng_state()}
    save_checkpoint(path, model, iteration=state.iteration, scaling=dict(DEFAULT_SCALING), extra_meta=extra,
                    train_state=train_state)


def _initialise(model: PredRNN, path: Path, config: LagrangianConfig) -> None:
    """Load the weights of checkpoint ``path`` into ``model``; the architecture must match.

    One difference is allowed: a preset with ``trend_input`` may start from the same network
    without it. The first layer's input weights for the trend start at zero, so the new model
    forecasts exactly what the checkpoint does until training teaches it to read the trend.
    """
    try:
        loaded, meta = load_checkpoint(path)
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{path}: cannot start from this checkpoint ({exc})") from exc
    ours, theirs = dataclasses.asdict(config.model), dataclasses.asdict(loaded.config)
    widened = ours["trend_input"] and not theirs["trend_input"]
    trend_keys = ("trend_input", "trend_sigma_px")  # a network without the trend has none of its settings
    if {**theirs, **{k: (ours if widened else theirs)[k] for k in trend_keys}} != ours:
        raise InputError(f"{path}: its model differs from the preset's [model]; fine-tuning needs the same network"
                         " (or the same without trend_input)")
    weights = loaded.state_dict()
    if widened:
        name = "cell_list.0.conv_x.0.weight"
        grown = torch.zeros_like(model.state_dict()[name])
        grown[:, : weights[name].shape[1]] = weights[name]
        weights[name] = grown
    model.load_state_dict(weights)
    log.info("starting from %s (iteration %s)%s", path, meta.get("iteration"),
             ", its trend input at zero" if widened else "")


def train(config: LagrangianConfig, out_dir: Path, *, resume: bool = False, device: str = "cpu",
          max_iterations: int | None = None, precision: str | None = None) -> dict[str, Any]:
    """Train (or resume) into ``out_dir``: last.pt, best.pt, history.csv, validation.csv, config.json."""
    target = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                          ("cpu" if device == "auto" else device))
    precision = resolve(precision or config.run.precision, target)
    out_dir.mkdir(parents=True, exist_ok=True)
    last = out_dir / "last.pt"
    if last.exists() and not resume:
        raise InputError(f"{out_dir}: holds a run already; pass --resume to continue it or choose another --out")
    (out_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    torch.manual_seed(config.seed)
    build_cache(config.data)
    train_cache, valid_cache = StormCache(config.data, "train"), StormCache(config.data, "valid")

    model = PredRNN(config.model).to(target)
    state = RunState()
    if config.run.init_from and not (resume and last.exists()):
        _initialise(model, Path(config.run.init_from), config)
        # Iteration 0 now scores the starting weights; the extrapolation reference is an
        # untrained model of the same shape, whose residual head is zero.
        reference = validate(PredRNN(config.model).to(target), valid_cache, config, precision)
        state.baseline_score, state.baseline_by_kind = reference["selection_score"], reference["by_kind"]
    optimizer = torch.optim.Adam(model.parameters(), lr=config.optim.lr)
    if resume and last.exists():
        loaded, _ = load_checkpoint(last)
        model.load_state_dict(loaded.state_dict())
        payload = read_checkpoint(last)["train_state"]
        optimizer.load_state_dict(payload["optimizer"])
        state = RunState(**payload["run_state"])
        torch.set_rng_state(payload["torch_rng"])
        for name in ("history.csv", "validation.csv"):
            truncate_history(out_dir / name, state.iteration)
        log.info("resumed %s at iteration %d (best %.4f at %d)", out_dir, state.iteration, state.best_score,
                 state.best_iteration)
    stop = min(max_iterations or config.optim.max_iterations, config.optim.max_iterations)
    log.info("training %s: %d parameters, %d train / %d valid storms, %s, %s, iterations %d -> %d",
             config.name, model.num_parameters(), len(train_cache), len(valid_cache), target, precision,
             state.iteration, stop)

    guard = config.run.selection_guard

    def run_validation() -> dict[str, Any]:
        score = validate(model, valid_cache, config, precision)
        row = {"iteration": state.iteration, "selection_score": round(score["selection_score"], 5)}
        for t in config.loss.thresholds:
            for k in config.run.selection_leads:
                row[f"csi{t:g}_lead{k}"] = round(float(np.nan_to_num(score["csi"][f"{t:g}dBZ"][k - 1])), 5)
        row["mae_dbz_mean"] = round(float(np.nanmean(score["mae_dbz"])), 4)
        if state.iteration == 0 and math.isnan(state.baseline_score):
            state.baseline_score, state.baseline_by_kind = score["selection_score"], score["by_kind"]
        gap = math.nan
        if guard is not None:
            gap = worst_gap(score["by_kind"], state.baseline_by_kind)
            row["worst_gap_to_extrapolation"] = round(gap, 5)
        append_history(out_dir / "validation.csv", row, list(row))
        rank = selection_rank(score["selection_score"], gap, guard)
        if state.best_iteration < 0 or rank > selection_rank(state.best_score, state.best_worst_gap, guard):
            state.best_score, state.best_iteration = score["selection_score"], state.iteration
            state.best_worst_gap = gap
            _save(out_dir / "best.pt", model, config, state, None, score)
        log.info("validation at %d: score %.4f (extrapolation %.4f, best %.4f at %d)%s", state.iteration,
                 score["selection_score"], state.baseline_score, state.best_score, state.best_iteration,
                 "" if guard is None else f"; worst CSI gap to extrapolation {gap:+.4f} (guard -{guard:g})")
        return score

    if state.iteration == 0:
        run_validation()
    started, done_here = time.perf_counter(), 0
    model.train()
    # SIGINT / SIGTERM: finish the iteration, save last.pt and stop; a second signal interrupts at once.
    with StopRequest() as request:
        try:
            while state.iteration < stop and request.signum is None:
                indices = batch_indices(config.seed, state.iteration, len(train_cache), config.optim.batch_size)
                scans, disp = train_cache.batch(indices)
                scans, disp = scans.to(target), disp.to(target)
                forecast, inside, decouple = lagrangian_forecast(model, scans, disp, precision)
                terms = skill_loss(forecast, inside, scans[:, config.model.input_length:], config.loss)
                total = terms["total"] + config.model.decouple_beta * decouple
                optimizer.zero_grad(set_to_none=True)
                total.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
                optimizer.step()
                state.iteration += 1
                done_here += 1
                if state.iteration % config.run.display_interval == 0 or state.iteration == stop:
                    elapsed = time.perf_counter() - started
                    rate = done_here / elapsed
                    row = {"iteration": state.iteration, "loss": round(total.item(), 6),
                           **{k: round(v.item(), 6) for k, v in terms.items() if k != "total"},
                           "decouple": round(decouple.item(), 6), "grad_norm": round(grad_norm.item(), 4),
                           "it_per_s": round(rate, 4)}
                    append_history(out_dir / "history.csv", row, list(row))
                    log.info("it %d/%d loss %.4f (mae %.4f mse %.4f csi %.4f) %.2f it/s ETA %s", state.iteration, stop,
                             row["loss"], row["mae"], row["mse"], row["csi"], rate,
                             format_duration((stop - state.iteration) / rate))
                if state.iteration % config.run.eval_interval == 0 or state.iteration == stop:
                    run_validation()
                if state.iteration % config.run.checkpoint_interval == 0 or state.iteration == stop:
                    _save(last, model, config, state, optimizer)
        except KeyboardInterrupt:
            _save(last, model, config, state, optimizer)
            log.info("stopped at iteration %d; --resume continues from last.pt", state.iteration)
            raise
    if request.signum is not None:
        _save(last, model, config, state, optimizer)
        log.info("stopped by signal %d at iteration %d; --resume continues from last.pt", request.signum,
                 state.iteration)
        return {"iterations": state.iteration, "stopped_by_signal": request.signum}
    summary = {"iterations": state.iteration, "best_iteration": state.best_iteration,
               "best_score": state.best_score, "extrapolation_score": state.baseline_score,
               "guard": guard, "best_passed_guard": _best_passed_guard(state, config),
               "best_worst_gap": state.best_worst_gap,
               "precision": precision, "device": str(target)}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
