"""The training loop: ``train(config, out_dir)`` runs a preset, resumable, on one process or under torchrun.

train(config, out_dir, resume=..., device=..., max_iterations=..., run_test=..., source=...) -> int
    0, or 128 + signal number (130 / 143) after SIGINT / SIGTERM; ``nowcast train`` is its command line.

One iteration follows the authors' ``trainer.train`` (docs/model.md): the
next batch ``source.train_batch(k, B)``, a sampling mask for iteration k (model/network/sampling.py, drawn
from one seeded numpy Generator), forward + backward + Adam step; with ``reverse_input`` a second
forward + backward + step on the time-flipped sequence with the same mask, and the logged cost is
the mean of the two. Iterations count from 1, as in their ``run.py``.

The run directory holds ``config.json``, ``last.pt`` (weights + optimizer, iteration, sampler and
torch RNG states: ``--resume`` continues bit for bit), ``best.pt`` (lowest validation MSE per frame,
chosen on the ``valid`` split, never on ``test``), ``history.csv``, ``loss_curve.png``, ``train.log``
and, at the end, ``test_metrics.json``. Nothing is ever deleted; an existing run directory is only
reused with ``--resume``. The pieces live beside this file: the preset (config.py), the run's state
and checkpoints (state.py), devices and torchrun (distributed.py), signals (signals.py), the history
(history.py) and the scores (evaluation.py).
"""

from __future__ import annotations

import json
import logging
import math
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.checkpoint import read_checkpoint
from model.network.precision import autocast, has_native_bf16
from model.network.precision import resolve as resolve_precision
from model.network.predrnn import PredRNN
from model.network.sampling import probabilities, sampling_mask
from model.training.config import RunConfig, TrainConfig, TrainConfigError, build_source, check_source
from model.training.distributed import barrier, check_replicas_identical, init_distributed, mean_over_ranks
from model.training.evaluation import final_test, validation_mse
from model.training.history import HISTORY, append_history, format_duration, truncate_history
from model.training.signals import StopRequest
from model.training.state import (
    BEST,
    LAST,
    RunningMeans,
    TrainingRun,
    build_optimizer,
    check_resumable,
    prepare_run_dir,
    restore,
    save_run_checkpoint,
)
from model.visualization.training import plot_history

log = logging.getLogger(__name__)


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
        check_resumable(payload, out_dir / LAST, config)
    barrier(context)  # every rank has checked the directory before rank 0 writes into it

    source = source if source is not None else build_source(config.data)
    check_source(source, config.model)
    torch.manual_seed(config.seed)
    model = PredRNN(config.model).to(torch_device)
    if config.run.channels_last:
        model = model.to(memory_format=torch.channels_last)  # before the optimizer: its state follows
    optimizer, scheduler = build_optimizer(model, config)
    run = TrainingRun(
        config=config, out_dir=out_dir, model=model, optimizer=optimizer, scheduler=scheduler,
        rng=np.random.default_rng(config.seed), source=source, context=context, device=torch_device,
        precision=precision, compile_model=compile_model, stop_at=stop_at,
    )
    if payload is not None:
        restore(payload, out_dir / LAST, run)
        del payload

    log_handler = None
    if context.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n", encoding="utf-8")
        log_handler = logging.FileHandler(out_dir / "train.log", encoding="utf-8")
        log_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger("model").addHandler(log_handler)
        truncate_history(out_dir / HISTORY, run.progress.iteration)
    try:
        with StopRequest() as stop:
            signum = _loop(run, stop)
        if signum is None and context.is_main:
            if run_test if run_test is not None else config.run.test_at_end:
                final_test(config, out_dir, source, torch_device)
        barrier(context)
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


def _loop(run: TrainingRun, stop: StopRequest) -> int | None:
    """Iterate from ``progress.iteration + 1`` to ``stop_at``; returns the signal number if stopped by one."""
    config, context, progress = run.config, run.context, run.progress
    net = _trainable(run)
    run.model.train()
    if context.is_main:
        _log_start(run)
    started = time.monotonic()
    window_start, window_iterations = started, 0
    signum: int | None = None
    while progress.iteration < run.stop_at:
        iteration = progress.iteration + 1
        loss, mse, decouple = _train_iteration(run, net, iteration)
        progress.iteration = iteration
        progress.running.add(loss, mse, decouple)
        window_iterations += 1

        signum = stop.agreed(context, run.device)
        final = iteration == run.stop_at
        evaluated = signum is None and (iteration % config.run.eval_interval == 0 or final)
        valid_mse = _validate(run) if evaluated else None
        if iteration % config.run.display_interval == 0 or evaluated:
            now = time.monotonic()
            rate = window_iterations / max(now - window_start, 1e-9)
            if context.is_main:
                _record(run, rate, now - started, valid_mse)
            progress.running = RunningMeans()
            window_start, window_iterations = now, 0
        if context.is_main and (iteration % config.run.checkpoint_interval == 0 or signum is not None or final):
            save_run_checkpoint(run, run.out_dir / LAST, resumable=True)
        if signum is not None:
            log.warning("stopped at iteration %d by %s; resume with --resume", iteration, signal.Signals(signum).name)
            break
    if context.enabled:
        check_replicas_identical(run.model, context)
    if context.is_main and (run.out_dir / HISTORY).exists():
        plot_history(run.out_dir / HISTORY, run.out_dir / "loss_curve.png", config.name)
    return signum


def _trainable(run: TrainingRun) -> torch.nn.Module:
    """The module the updates go through: the model, wrapped in DDP and/or compiled when asked."""
    net: torch.nn.Module = run.model
    if run.context.enabled:
        device = run.device
        net = torch.nn.parallel.DistributedDataParallel(
            run.model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if run.compile_model:
        net = torch.compile(net)
    return net


def _log_start(run: TrainingRun) -> None:
    config = run.config
    log.info(
        "%s: %d parameters, %s (%s%s, %d threads), %d process(es), iterations %d..%d of %d, out %s",
        config.name,
        run.model.num_parameters(),
        run.device,
        run.precision,
        ", channels_last" if config.run.channels_last else "",
        torch.get_num_threads(),
        run.context.world_size,
        run.progress.iteration + 1,
        run.stop_at,
        config.optim.max_iterations,
        run.out_dir,
    )


def _train_iteration(run: TrainingRun, net: torch.nn.Module, iteration: int) -> tuple[float, float, float]:
    """One iteration: the updates on this rank's rows of the batch; returns the (loss, mse, decouple)
    means over the updates and the ranks."""
    m, context = run.config.model, run.context
    batch_size = run.config.optim.batch_size
    local = batch_size // context.world_size
    rows = slice(context.rank * local, (context.rank + 1) * local)
    # The whole global batch and mask are drawn on every rank (same seed), each rank keeps its rows:
    # the trajectory is that of one process with the global batch, whatever the world size.
    batch = run.source.train_batch(iteration, batch_size)
    expected = (batch_size, m.total_length, m.channels, m.height, m.width)
    if batch.shape != expected:
        raise TrainConfigError(f"[data] train_batch gave shape {batch.shape}, expected {expected}")
    mask = sampling_mask(iteration, batch_size, m.input_length, m.total_length, run.config.sampling, run.rng)
    frames = torch.from_numpy(np.ascontiguousarray(batch[rows], dtype=np.float32)).to(run.device)
    mask_true = torch.from_numpy(mask[rows]).to(run.device)
    terms = _one_update(run, net, frames, mask_true)
    if run.config.optim.reverse_input:
        reversed_terms = _one_update(run, net, torch.flip(frames, dims=[1]), mask_true)
        terms = (terms + reversed_terms) / 2
    if run.scheduler is not None:
        run.scheduler.step()
    loss, mse, decouple = (float(v) for v in mean_over_ranks(terms, context).tolist())
    if not math.isfinite(loss):
        raise FloatingPointError(f"iteration {iteration}: loss is {loss}; lower [optim] lr or check the data")
    return loss, mse, decouple


def _one_update(run: TrainingRun, net: torch.nn.Module, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Forward, backward, Adam step. Returns the detached (total, mse, decouple) as one tensor.

    ``frames`` (B, T, C, H, W) in [0, 1]; ``mask`` the sampling mask of model/network/sampling.py.
    """
    run.optimizer.zero_grad(set_to_none=True)
    with autocast(run.precision, run.device):
        _, terms = net(frames, mask)
    terms.total.backward()
    run.optimizer.step()
    return torch.stack([terms.total.detach(), terms.mse.detach(), terms.decouple.detach()]).float()


def _validate(run: TrainingRun) -> float | None:
    """Rank 0 scores the valid split and keeps best.pt; the others wait (returns None there)."""
    progress, value = run.progress, None
    if run.context.is_main:
        value = validation_mse(
            run.model,
            run.source,
            batch_size=run.config.data.eval_batch_size,
            max_batches=run.config.data.valid_max_batches,
            device=run.device,
        )
        improved = value < progress.best_valid_mse
        log.info(
            "iter %d valid MSE/frame %.3f%s",
            progress.iteration,
            value,
            " (best so far: best.pt)"
            if improved
            else f" (best {progress.best_valid_mse:.3f} at {progress.best_iteration})",
        )
        if improved:
            progress.best_valid_mse, progress.best_iteration = value, progress.iteration
            extra = {"selected_on": "valid", "valid_mse_per_frame": value}
            save_run_checkpoint(run, run.out_dir / BEST, extra_meta=extra)
    barrier(run.context)
    return value


def _record(run: TrainingRun, rate: float, elapsed: float, valid_mse: float | None) -> None:
    """The progress log line and a history.csv row for the window that ends now.

    ``rate`` iterations per second over the window; ``elapsed`` seconds since this invocation began.
    """
    progress, config = run.progress, run.config
    means = progress.running.means()
    encoder_p, decoder_p = probabilities(progress.iteration, config.sampling)
    lr = run.optimizer.param_groups[0]["lr"]
    if progress.running.count:
        eta = (run.stop_at - progress.iteration) / rate if rate > 0 else math.inf
        log.info(
            "iter %d/%d loss %.6f mse %.6f decouple %.4f lr %.2e p_gt %.3f/%.3f | %.2f it/s | ETA %s",
            progress.iteration,
            config.optim.max_iterations,
            means["loss"],
            means["mse"],
            means["decouple"],
            lr,
            encoder_p,
            decoder_p,
            rate,
            format_duration(eta),
        )
    row: dict[str, Any] = {
        "iteration": progress.iteration,
        "lr": f"{lr:.6g}",
        "encoder_p_gt": f"{encoder_p:.6f}",
        "decoder_p_gt": f"{decoder_p:.6f}",
        "iterations_per_s": f"{rate:.4f}",
        "elapsed_s": f"{elapsed:.1f}",
    }
    if progress.running.count:
        row |= {key: repr(value) for key, value in means.items()}
    if valid_mse is not None:
        row["valid_mse_per_frame"] = repr(valid_mse)
    append_history(run.out_dir / HISTORY, row)
