"""``nowcast train``: train a preset from ``model/training/configs/*.toml``; resumable, single or multi-GPU.

nowcast train --config model/training/configs/NAME.toml [--out DIR] [--resume] [--device auto|cpu|cuda]
              [--max-iterations N] [--seed N] [--precision fp32|bf16|auto] [--[no-]channels-last] [--compile]
              [--no-test] [--eval-only]
torchrun --standalone --nproc-per-node G -m cli train --config ...   (DistributedDataParallel)

The loop and the run directory it writes are model/training (docs/training.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from model import InputError
from model.checkpoint import CheckpointError
from model.network.precision import PRECISIONS
from model.training.config import TrainConfig, TrainConfigError, build_source, load_config
from model.training.distributed import init_distributed
from model.training.evaluation import final_test
from model.training.loop import train

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nowcast train", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config",
        type=Path,
        help="a preset, e.g. model/training/configs/mnist_v2_cpu.toml "
        "(optional with --resume: the run's own config is used)",
    )
    parser.add_argument("--out", type=Path, help="run directory (default runs/<preset name>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (torchrun: the local rank)")
    parser.add_argument(
        "--max-iterations", type=int, help="stop after this iteration (schedules keep the preset's length)"
    )
    parser.add_argument("--precision", choices=list(PRECISIONS),
                        help="override [run] precision (bf16 autocast on CUDA or a CPU with native bf16)")
    parser.add_argument("--seed", type=int, help="override the preset's seed (initialisation, sampling masks)")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction,
                        help="override [run] channels_last (NHWC weights)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network (CUDA)")
    parser.add_argument("--no-test", action="store_true", help="skip the test-split evaluation at the end")
    parser.add_argument("--eval-only", action="store_true", help="only evaluate --out/best.pt on the test split")
    return parser


def _resolve_config(args: argparse.Namespace) -> TrainConfig:
    if args.config is not None:
        config = load_config(args.config)
    elif args.out is not None and (args.out / "config.json").is_file():
        config = TrainConfig.from_dict(
            json.loads((args.out / "config.json").read_text()), str(args.out / "config.json")
        )
    else:
        raise InputError("--config is required (or --out of an existing run with --resume / --eval-only)")
    overrides: dict[str, Any] = {}
    if args.precision:
        overrides["precision"] = args.precision
    if args.compile:
        overrides["compile"] = True
    if args.channels_last is not None:
        overrides["channels_last"] = args.channels_last
    if overrides:
        config.run = dataclasses.replace(config.run, **overrides)
    if args.seed is not None:  # a new trajectory: --resume refuses it unless it is the run's own seed
        config.seed = args.seed
    return config


def _lagrangian_preset(args: argparse.Namespace) -> Path | None:
    """The preset or run config of the Lagrangian trainer, if that is what was asked for."""
    from model.training.lagrangian import is_lagrangian_preset

    for candidate in (args.config, args.out / "config.json" if args.out else None):
        if candidate is not None and candidate.is_file() and is_lagrangian_preset(candidate):
            return candidate
    return None


def _train_lagrangian(args: argparse.Namespace, preset: Path) -> int:
    from model.training import lagrangian

    if args.eval_only or args.compile or args.channels_last is not None or args.seed is not None:
        raise InputError("the Lagrangian trainer takes --out, --resume, --device, --max-iterations and "
                         "--precision; evaluate its best.pt with nowcast evaluate")
    config = lagrangian.load_config(preset)
    out_dir = args.out or Path("runs") / config.name
    device = "cpu" if args.device == "auto" and not torch.cuda.is_available() else args.device
    summary = lagrangian.train(config, out_dir, resume=args.resume, device=device,
                               max_iterations=args.max_iterations, precision=args.precision)
    return 128 + summary["stopped_by_signal"] if "stopped_by_signal" in summary else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.max_iterations is not None and args.max_iterations < 1:
        raise InputError("--max-iterations must be >= 1")
    preset = _lagrangian_preset(args)
    if preset is not None:
        return _train_lagrangian(args, preset)
    try:
        if args.config is None and args.out is None:
            raise InputError("--config is required")
        config = _resolve_config(args)
        out_dir = args.out or Path("runs") / config.name
        if args.eval_only:
            _, device = init_distributed(args.device)
            final_test(config, out_dir, build_source(config.data), device)
            return 0
        return train(
            config,
            out_dir,
            resume=args.resume,
            device=args.device,
            max_iterations=args.max_iterations,
            run_test=False if args.no_test else None,
        )
    except (TrainConfigError, CheckpointError) as exc:
        raise InputError(str(exc)) from exc
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
