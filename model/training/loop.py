"""``nowcast train``: train a preset from ``model/training/configs/*.toml``; resumable, single or multi-GPU.

Interface
---------
nowcast train --config model/training/configs/NAME.toml [--out DIR] [--resume] [--device auto|cpu|cuda]
              [--max-iterations N] [--seed N] [--precision fp32|bf16|auto] [--[no-]channels-last] [--compile]
              [--no-test] [--eval-only]
torchrun --standalone --nproc-per-node G -m cli train --config ...   (DistributedDataParallel)

load_config(path) -> TrainConfig          a preset: PredRNNConfig + data + optim + sampling + run
train(config, out_dir, resume=..., ...) -> int   the loop; 0, or 130 / 143 after SIGINT / SIGTERM

One iteration follows the authors' ``trainer.train`` (docs/model.md): the
next batch ``source.train_batch(k, B)``, a sampling mask for iteration k (model/network/sampling.py, drawn
from one seeded numpy Generator), forward + backward + Adam step; with ``reverse_input`` a second
forward + backward + step on the time-flipped sequence with the same mask, and the logged cost is
the mean of the two. Iterations count from 1, as in their ``run.py``.

The run directory holds ``config.json``, ``last.pt`` (weights + optimizer, iteration, sampler and
torch RNG states: ``--resume`` continues bit for bit), ``best.pt`` (lowest validation MSE per frame,
chosen on the ``valid`` split, never on ``test``), ``history.csv``, ``loss_curve.png``, ``train.log``
and, at the end, ``test_metrics.json``. Nothing is ever deleted; an existing run directory is only
reused with ``--resume``.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib
import json
import logging
import math
import os
import signal
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from model import InputError
from model.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
    weights_sha256,
)
from model.network.precision import PRECISIONS, autocast, has_native_bf16
from model.network.precision import resolve as resolve_precision
from model.network.predrnn import PredRNN, PredRNNConfig
from model.network.sampling import SamplingConfig, probabilities, sampling_mask

log = logging.getLogger(__name__)

LAST = "last.pt"
BEST = "best.pt"
HISTORY = "history.csv"
HISTORY_FIELDS = [
    "iteration",
    "loss",
    "mse",
    "decouple",
    "lr",
    "encoder_p_gt",
    "decoder_p_gt",
    "iterations_per_s",
    "elapsed_s",
    "valid_mse_per_frame",
]


class TrainConfigError(ValueError):
    """A preset file is unreadable or has an unknown, missing or invalid field (the message names it)."""


# ------------------------------------------------------------------------------------------------
# Configuration
# ------------------------------------------------------------------------------------------------


@dataclass
class DataConfig:
    source: str = "moving_mnist"  # a name for model.data.get_method, or "package.module:factory"
    options: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the source factory
    eval_batch_size: int = 16  # sequences per validation / test batch
    valid_max_batches: int = 0  # validation batches per evaluation; 0 = the whole valid split


@dataclass
class OptimConfig:
    batch_size: int = 8  # sequences per iteration (global: split across DDP ranks)
    lr: float = 1e-4  # Adam learning rate (the peak rate with "onecycle")
    lr_schedule: str = "constant"  # "constant" (the authors') | "onecycle"
    onecycle_pct_start: float = 0.3  # fraction of the run spent warming up with "onecycle"
    max_iterations: int = 80000  # iterations; each is 2 optimizer steps with reverse_input
    reverse_input: bool = True  # second update on the time-reversed sequence (every published script)


@dataclass
class RunConfig:
    display_interval: int = 100  # iterations between log lines / history rows
    checkpoint_interval: int = 5000  # iterations between last.pt writes (also written on exit)
    eval_interval: int = 5000  # iterations between validations (best.pt selection)
    # "fp32" | "bf16" | "auto": bf16 autocast for the training updates on CUDA or a CPU with native
    # bf16 (AMX / AVX512-BF16; fp32 with a warning on other CPUs, where bf16 is emulated and slow);
    # "auto" = bf16 where native. Validation and test scores are always float32 forecasts.
    precision: str = "fp32"
    channels_last: bool = False  # NHWC weights: oneDNN's fastest convolution layout (1.1-1.3x on CPU)
    compile: bool = False  # torch.compile the network (CUDA only; ignored with a warning on CPU)
    test_at_end: bool = True  # evaluate best.pt on the test split when the run completes


@dataclass
class TrainConfig:
    name: str
    seed: int = 1  # model initialisation, sampling masks (the data source has its own seed option)
    model: PredRNNConfig = field(default_factory=PredRNNConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], origin: str = "config") -> TrainConfig:
        """Build and validate; every error names ``origin`` and the offending ``[section] key``."""
        values = dict(values)
        sections: dict[str, type] = {
            "model": PredRNNConfig,
            "data": DataConfig,
            "optim": OptimConfig,
            "sampling": SamplingConfig,
            "run": RunConfig,
        }
        top_level = {"name", "seed"} | set(sections)
        unknown = sorted(set(values) - top_level)
        if unknown:
            raise TrainConfigError(f"{origin}: unknown top-level key(s) {unknown}; valid: {sorted(top_level)}")
        if not isinstance(values.get("name"), str) or not values["name"]:
            raise TrainConfigError(f"{origin}: 'name' must be a non-empty string")
        built: dict[str, Any] = {"name": values["name"], "seed": values.get("seed", 1)}
        if not isinstance(built["seed"], int) or isinstance(built["seed"], bool):
            raise TrainConfigError(f"{origin}: 'seed' must be an integer, not {built['seed']!r}")
        for key, section_type in sections.items():
            built[key] = _build_section(section_type, values.get(key, {}), f"{origin}: [{key}]")
        config = cls(**built)
        config.validate(origin)
        return config

    def validate(self, origin: str = "config") -> None:
        o, r, d = self.optim, self.run, self.data
        checks = [
            (o.batch_size >= 1, "[optim] batch_size must be >= 1"),
            (o.lr > 0, "[optim] lr must be > 0"),
            (
                o.lr_schedule in ("constant", "onecycle"),
                "[optim] lr_schedule must be 'constant' or 'onecycle'",
            ),
            (0 < o.onecycle_pct_start < 1, "[optim] onecycle_pct_start must be in (0, 1)"),
            (o.max_iterations >= 1, "[optim] max_iterations must be >= 1"),
            (r.display_interval >= 1, "[run] display_interval must be >= 1"),
            (r.checkpoint_interval >= 1, "[run] checkpoint_interval must be >= 1"),
            (r.eval_interval >= 1, "[run] eval_interval must be >= 1"),
            (r.precision in PRECISIONS, "[run] precision must be 'fp32', 'bf16' or 'auto'"),
            (d.eval_batch_size >= 1, "[data] eval_batch_size must be >= 1"),
            (d.valid_max_batches >= 0, "[data] valid_max_batches must be >= 0 (0 = all)"),
            (isinstance(d.options, dict), "[data] options must be a table"),
            (self.model.total_length >= 3, "[model] input_length + output_length must be >= 3"),
        ]
        for ok, message in checks:
            if not ok:
                raise TrainConfigError(f"{origin}: {message}")


def _type_fits(default: Any, value: Any) -> bool:
    """TOML value against the field's default type (an int is fine where a float is meant)."""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, int | float)
    for kind in (int, str, list, dict):
        if isinstance(default, kind):
            return isinstance(value, kind)
    return True


def _build_section(section_type: type, values: Any, origin: str) -> Any:
    if not isinstance(values, dict):
        raise TrainConfigError(f"{origin} must be a table, not {type(values).__name__}")
    defaults = section_type()
    names = {f.name for f in dataclasses.fields(section_type)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise TrainConfigError(f"{origin}: unknown key(s) {unknown}; valid: {sorted(names)}")
    for key, value in values.items():
        default = getattr(defaults, key)
        if not _type_fits(default, value):
            raise TrainConfigError(f"{origin} {key}: expected {type(default).__name__}, got {value!r}")
    try:
        return section_type(**values)
    except (TypeError, ValueError) as exc:
        raise TrainConfigError(f"{origin}: {exc}") from exc


def load_config(path: str | Path) -> TrainConfig:
    """Read a TOML preset; the ``name`` defaults to the file's stem."""
    path = Path(path)
    if not path.is_file():
        raise TrainConfigError(f"{path}: config file not found")
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise TrainConfigError(f"{path}: not valid TOML ({exc})") from exc
    values.setdefault("name", path.stem)
    return TrainConfig.from_dict(values, origin=str(path))


# Fields that may change between a run and its resumption: they do not alter the trajectory.
_RESUMABLE_CHANGES = {("run", k) for k in dataclasses.asdict(RunConfig())} | {
    ("data", "eval_batch_size"),
    ("data", "valid_max_batches"),
    ("optim", "max_iterations"),
}


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``section.key`` of every field that differs and would change the training trajectory."""
    differences = []
    for section in sorted(set(saved) | set(current)):
        a, b = saved.get(section), current.get(section)
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                if (section, key) not in _RESUMABLE_CHANGES and a.get(key) != b.get(key):
                    differences.append(f"{section}.{key}")
        elif a != b and section != "name":
            differences.append(section)
    return differences


# ------------------------------------------------------------------------------------------------
# Data source, devices, distributed context
# ------------------------------------------------------------------------------------------------


def build_source(data: DataConfig) -> Any:
    """Instantiate the sequence source: a registry name, or ``module:factory`` for custom data."""
    if ":" in data.source:
        module_name, factory_name = data.source.split(":", 1)
        try:
            factory = getattr(importlib.import_module(module_name), factory_name)
        except (ImportError, AttributeError) as exc:
            raise TrainConfigError(f"[data] source {data.source!r} cannot be imported ({exc})") from exc
    else:
        from model.data import get_method

        try:
            factory = get_method(data.source)
        except ValueError as exc:
            raise TrainConfigError(f"[data] source: {exc}") from exc
    try:
        return factory(**dict(data.options))
    except (TypeError, ValueError) as exc:  # wrong option names, or data missing / not in the layout
        raise TrainConfigError(f"[data] source {data.source!r} with options {data.options}: {exc}") from exc


def check_source(source: Any, model: PredRNNConfig) -> None:
    """The source's sequences must be the shape the model is configured for."""
    expected = {
        "input_length": model.input_length,
        "total_length": model.total_length,
        "channels": model.channels,
        "height": model.height,
        "width": model.width,
    }
    for name, value in expected.items():
        actual = getattr(source, name, None)
        if actual != value:
            raise TrainConfigError(
                f"[data] source gives {name} = {actual}, but [model] implies {value}; make them agree"
            )


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in a torchrun job (world_size 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError("--device cuda: no CUDA device is available (use --device cpu)")
        return torch.device(name if ":" in name else f"cuda:{local_rank}")
    if name != "cpu":
        raise InputError(f"--device must be auto, cpu, cuda or cuda:N, not {name!r}")
    return torch.device("cpu")


def init_distributed(device_name: str) -> tuple[DistContext, torch.device]:
    """Join the torchrun job described by the environment, if any (gloo on CPU, nccl on CUDA)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    context = DistContext(int(os.environ.get("RANK", "0")), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    device = resolve_device(device_name, context.local_rank)
    if context.enabled and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return context, device


def _barrier(context: DistContext) -> None:
    if context.enabled:
        dist.barrier()


# ------------------------------------------------------------------------------------------------
# Signals: finish the iteration, save, exit 128 + signal number
# ------------------------------------------------------------------------------------------------


class StopRequest:
    """Records SIGINT / SIGTERM instead of dying mid-step; a second signal interrupts at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        log.warning("%s received: finishing this iteration, saving %s", signal.Signals(signum).name, LAST)

    def __enter__(self) -> StopRequest:
        # Handlers can only be installed from the main thread (e.g. not inside a worker thread).
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def agreed(self, context: DistContext, device: torch.device) -> int | None:
        """The signal number if any rank was signalled (ranks must stop at the same iteration)."""
        if not context.enabled:
            return self.signum
        flag = torch.tensor([self.signum or 0], dtype=torch.int64, device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item()) or None


# ------------------------------------------------------------------------------------------------
# Run directory, history, plots
# ------------------------------------------------------------------------------------------------


def prepare_run_dir(out_dir: Path, resume: bool) -> None:
    """Refuse to overwrite a run; with ``resume`` require its last.pt. Never deletes anything."""
    if resume:
        if not (out_dir / LAST).is_file():
            raise InputError(f"--resume: {out_dir / LAST} not found (nothing to resume)")
        return
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise InputError(f"{out_dir} already exists and is not empty; pass --resume to continue it or choose --out")


def _append_history(path: Path, row: dict[str, Any]) -> None:
    new_file = not path.exists()
    with path.open("a", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=HISTORY_FIELDS)
        if new_file:
            writer.writeheader()
        writer.writerow({k: row.get(k, "") for k in HISTORY_FIELDS})


def read_history(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _truncate_history(path: Path, iteration: int) -> None:
    """Drop rows written after the checkpoint we resume from (they will be written again)."""
    rows = read_history(path)
    kept = [row for row in rows if int(row["iteration"]) <= iteration]
    if len(kept) == len(rows):
        return
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=HISTORY_FIELDS)
        writer.writeheader()
        writer.writerows(kept)
    os.replace(tmp, path)


def plot_history(history_path: Path, png_path: Path, title: str) -> None:
    """Loss terms against iteration (log scale) and validation MSE per frame on a second axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_history(history_path)
    train_rows = [r for r in rows if r["loss"]]
    valid_rows = [r for r in rows if r["valid_mse_per_frame"]]
    figure, axis = plt.subplots(figsize=(8, 4.5))
    for key, style in (("loss", "-"), ("mse", "--"), ("decouple", ":")):
        values = [float(r[key]) for r in train_rows]
        if any(v > 0 for v in values):
            axis.plot([int(r["iteration"]) for r in train_rows], values, style, label=key)
    axis.set_xlabel("iteration")
    axis.set_ylabel("training loss (patch space, mean)")
    if train_rows:
        axis.set_yscale("log")
    axis.grid(alpha=0.3)
    if valid_rows:
        second = axis.twinx()
        second.plot(
            [int(r["iteration"]) for r in valid_rows],
            [float(r["valid_mse_per_frame"]) for r in valid_rows],
            "o-",
            color="C3",
            label="valid MSE/frame",
        )
        second.set_ylabel("validation MSE per frame (sum over pixels)")
        second.legend(loc="upper center")
    axis.legend(loc="upper right")
    axis.set_title(title)
    figure.tight_layout()
    tmp = png_path.with_name(f".{png_path.name}.tmp.png")
    figure.savefig(tmp, dpi=100)
    plt.close(figure)
    os.replace(tmp, png_path)


def _format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


# ------------------------------------------------------------------------------------------------
# Evaluation
# ------------------------------------------------------------------------------------------------


def validation_mse(
    model: PredRNN, source: Any, *, batch_size: int, max_batches: int, device: torch.device
) -> float:
    """Mean over valid sequences and output frames of the squared error summed over a frame's pixels.

    The paper's "MSE per frame" (docs/model.md, Metrics) on predictions clipped to [0, 1], with the
    test-time rule (ground truth for the context, own output afterwards). Lower is better.
    Forecasts are float32 whatever precision the run trains in, so scores compare across runs.
    """
    config = model.config
    was_training = model.training
    model.eval()
    total, frames_scored = 0.0, 0
    try:
        for index, batch in enumerate(source.eval_batches("valid", batch_size)):
            if max_batches and index >= max_batches:
                break
            frames = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(device)
            predicted = model.forecast(frames[:, : config.input_length], config.output_length)
            error = (predicted.float().clamp(0.0, 1.0) - frames[:, config.input_length :]) ** 2
            per_frame = error.sum(dim=(2, 3, 4))  # (B, T_out)
            total += float(per_frame.sum().item())
            frames_scored += per_frame.numel()
    finally:
        model.train(was_training)
    if frames_scored == 0:
        raise TrainConfigError("[data] source yielded no 'valid' sequences: cannot select a best checkpoint")
    return total / frames_scored


def evaluate_test_split(
    model: PredRNN, source: Any, *, batch_size: int, device: torch.device
) -> dict[str, Any]:
    """Score ``model`` and persistence on every sequence of the test split (model/verification/metrics.py).

    The paper protocol (per-frame MSE, MAE, SSIM, PSNR; docs/model.md, Metrics) always; for sources with a
    physical scaling (radar, dBZ) also the nowcast skill per lead time (CSI, POD, FAR, bias, FSS,
    MAE / RMSE in dBZ). Persistence is the last context frame repeated (model.baselines).

    Returns
    -------
    dict
        ``{"model": {"paper": ..., "nowcast": ...}, "persistence": {...}}``, JSON-safe (NaN -> None).
    """
    from model.baselines import forecast_model_space
    from model.io.units import model_to_dbz
    from model.verification.metrics import PaperScores, SkillScores, json_safe

    config = model.config
    scaling = source.scaling
    physical = scaling["kind"] != "identity"
    scores: dict[str, dict[str, Any]] = {}
    for name in ("model", "persistence"):
        scores[name] = {"paper": PaperScores.init(config.output_length)}
        if physical:
            scores[name]["nowcast"] = SkillScores.init(config.output_length)
    model.eval()
    for batch in source.eval_batches("test", batch_size):
        frames = np.ascontiguousarray(batch, dtype=np.float32)
        context, truth = frames[:, : config.input_length], frames[:, config.input_length :]
        predicted = model.forecast(torch.from_numpy(context).to(device), config.output_length)
        forecasts = {
            "model": predicted.float().cpu().numpy(),
            "persistence": forecast_model_space("persistence", context, config.output_length, scaling),
        }
        for name, forecast in forecasts.items():
            scores[name]["paper"].accum(truth, forecast)
            if physical:  # skill on the first channel, in dBZ
                scores[name]["nowcast"].accum(
                    model_to_dbz(truth[:, :, 0], scaling), model_to_dbz(forecast[:, :, 0], scaling)
                )
    return json_safe({name: {k: v.compute() for k, v in parts.items()} for name, parts in scores.items()})


# ------------------------------------------------------------------------------------------------
# The loop
# ------------------------------------------------------------------------------------------------


@dataclass
class _Running:
    """Sums of the logged terms since the last history row (saved in last.pt for exact history)."""

    count: int = 0
    loss: float = 0.0
    mse: float = 0.0
    decouple: float = 0.0

    def add(self, loss: float, mse: float, decouple: float) -> None:
        self.count += 1
        self.loss += loss
        self.mse += mse
        self.decouple += decouple

    def means(self) -> dict[str, float]:
        n = max(self.count, 1)
        return {"loss": self.loss / n, "mse": self.mse / n, "decouple": self.decouple / n}


@dataclass
class _State:
    iteration: int = 0
    best_valid_mse: float = math.inf
    best_iteration: int = 0
    running: _Running = field(default_factory=_Running)


def _build_optimizer(model: PredRNN, config: TrainConfig) -> tuple[torch.optim.Optimizer, Any]:
    # Adam, default betas, no weight decay, no clipping: the authors' model_factory.py.
    optimizer = torch.optim.Adam(model.parameters(), lr=config.optim.lr)
    scheduler = None
    if config.optim.lr_schedule == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=config.optim.lr,
            total_steps=config.optim.max_iterations,
            pct_start=config.optim.onecycle_pct_start,
        )
    return optimizer, scheduler


def _train_state(
    config: TrainConfig,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    rng: np.random.Generator,
    state: _State,
) -> dict[str, Any]:
    return {
        "config": config.to_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "sampler_rng": rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "best_valid_mse": state.best_valid_mse,
        "best_iteration": state.best_iteration,
        "running": dataclasses.asdict(state.running),
    }


def _restore(
    payload: dict[str, Any],
    path: Path,
    model: PredRNN,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    rng: np.random.Generator,
) -> _State:
    train_state = payload["train_state"]
    state_dict = payload["state_dict"]
    if weights_sha256(state_dict) != payload.get("meta", {}).get("weights_sha256"):
        raise InputError(f"{path}: weights do not match their recorded sha256 (corrupt checkpoint)")
    model.load_state_dict(state_dict)
    optimizer.load_state_dict(train_state["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(train_state["scheduler"])
    rng.bit_generator.state = train_state["sampler_rng"]
    torch.set_rng_state(train_state["torch_rng"])
    if train_state.get("cuda_rng") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(train_state["cuda_rng"])
    return _State(
        iteration=int(payload["meta"]["iteration"]),
        best_valid_mse=float(train_state["best_valid_mse"]),
        best_iteration=int(train_state["best_iteration"]),
        running=_Running(**train_state["running"]),
    )


def _check_resumable(payload: dict[str, Any], path: Path, config: TrainConfig) -> None:
    train_state = payload.get("train_state")
    if not isinstance(train_state, dict) or "config" not in train_state:
        raise InputError(f"{path}: no train_state (not a checkpoint written by nowcast train)")
    saved = train_state["config"]
    differences = config_differences(saved, config.to_dict())
    if differences:
        raise InputError(f"--resume: {path} was trained with other settings: {differences}")
    # OneCycle's shape is fixed by the run length it was built with.
    if config.optim.lr_schedule == "onecycle" and saved["optim"]["max_iterations"] != config.optim.max_iterations:
        raise InputError(f"--resume: [optim] max_iterations cannot change under lr_schedule = 'onecycle' ({path})")


def _one_update(
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    frames: torch.Tensor,
    mask: torch.Tensor,
    device: torch.device,
    precision: str,
) -> torch.Tensor:
    """Forward, backward, Adam step. Returns the detached (total, mse, decouple) as one tensor."""
    optimizer.zero_grad(set_to_none=True)
    with autocast(precision, device):
        _, terms = net(frames, mask)
    terms.total.backward()
    optimizer.step()
    return torch.stack([terms.total.detach(), terms.mse.detach(), terms.decouple.detach()]).float()


def train(
    config: TrainConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    device: str = "auto",
    max_iterations: int | None = None,
    run_test: bool | None = None,
    source: Any = None,
) -> int:
    """Train ``config`` into ``out_dir``. Returns 0, or 128 + signal number after SIGINT / SIGTERM.

    ``max_iterations`` stops early (the schedules still follow the preset's length); ``source``
    replaces the configured data source (a Python API for tests and notebooks).
    """
    out_dir = Path(out_dir)
    context, torch_device = init_distributed(device)
    precision, compile_model = _effective_options(config.run, torch_device)
    stop_at = min(max_iterations or config.optim.max_iterations, config.optim.max_iterations)
    if config.optim.batch_size % context.world_size:
        raise TrainConfigError(
            f"[optim] batch_size {config.optim.batch_size} is not divisible by {context.world_size} processes"
        )
    prepare_run_dir(out_dir, resume)
    payload = read_checkpoint(out_dir / LAST) if resume else None
    if payload is not None:
        _check_resumable(payload, out_dir / LAST, config)
    _barrier(context)  # every rank has checked the directory before rank 0 writes into it

    source = source if source is not None else build_source(config.data)
    check_source(source, config.model)
    torch.manual_seed(config.seed)
    model = PredRNN(config.model).to(torch_device)
    if config.run.channels_last:
        model = model.to(memory_format=torch.channels_last)  # before the optimizer: its state follows
    optimizer, scheduler = _build_optimizer(model, config)
    rng = np.random.default_rng(config.seed)
    state = _State()
    if payload is not None:
        state = _restore(payload, out_dir / LAST, model, optimizer, scheduler, rng)
        del payload

    log_handler = None
    if context.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n", encoding="utf-8")
        log_handler = logging.FileHandler(out_dir / "train.log", encoding="utf-8")
        log_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger("model").addHandler(log_handler)
        _truncate_history(out_dir / HISTORY, state.iteration)
    try:
        with StopRequest() as stop:
            signum = _loop(
                config,
                out_dir,
                model,
                optimizer,
                scheduler,
                rng,
                state,
                source,
                stop,
                context,
                torch_device,
                precision,
                compile_model,
                stop_at,
            )
        if signum is None and context.is_main:
            if run_test if run_test is not None else config.run.test_at_end:
                _final_test(config, out_dir, source, torch_device)
        _barrier(context)
        return 0 if signum is None else 128 + signum
    finally:
        if log_handler is not None:
            logging.getLogger("model").removeHandler(log_handler)
            log_handler.close()


def _effective_options(run: RunConfig, device: torch.device) -> tuple[str, bool]:
    """The precision and compile setting this run really uses on ``device`` (warns when it differs)."""
    precision, compile_model = resolve_precision(run.precision, device), run.compile
    if precision == "bf16" and not has_native_bf16(device):
        log.warning("precision bf16: %s has no native bf16 (emulated, far slower): training in fp32", device)
        precision = "fp32"
    if device.type != "cuda":
        if compile_model:
            log.warning("torch.compile is a CUDA option here: running eagerly on %s", device)
            compile_model = False
    return precision, compile_model


def _loop(
    config: TrainConfig,
    out_dir: Path,
    model: PredRNN,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    rng: np.random.Generator,
    state: _State,
    source: Any,
    stop: StopRequest,
    context: DistContext,
    device: torch.device,
    precision: str,
    compile_model: bool,
    stop_at: int,
) -> int | None:
    """Iterate from ``state.iteration + 1`` to ``stop_at``; returns the signal number if stopped by one."""
    net: torch.nn.Module = model
    if context.enabled:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if compile_model:
        net = torch.compile(net)
    model.train()
    m, run = config.model, config.run
    batch_size = config.optim.batch_size
    local = batch_size // context.world_size
    rows = slice(context.rank * local, (context.rank + 1) * local)
    if context.is_main:
        log.info(
            "%s: %d parameters, %s (%s%s, %d threads), %d process(es), iterations %d..%d of %d, out %s",
            config.name,
            model.num_parameters(),
            device,
            precision,
            ", channels_last" if run.channels_last else "",
            torch.get_num_threads(),
            context.world_size,
            state.iteration + 1,
            stop_at,
            config.optim.max_iterations,
            out_dir,
        )
    started = time.monotonic()
    window_start, window_iterations = started, 0
    signum: int | None = None
    while state.iteration < stop_at:
        iteration = state.iteration + 1
        # The whole global batch and mask are drawn on every rank (same seed), each rank keeps its rows:
        # the trajectory is that of one process with the global batch, whatever the world size.
        batch = source.train_batch(iteration, batch_size)
        if batch.shape != (batch_size, m.total_length, m.channels, m.height, m.width):
            raise TrainConfigError(
                f"[data] train_batch gave shape {batch.shape}, expected "
                f"{(batch_size, m.total_length, m.channels, m.height, m.width)}"
            )
        mask = sampling_mask(iteration, batch_size, m.input_length, m.total_length, config.sampling, rng)
        frames = torch.from_numpy(np.ascontiguousarray(batch[rows], dtype=np.float32)).to(device)
        mask_true = torch.from_numpy(mask[rows]).to(device)
        terms = _one_update(net, optimizer, frames, mask_true, device, precision)
        if config.optim.reverse_input:
            reversed_terms = _one_update(net, optimizer, torch.flip(frames, dims=[1]), mask_true, device, precision)
            terms = (terms + reversed_terms) / 2
        if scheduler is not None:
            scheduler.step()
        if context.enabled:
            dist.all_reduce(terms)
            terms /= context.world_size
        loss, mse, decouple = (float(v) for v in terms.tolist())
        if not math.isfinite(loss):
            raise FloatingPointError(f"iteration {iteration}: loss is {loss}; lower [optim] lr or check the data")
        state.iteration = iteration
        state.running.add(loss, mse, decouple)
        window_iterations += 1

        signum = stop.agreed(context, device)
        final = iteration == stop_at
        evaluated = signum is None and (iteration % run.eval_interval == 0 or final)
        valid_mse = _validate(config, out_dir, model, source, state, context, device) if evaluated else None
        if iteration % run.display_interval == 0 or evaluated:
            now = time.monotonic()
            rate = window_iterations / max(now - window_start, 1e-9)
            if context.is_main:
                _record(config, out_dir, state, optimizer, rate, now - started, valid_mse, stop_at)
            state.running = _Running()
            window_start, window_iterations = now, 0
        if context.is_main and (iteration % run.checkpoint_interval == 0 or signum is not None or final):
            _save(config, out_dir / LAST, model, optimizer, scheduler, rng, state, source, context)
        if signum is not None:
            log.warning("stopped at iteration %d by %s; resume with --resume", iteration, signal.Signals(signum).name)
            break
    if context.enabled:
        _check_replicas_identical(model, context)
    if context.is_main and (out_dir / HISTORY).exists():
        plot_history(out_dir / HISTORY, out_dir / "loss_curve.png", config.name)
    return signum


def _validate(
    config: TrainConfig,
    out_dir: Path,
    model: PredRNN,
    source: Any,
    state: _State,
    context: DistContext,
    device: torch.device,
) -> float | None:
    """Rank 0 scores the valid split and keeps best.pt; the others wait (returns None there)."""
    value = None
    if context.is_main:
        value = validation_mse(
            model,
            source,
            batch_size=config.data.eval_batch_size,
            max_batches=config.data.valid_max_batches,
            device=device,
        )
        improved = value < state.best_valid_mse
        log.info(
            "iter %d valid MSE/frame %.3f%s",
            state.iteration,
            value,
            " (best so far: best.pt)" if improved else f" (best {state.best_valid_mse:.3f} at {state.best_iteration})",
        )
        if improved:
            state.best_valid_mse, state.best_iteration = value, state.iteration
            extra = {"selected_on": "valid", "valid_mse_per_frame": value}
            save_checkpoint(
                out_dir / BEST,
                model,
                iteration=state.iteration,
                scaling=dict(source.scaling),
                extra_meta=_meta(config, context) | extra,
            )
    _barrier(context)
    return value


def _meta(config: TrainConfig, context: DistContext) -> dict[str, Any]:
    return {
        "preset": config.name,
        "data_source": config.data.source,
        "data_options": dict(config.data.options),
        "train_config": config.to_dict(),
        "world_size": context.world_size,
    }


def _save(
    config: TrainConfig,
    path: Path,
    model: PredRNN,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    rng: np.random.Generator,
    state: _State,
    source: Any,
    context: DistContext,
) -> None:
    save_checkpoint(
        path,
        model,
        iteration=state.iteration,
        scaling=dict(source.scaling),
        extra_meta=_meta(config, context),
        train_state=_train_state(config, optimizer, scheduler, rng, state),
    )


def _record(
    config: TrainConfig,
    out_dir: Path,
    state: _State,
    optimizer: torch.optim.Optimizer,
    rate: float,
    elapsed: float,
    valid_mse: float | None,
    stop_at: int,
) -> None:
    means = state.running.means()
    encoder_p, decoder_p = probabilities(state.iteration, config.sampling)
    lr = optimizer.param_groups[0]["lr"]
    if state.running.count:
        eta = (stop_at - state.iteration) / rate if rate > 0 else math.inf
        log.info(
            "iter %d/%d loss %.6f mse %.6f decouple %.4f lr %.2e p_gt %.3f/%.3f | %.2f it/s | ETA %s",
            state.iteration,
            config.optim.max_iterations,
            means["loss"],
            means["mse"],
            means["decouple"],
            lr,
            encoder_p,
            decoder_p,
            rate,
            _format_duration(eta),
        )
    row: dict[str, Any] = {
        "iteration": state.iteration,
        "lr": f"{lr:.6g}",
        "encoder_p_gt": f"{encoder_p:.6f}",
        "decoder_p_gt": f"{decoder_p:.6f}",
        "iterations_per_s": f"{rate:.4f}",
        "elapsed_s": f"{elapsed:.1f}",
    }
    if state.running.count:
        row |= {key: repr(value) for key, value in means.items()}
    if valid_mse is not None:
        row["valid_mse_per_frame"] = repr(valid_mse)
    _append_history(out_dir / HISTORY, row)


def _check_replicas_identical(model: PredRNN, context: DistContext) -> None:
    """DDP keeps replicas in lock step; verify it, and record every rank's digest in the log."""
    digest = weights_sha256(model.state_dict())
    digests: list[Any] = [None] * context.world_size
    dist.all_gather_object(digests, digest)
    if context.is_main:
        log.info("replica weights sha256 by rank: %s", digests)
    if len(set(digests)) != 1:
        raise RuntimeError(f"DDP replicas diverged: weights sha256 by rank {digests}")


def _final_test(config: TrainConfig, out_dir: Path, source: Any, device: torch.device) -> dict[str, Any]:
    """Evaluate best.pt (chosen on valid) on the test split; write test_metrics.json."""
    try:
        model, meta = load_checkpoint(out_dir / BEST)
    except CheckpointError as exc:
        raise InputError(str(exc)) from exc
    started = time.monotonic()
    results = evaluate_test_split(model.to(device), source, batch_size=config.data.eval_batch_size, device=device)
    document = {
        "preset": config.name,
        "checkpoint": str(out_dir / BEST),
        "iteration": meta.get("iteration"),
        "weights_sha256": meta.get("weights_sha256"),
        "selected_on": meta.get("selected_on"),
        "split": "test",
        "seconds": round(time.monotonic() - started, 1),
        "results": results,
    }
    path = out_dir / "test_metrics.json"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    paper = results["model"]["paper"]["mean"]
    log.info(
        "test split (best.pt, iteration %s): MSE/frame %.2f SSIM %.4f (persistence MSE/frame %.2f) -> %s",
        meta.get("iteration"),
        paper["mse"],
        paper["ssim"],
        results["persistence"]["paper"]["mean"]["mse"],
        path,
    )
    return document


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------
