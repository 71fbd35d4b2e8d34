"""``nowcast bench``: time PredRNN inference and training steps on synthetic frames; writes JSON.

Reports the median of ``--repeats`` timed runs after ``--warmup`` untimed ones, with the machine,
torch version, thread count, FLOPs per recurrent step and the exact configuration, so that a
number in README can be reproduced by rerunning the command stored beside it.

    nowcast bench --mode inference --num-hidden 128,128,128,128 --grid 64x64 --batch 1 --json out.json
    nowcast bench --mode train --num-hidden 64,64 --grid 64x64 --batch 8 --json out.json
    nowcast bench --mode train --num-hidden 32,32 --batch 8 --precision auto --channels-last --baseline

``--baseline`` first times the straightforward implementation of the same model in the same
process (float32, NCHW, three gate convolutions per layer) and reports the speedup over it.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model import InputError
from model.network.precision import autocast
from model.network.predrnn import PredRNN, flops_per_step
from model.network.sampling import SamplingConfig, sampling_mask

log = logging.getLogger(__name__)


def parse_grid(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise InputError(f"--grid must look like 256x256, got {text!r}") from exc
    return height, width


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def write_report(path: Path | None, report: dict[str, Any]) -> None:
    """Write a benchmark's JSON report to ``path`` (parents created); nothing when ``path`` is None."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn, warmup: int, repeats: int, device: torch.device) -> list[float]:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def bench_inference(model: PredRNN, batch: int, grid: tuple[int, int], steps: int, precision: str,
                    warmup: int, repeats: int, device: torch.device, fused: bool = False,
                    channels_last: bool = False) -> dict[str, Any]:
    model.eval()
    context = torch.rand(batch, model.config.input_length, model.config.channels, *grid, device=device)
    # A trend model reads its condition channels at every step: time it with them.
    condition = (torch.rand(batch, model.config.condition_channels, *grid, device=device)
                 if model.config.condition_channels else None)

    def run() -> None:
        with autocast(precision, device):
            model.forecast(context, steps, fused=fused, channels_last=channels_last, condition=condition)

    times = time_calls(run, warmup, repeats, device)
    step_count = model.config.input_length - 1 + steps
    return {"seconds": times, "median_s": statistics.median(times),
            "gflop": flops_per_step(model.config, *grid) * step_count * batch / 1e9}


def bench_train(model: PredRNN, batch: int, grid: tuple[int, int], precision: str,
                warmup: int, repeats: int, device: torch.device) -> dict[str, Any]:
    model.train()
    config = model.config
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    frames = torch.rand(batch, config.total_length, config.channels, *grid, device=device)
    rng = np.random.default_rng(0)
    mask = torch.from_numpy(
        sampling_mask(0, batch, config.input_length, config.total_length, SamplingConfig(), rng)
    ).to(device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(precision, device):
            _, loss = model(frames, mask)
        loss.total.backward()
        optimizer.step()

    times = time_calls(step, warmup, repeats, device)
    median = statistics.median(times)
    return {"seconds": times, "median_s": median, "sequences_per_s": batch / median}
