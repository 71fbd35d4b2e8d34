"""``nowcast predict``: run a checkpoint over a sequence of frames.

.npy in model space [0, 1]: (B, T, C, H, W), (T, C, H, W) or (T, H, W) float; the output is the
raw network output for the requested future frames, same rank, not clipped, so it compares
number for number with other implementations. For .nc (CF radar scans in dBZ) see
``model/io/netcdf.py``; the output is then a CF forecast product. ``--members M`` (M > 1, .nc
input and output only) writes the ensemble product of ``model.ensemble`` instead, its members
drawn from ``--seed`` with the calibration shipped beside the checkpoint.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from model import InputError
from model.checkpoint import CheckpointError, config_from_official_flags, load_checkpoint, load_official
from model.forecast import forecast_dbz, forecast_frames
from model.io.arrays import open_array_file
from model.io.units import DEFAULT_SCALING, Scaling, dbz_to_model
from model.network.precision import resolve
from model.network.predrnn import PredRNN

if TYPE_CHECKING:
    from model.ensemble import EnsembleSettings

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nowcast predict", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, type=Path,
                        help="our checkpoint, or the authors' with --official")
    parser.add_argument("--input", required=True, type=Path, help=".npy frames in [0, 1] or .nc radar scans")
    parser.add_argument("--steps", required=True, type=int, help="number of future frames to predict")
    parser.add_argument("--output", required=True, type=Path, help=".npy (raw output) or .nc (CF product)")
    parser.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="fp32",
                        help="fp32 (default, exact) | bf16 autocast | auto (bf16 where the hardware has it)")
    parser.add_argument("--fused", action=argparse.BooleanOptionalAction,
                        help="two gate convolutions per layer instead of three (default: on for bf16)")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction,
                        help="NHWC frames, states and weights (default: on for bf16)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    parser.add_argument("--members", type=int, default=1,
                        help="ensemble members (1: the deterministic forecast; more: the ensemble product, .nc only)")
    parser.add_argument("--seed", type=int, default=0, help="the ensemble's seed: the same seed, the same members")
    official = parser.add_argument_group("authors' checkpoints (names of their run.py flags)")
    official.add_argument("--official", action="store_true", help="the checkpoint is {'net_param': ...} from run.py")
    official.add_argument("--model-name", choices=["predrnn", "predrnn_v2"], default="predrnn_v2")
    official.add_argument("--num-hidden", default="128,128,128,128")
    official.add_argument("--filter-size", type=int, default=5)
    official.add_argument("--patch-size", type=int, default=4)
    official.add_argument("--img-channel", type=int, default=1)
    official.add_argument("--img-width", type=int, default=64)
    official.add_argument("--layer-norm", type=int, choices=[0, 1], default=0)
    official.add_argument("--input-length", type=int, default=10)
    official.add_argument("--total-length", type=int, default=20)
    return parser


def load_model(args: argparse.Namespace) -> tuple[PredRNN, dict]:
    try:
        if args.official:
            config = config_from_official_flags(
                args.model_name, args.num_hidden, args.filter_size, args.patch_size, args.img_channel,
                args.layer_norm, args.img_width, args.input_length, args.total_length,
            )
            return load_official(args.checkpoint, config), {"source": "official"}
        return load_checkpoint(args.checkpoint)
    except (CheckpointError, ValueError) as exc:
        raise InputError(str(exc)) from exc


def read_npy_frames(path: Path) -> tuple[np.ndarray, int]:
    """Load frames and return them as (B, T, C, H, W) float32 with the original rank."""
    array = open_array_file(path, "input file")
    if not np.issubdtype(array.dtype, np.number):
        raise InputError(f"{path}: expected a numeric array, found dtype {array.dtype}")
    rank = array.ndim
    if rank == 3:
        frames = array[None, :, None]
    elif rank == 4:
        frames = array[None]
    elif rank == 5:
        frames = array
    else:
        raise InputError(f"{path}: expected (B, T, C, H, W), (T, C, H, W) or (T, H, W); got shape {array.shape}")
    if frames.shape[1] < 2:
        raise InputError(f"{path}: needs at least 2 frames along T, found {frames.shape[1]}")
    if not np.isfinite(frames).all():
        raise InputError(f"{path}: contains NaN or infinite values (model space needs finite numbers in [0, 1])")
    return frames.astype(np.float32, copy=False), rank


def predict_netcdf(model: PredRNN, meta: dict[str, Any], args: argparse.Namespace, precision: str,
                   device: torch.device) -> int:
    """``nowcast predict`` for CF input: read, scale with ``meta["scaling"]``, forecast, write.

    ``.nc`` output is the CF product (dBZ); ``.npy`` output is the raw model-space forecast
    (steps, H, W), unclipped, as for .npy input.
    """
    # Here rather than at the top: xarray (and pandas under it) is about a second of start-up
    # that a .npy forecast does not need.
    from model.io.netcdf import RadarInputError, file_sha256, read_scans, write_forecast

    if args.input.suffix != ".nc" and not args.input.is_dir():
        raise InputError(f"{args.input}: a .nc output needs CF netCDF input (a .nc file or a directory)")
    if args.output.suffix not in (".nc", ".npy"):
        raise InputError(f"{args.output}: output must end in .nc or .npy")
    timestep = float(getattr(args, "timestep_minutes", 6))
    try:
        sequence = read_scans(args.input, timestep_minutes=timestep, min_scans=1)
    except RadarInputError as exc:
        raise InputError(str(exc)) from exc
    context = model.config.input_length
    if sequence.times.size < context:
        log.warning("%s: %d scans, the model was trained on %d", args.input, sequence.times.size, context)
    sequence = sequence.tail(context)
    scaling: Scaling = meta.get("scaling") or DEFAULT_SCALING
    if args.output.suffix == ".npy":
        frames = dbz_to_model(sequence.dbz, scaling)[None, :, None]
        raw = forecast_frames(model, frames, args.steps, precision, device, args.fused, args.channels_last,
                              scaling)[0, :, 0]
        args.output.parent.mkdir(parents=True, exist_ok=True)
        np.save(args.output, raw)
        log.info("wrote %s %s (raw model space)", args.output, raw.shape)
        return 0
    started = time.perf_counter()
    timings: dict[str, float] = {}
    ensemble: dict[str, Any] = {}
    try:
        if args.members == 1:  # today's path exactly: the deterministic forecast and product
            forecast = forecast_dbz(model, sequence.dbz, args.steps, scaling=scaling, precision=precision,
                                    device=device, fused=args.fused, channels_last=args.channels_last)
        else:
            from model.ensemble import forecast_ensemble_dbz

            settings = ensemble_settings(args.checkpoint)
            forecast = forecast_ensemble_dbz(model, sequence.dbz, args.steps, members=args.members, seed=args.seed,
                                             settings=settings, scaling=scaling, precision=precision, device=device,
                                             timings=timings)
            ensemble = {"ensemble_seed": args.seed,
                        "ensemble_perturbation": settings.describe()}
    except ValueError as exc:  # e.g. one scan for a Lagrangian model, which needs two for its motion
        raise InputError(f"{args.input}: {exc}") from exc
    elapsed = time.perf_counter() - started
    checkpoint_hash = file_sha256(args.checkpoint)
    write_forecast(
        args.output, forecast,
        reference_time=sequence.times[-1],
        lead_minutes=[timestep * (k + 1) for k in range(args.steps)],
        grid=sequence.grid,
        model=f"PredRNN-{model.config.version}",
        model_version=checkpoint_hash,
        checkpoint_sha256=checkpoint_hash,
        source="predrnn",
        input_times=sequence.times,
        extra_attrs={"precision": precision, "model_frame": model.config.frame},
        **ensemble,
    )
    if args.members == 1:
        log.info("wrote %s: %d lead times from %d scans (%s, %.2f s)", args.output, args.steps,
                 sequence.times.size, precision, elapsed)
    else:
        stages = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in timings.items())
        log.info("wrote %s: %d members x %d lead times from %d scans, seed %d (%s, %.2f s: %s)", args.output,
                 args.members, args.steps, sequence.times.size, args.seed, precision, elapsed, stages)
    return 0


def ensemble_settings(checkpoint: Path) -> EnsembleSettings:
    """The ensemble calibration beside ``checkpoint`` (or the defaults); a broken one is an InputError."""
    from model.ensemble import EnsembleSettings

    try:
        return EnsembleSettings.for_checkpoint(checkpoint)
    except ValueError as exc:
        raise InputError(str(exc)) from exc


def check_members_option(args: argparse.Namespace) -> None:
    """InputError unless ``--members`` is 1..MAX_MEMBERS, and 1 for .npy output (raw model space)."""
    from model.ensemble import check_members

    try:
        check_members(args.members)
    except ValueError as exc:
        raise InputError(f"--members: {exc}") from exc
    if args.members > 1 and args.output.suffix != ".nc":
        raise InputError(f"{args.output}: --members {args.members} writes the ensemble product, which needs "
                         ".nc output (a .npy output holds one raw forecast)")


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.steps < 1:
        raise InputError(f"--steps must be at least 1, got {args.steps}")
    check_members_option(args)
    device = torch.device(args.device)
    if args.input.suffix == ".nc" or args.output.suffix == ".nc":
        model, meta = load_model(args)
        return predict_netcdf(model, meta, args, resolve(args.precision, device), device)
    if args.output.suffix != ".npy":
        raise InputError(f"{args.output}: output must end in .npy or .nc")
    frames, rank = read_npy_frames(args.input)
    model, meta = load_model(args)
    if frames.shape[2] != model.config.channels:
        raise InputError(f"{args.input}: has {frames.shape[2]} channel(s), the model takes {model.config.channels}")
    precision = resolve(args.precision, device)
    started = time.perf_counter()
    try:
        predicted = forecast_frames(model, frames, args.steps, precision, device, args.fused, args.channels_last,
                                    meta.get("scaling") or DEFAULT_SCALING)
    except ValueError as exc:  # e.g. a layer-norm model given another grid
        raise InputError(f"{args.input}: {exc}") from exc
    elapsed = time.perf_counter() - started
    if rank == 4:
        predicted = predicted[0]
    elif rank == 3:
        predicted = predicted[0, :, 0]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.save(args.output, predicted)
    log.info("wrote %s %s (%s, %.2f s)", args.output, predicted.shape, precision, elapsed)
    return 0
