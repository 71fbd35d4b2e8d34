"""The state of one training run, and its round trip through the run directory's checkpoints.

TrainingRun                       everything the loop reads and changes, in one object
prepare_run_dir(out_dir, resume)  refuse to overwrite a run; never deletes anything
save_run_checkpoint(run, path)    ``last.pt`` (with the optimizer, sampler and RNG states) or ``best.pt``
restore(payload, path, run)       put a ``last.pt`` back into ``run``: ``--resume`` continues bit for bit
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model import InputError
from model.checkpoint import save_checkpoint, weights_sha256
from model.network.predrnn import PredRNN
from model.training.config import TrainConfig, config_differences
from model.training.distributed import DistContext

LAST = "last.pt"
BEST = "best.pt"


@dataclass
class RunningMeans:
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
class Progress:
    """How far the run is: the last finished iteration, the best validation so far, the open log window."""

    iteration: int = 0
    best_valid_mse: float = math.inf  # validation MSE per frame of best.pt (sum over a frame's pixels)
    best_iteration: int = 0
    running: RunningMeans = field(default_factory=RunningMeans)


@dataclass
class TrainingRun:
    """One run: what it trains, where it writes, on which device, and how far it has come.

    ``precision`` and ``compile_model`` are what the run really uses on ``device`` (a request for
    bf16 or torch.compile where they do not apply has already fallen back). ``stop_at`` is the last
    iteration of this invocation; the schedules still follow ``config.optim.max_iterations``.
    """

    config: TrainConfig
    out_dir: Path
    model: PredRNN
    optimizer: torch.optim.Optimizer
    scheduler: Any  # torch.optim.lr_scheduler.OneCycleLR, or None for a constant rate
    rng: np.random.Generator  # draws the sampling masks
    source: Any  # the sequence source (model/data): train_batch, eval_batches, scaling
    context: DistContext
    device: torch.device
    precision: str  # "fp32" | "bf16"
    compile_model: bool
    stop_at: int
    progress: Progress = field(default_factory=Progress)


def prepare_run_dir(out_dir: Path, resume: bool) -> None:
    """Refuse to overwrite a run; with ``resume`` require its last.pt. Never deletes anything."""
    if resume:
        if not (out_dir / LAST).is_file():
            raise InputError(f"--resume: {out_dir / LAST} not found (nothing to resume)")
        return
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise InputError(f"{out_dir} already exists and is not empty; pass --resume to continue it or choose --out")


def build_optimizer(model: PredRNN, config: TrainConfig) -> tuple[torch.optim.Optimizer, Any]:
    """Adam with the preset's rate, and the OneCycle schedule when the preset asks for it (else None)."""
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


def save_run_checkpoint(run: TrainingRun, path: Path, *, extra_meta: dict[str, Any] | None = None,
                        resumable: bool = False) -> None:
    """The model with the run's metadata; ``resumable`` adds everything ``--resume`` needs (last.pt)."""
    meta = {
        "preset": run.config.name,
        "data_source": run.config.data.source,
        "data_options": dict(run.config.data.options),
        "train_config": run.config.to_dict(),
        "world_size": run.context.world_size,
    }
    save_checkpoint(
        path,
        run.model,
        iteration=run.progress.iteration,
        scaling=dict(run.source.scaling),
        extra_meta=meta | (extra_meta or {}),
        train_state=_train_state(run) if resumable else None,
    )


def _train_state(run: TrainingRun) -> dict[str, Any]:
    return {
        "config": run.config.to_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict() if run.scheduler is not None else None,
        "sampler_rng": run.rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "best_valid_mse": run.progress.best_valid_mse,
        "best_iteration": run.progress.best_iteration,
        "running": dataclasses.asdict(run.progress.running),
    }


def check_resumable(payload: dict[str, Any], path: Path, config: TrainConfig) -> None:
    """``payload`` (a read last.pt) may continue under ``config``: same trajectory-defining settings."""
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


def restore(payload: dict[str, Any], path: Path, run: TrainingRun) -> None:
    """Load weights, optimizer, schedule, sampler and torch RNG states and the progress into ``run``."""
    train_state = payload["train_state"]
    state_dict = payload["state_dict"]
    if weights_sha256(state_dict) != payload.get("meta", {}).get("weights_sha256"):
        raise InputError(f"{path}: weights do not match their recorded sha256 (corrupt checkpoint)")
    run.model.load_state_dict(state_dict)
    run.optimizer.load_state_dict(train_state["optimizer"])
    if run.scheduler is not None:
        run.scheduler.load_state_dict(train_state["scheduler"])
    run.rng.bit_generator.state = train_state["sampler_rng"]
    torch.set_rng_state(train_state["torch_rng"])
    if train_state.get("cuda_rng") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(train_state["cuda_rng"])
    run.progress = Progress(
        iteration=int(payload["meta"]["iteration"]),
        best_valid_mse=float(train_state["best_valid_mse"]),
        best_iteration=int(train_state["best_iteration"]),
        running=RunningMeans(**train_state["running"]),
    )
