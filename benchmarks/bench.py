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

import argparse
import copy
import datetime as dt
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
from model.network.precision import autocast, resolve
from model.network.predrnn import PredRNN, PredRNNConfig, flops_per_step
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

    def run() -> None:
        with autocast(precision, device):
            model.forecast(context, steps, fused=fused, channels_last=channels_last)

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nowcast bench", description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["inference", "train"], default="inference")
    parser.add_argument("--checkpoint", type=Path, help="time this model instead of random weights")
    parser.add_argument("--version", choices=["v1", "v2"], default="v2")
    parser.add_argument("--num-hidden", default="64,64,64")
    parser.add_argument("--filter-size", type=int, default=5)
    parser.add_argument("--patch-size", type=int, default=4)
    parser.add_argument("--grid", default="64x64", help="HxW in pixels")
    parser.add_argument("--input-length", type=int, default=10)
    parser.add_argument("--output-length", type=int, default=10)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="fp32")
    parser.add_argument("--fused", action="store_true", help="inference: two gate convolutions per layer, not three")
    parser.add_argument("--channels-last", action="store_true",
                        help="NHWC weights, and for inference NHWC frames and states (oneDNN's preferred layout)")
    parser.add_argument("--baseline", action="store_true",
                        help="also time plain fp32 NCHW three-convolution steps in this run; report the speedup")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", action="store_true", help="also print the torch profiler's top ops")
    parser.add_argument("--json", type=Path, help="write the result here (also printed to the log)")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    device = torch.device(args.device)
    grid = parse_grid(args.grid)
    if args.checkpoint:
        from model.checkpoint import CheckpointError, load_checkpoint

        try:
            model, _ = load_checkpoint(args.checkpoint)
        except CheckpointError as exc:
            raise InputError(str(exc)) from exc
        config = model.config
        config.input_length, config.output_length = args.input_length, args.output_length
    else:
        config = PredRNNConfig(version=args.version, num_hidden=args.num_hidden.split(","),
                               filter_size=args.filter_size, patch_size=args.patch_size,
                               input_length=args.input_length, output_length=args.output_length,
                               height=grid[0], width=grid[1])
        model = PredRNN(config)
    model = model.to(device)
    precision = resolve(args.precision, device)
    log.info("bench %s: %s on %s, grid %s, batch %d, %s%s%s", args.mode, config.num_hidden, device, args.grid,
             args.batch, precision, ", channels_last" if args.channels_last else "", ", fused" if args.fused else "")

    def measure(net: PredRNN, precision: str, fused: bool, channels_last: bool) -> dict[str, Any]:
        if args.mode == "inference":
            result = bench_inference(net, args.batch, grid, args.output_length, precision,
                                     args.warmup, args.repeats, device, fused, channels_last)
            result["gflops_per_s"] = result["gflop"] / result["median_s"]
            return result
        return bench_train(net, args.batch, grid, precision, args.warmup, args.repeats, device)

    baseline = None
    if args.baseline:  # a copy: training steps change the weights
        baseline = measure(copy.deepcopy(model), "fp32", False, False)
        log.info("baseline (fp32, NCHW, three gate convolutions): median %.4f s", baseline["median_s"])
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    result = measure(model, precision, args.fused, args.channels_last)
    if baseline is not None:
        result["speedup_over_baseline"] = baseline["median_s"] / result["median_s"]
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            if args.mode == "inference":
                bench_inference(model, args.batch, grid, args.output_length, precision, 0, 1, device, args.fused,
                                args.channels_last)
            else:
                bench_train(model, args.batch, grid, precision, 0, 1, device)
        log.info("\n%s", prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    report = {
        "command": "nowcast bench " + " ".join(argv),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "mode": args.mode,
        "config": config.to_dict(),
        "grid": list(grid),
        "batch": args.batch,
        "precision": precision,
        "fused": args.fused,
        "channels_last": args.channels_last,
        "device": str(device),
        "seed": args.seed,
        "parameters": model.num_parameters(),
        "machine": machine_info(),
        "result": result,
    }
    if baseline is not None:
        report["baseline"] = {"precision": "fp32", "channels_last": False, "fused": False, "result": baseline}
    write_report(args.json, report)
    log.info("median %.4f s%s%s", result["median_s"],
             f", {result['sequences_per_s']:.2f} sequences/s" if "sequences_per_s" in result else "",
             f", {result['speedup_over_baseline']:.2f}x the baseline" if baseline is not None else "")
    return 0
