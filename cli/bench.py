"""``nowcast bench``: time PredRNN inference and training steps on synthetic frames; writes JSON.

The command line of benchmarks/bench.py (the timing functions and the report): see there for the
options and what the JSON holds.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import logging
import os
from pathlib import Path
from typing import Any

import torch

from benchmarks.bench import bench_inference, bench_train, machine_info, parse_grid, write_report
from model import InputError
from model.network.precision import resolve
from model.network.predrnn import PredRNN, PredRNNConfig

log = logging.getLogger(__name__)


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
