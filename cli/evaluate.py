"""``nowcast evaluate``: score predictions, baselines or checkpoints on the same test sets.

The command line: ``nowcast evaluate``: score predictions or baselines (see model/verification/evaluate.py).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from model import InputError
from model.io.arrays import open_array_file
from model.io.units import DEFAULT_SCALING, Scaling
from model.verification.evaluate import (
    DATA_ALIASES,
    ENSEMBLE_REFERENCE,
    PROTOCOLS,
    SAMPLE_PROBABILITY_DBZ,
    Forecaster,
    as_forecaster,
    ensemble_forecaster,
    run_methods,
    score_arrays,
    steps_forecaster,
    write_outputs,
)
from model.visualization.skill import plot_sample

log = logging.getLogger(__name__)


def _parse_options(pairs: list[str]) -> dict[str, Any]:

    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"--option expects KEY=VALUE, got {pair!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value  # a plain string such as a path
    return options


def _load_array(path: Path, what: str) -> np.ndarray:

    array = open_array_file(path, f"{what} file", mmap=True)
    if array.ndim != 5:
        raise InputError(f"{path}: {what} must be (N, T, C, H, W), got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise InputError(f"{path}: {what} must be floating point in [0, 1], got dtype {array.dtype}")
    return array


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nowcast evaluate", description=__doc__.splitlines()[0])
    given = parser.add_argument_group("score given predictions")
    given.add_argument("--truth", type=Path, help="(N, T, C, H, W) .npy in [0, 1]")
    given.add_argument("--pred", type=Path, help="(N, T, C, H, W) .npy, same shape (clipped to [0, 1])")
    given.add_argument("--context", type=Path, help="optional (N, T_in, C, H, W) .npy, for the sample strips")
    run = parser.add_argument_group("run methods on a test set")
    run.add_argument("--baseline", default="",
                     help="persistence, extrapolation, sprog, steps (comma-separated); steps is pysteps' STEPS "
                          "ensemble and needs --members N > 1")
    run.add_argument("--checkpoint", action="append", default=[], metavar="[NAME=]PATH",
                     help="also score this PredRNN checkpoint (repeatable; NAME labels it, default 'predrnn', "
                          "or the run directory's name when several are given)")
    run.add_argument("--data", help="mnist | synthetic | radar | kth, or any model.data source name")
    run.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                     help="source option, e.g. root=var/feed or test_sequences=300 (repeatable)")
    run.add_argument("--radar-dir", type=Path, help="shorthand for --data radar --option root=DIR")
    run.add_argument("--split", default="test", choices=["test", "valid"])
    run.add_argument("--batch-size", type=int, default=16)
    run.add_argument("--limit", type=int, default=0, help="score only the first N sequences (0 = all)")
    run.add_argument("--device", default="cpu", help="for --checkpoint: cpu | cuda")
    run.add_argument("--members", type=int, default=1,
                     help="ensemble size: with N > 1 each checkpoint is also scored as NAME_ensemble "
                          "(model.ensemble, its calibration beside it), and --baseline steps runs N members")
    run.add_argument("--seed", type=int, default=0,
                     help="ensembles: sequence n of the run uses seed + n (reproducible, each sequence its own)")
    parser.add_argument("--protocol", choices=PROTOCOLS, help="default: paper for unitless data, both for radar")
    parser.add_argument("--json", required=True, type=Path, help="results; .md and _skill.png go next to it")
    parser.add_argument("--samples", default="", help="sequence indices for PNG strips, e.g. 0,7")
    return parser


def _main_arrays(args: argparse.Namespace, keep: tuple[int, ...]) -> int:

    truth, pred = _load_array(args.truth, "truth"), _load_array(args.pred, "prediction")
    if truth.shape != pred.shape:
        raise InputError(f"{args.pred}: shape {pred.shape} differs from the truth's {truth.shape} ({args.truth})")
    protocol = args.protocol or "paper"
    try:
        result = score_arrays(truth, pred, protocol)
    except ValueError as exc:
        raise InputError(f"{args.truth}: {exc}") from exc
    result["truth"], result["pred"] = str(args.truth), str(args.pred)
    written = write_outputs({"predictions": result}, args.json)
    context = _load_array(args.context, "context") if args.context else None
    scaling = DEFAULT_SCALING if protocol != "paper" else {"kind": "identity", "dbz_min": 0.0, "dbz_max": 1.0}
    for index in keep:
        if index >= truth.shape[0]:
            raise InputError(f"--samples: index {index} is beyond the {truth.shape[0]} sequences")
        before = np.asarray(context[index]) if context is not None else np.zeros((0, *truth.shape[2:]))
        sequence = np.concatenate([before, np.asarray(truth[index])])
        written.append(plot_sample(sequence, {"prediction": np.asarray(pred[index])}, before.shape[0],
                                   args.json.with_name(f"{args.json.stem}_sample{index}.png"), scaling))
    log.info("wrote %s", ", ".join(map(str, written)))
    return 0


def _checkpoint_labels(values: list[str]) -> dict[str, Path]:
    """``--checkpoint [NAME=]PATH`` values -> {label: path}; labels must be unique."""

    labels: dict[str, Path] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep:
            path = value
            name = "predrnn" if len(values) == 1 else Path(path).resolve().parent.name
        if name in labels:
            raise InputError(f"--checkpoint: two checkpoints labelled {name!r}; name them with NAME=PATH")
        labels[name] = Path(path)
    return labels


def _load_model(path: Path) -> Any:
    from model.checkpoint import CheckpointError, load_checkpoint

    try:
        model, _ = load_checkpoint(path)
    except CheckpointError as exc:
        raise InputError(str(exc)) from exc
    return model


def _checkpoint_forecaster(path: Path, scaling: Scaling, device: str) -> Forecaster:
    return as_forecaster(_load_model(path), scaling, device)[1]


def _checkpoint_ensemble(path: Path, scaling: Scaling, device: str, members: int, seed: int) -> Forecaster:
    from model.ensemble import EnsembleSettings

    try:
        settings = EnsembleSettings.for_checkpoint(path)
    except ValueError as exc:  # a calibration file beside the checkpoint that is not one
        raise InputError(f"--checkpoint {path}: {exc}") from exc
    return ensemble_forecaster(_load_model(path), scaling, members, seed, settings, device)


def _check_members(members: int) -> int:
    from model.ensemble import check_members

    try:
        return check_members(members)
    except ValueError as exc:
        raise InputError(f"--members: {exc}") from exc


def main(argv: list[str]) -> int:

    args = build_parser().parse_args(argv)
    try:
        keep = tuple(int(s) for s in args.samples.split(",") if s.strip())
    except ValueError as exc:
        raise InputError(f"--samples must be comma-separated integers, got {args.samples!r}") from exc
    if args.truth or args.pred:
        if not (args.truth and args.pred):
            raise InputError("--truth and --pred go together")
        if args.baseline or args.checkpoint or args.data:
            raise InputError("give either --truth/--pred or methods (--baseline/--checkpoint) with --data")
        return _main_arrays(args, keep)

    options = _parse_options(args.option)
    data = args.data
    if args.radar_dir:
        data = data or "radar"
        options.setdefault("root", str(args.radar_dir))
    if not data:
        raise InputError("give --truth/--pred, or --data with --baseline and/or --checkpoint")
    names = [b.strip() for b in args.baseline.split(",") if b.strip()]
    if not names and not args.checkpoint:
        raise InputError("nothing to evaluate: give --baseline and/or --checkpoint")
    from model.data import get_method as get_source

    try:
        source = get_source(DATA_ALIASES.get(data, data))(**options)
    except (TypeError, ValueError) as exc:  # bad option names or values, unknown source, bad files
        raise InputError(f"--data {data}: {exc}") from exc
    scaling: Scaling = getattr(source, "scaling", DEFAULT_SCALING)
    members = _check_members(args.members)
    methods: dict[str, Forecaster] = {}
    for name in names:
        if name.lower() == ENSEMBLE_REFERENCE:
            if members < 2:
                raise InputError("--baseline steps is an ensemble: give --members N with N > 1")
            if scaling.get("kind") == "identity":
                raise InputError(f"--baseline steps needs reflectivity; --data {data} has no physical unit")
            methods[ENSEMBLE_REFERENCE] = steps_forecaster(scaling, members, args.seed,
                                                           float(getattr(source, "timestep_minutes", None) or 6.0))
            continue
        try:
            label, forecaster = as_forecaster(name, scaling)
        except ValueError as exc:
            raise InputError(f"--baseline: {exc}") from exc
        methods[label] = forecaster
    for label, path in _checkpoint_labels(args.checkpoint).items():
        labels = [label, f"{label}_ensemble"] if members > 1 else [label]
        for taken in labels:
            if taken in methods:
                raise InputError(f"--checkpoint: the label {taken!r} is taken by a baseline; use NAME=PATH")
        methods[label] = _checkpoint_forecaster(path, scaling, args.device)
        if members > 1:
            methods[f"{label}_ensemble"] = _checkpoint_ensemble(path, scaling, args.device, members, args.seed)
    try:
        results, scorers, kept = run_methods(methods, source, args.split, args.protocol,
                                             batch_size=args.batch_size, max_sequences=args.limit, keep=keep)
    except ValueError as exc:
        raise InputError(f"--data {data}: {exc}") from exc
    for result in results.values():
        result["data"] = data
    written = write_outputs(results, args.json)
    for index in keep:
        if index not in kept:
            raise InputError(f"--samples: index {index} is beyond the {next(iter(scorers.values())).seen} sequences")
        # An ensemble's row is its members' mean; its probability of 30 dBZ goes in a strip of its own.
        predictions = {name if (scorer.members or 1) == 1 else f"{name} mean": scorer.samples[index]
                       for name, scorer in scorers.items()}
        written.append(plot_sample(kept[index], predictions, int(source.input_length),
                                   args.json.with_name(f"{args.json.stem}_sample{index}.png"), scaling))
        probabilities = {name: scorer.probabilities[index] for name, scorer in scorers.items()
                         if index in scorer.probabilities}
        if probabilities:
            from model.visualization.ensemble import plot_probability_strip

            written.append(plot_probability_strip(
                probabilities, args.json.with_name(f"{args.json.stem}_sample{index}_probability.png"),
                f"{SAMPLE_PROBABILITY_DBZ:g} dBZ", timestep_minutes=getattr(source, "timestep_minutes", None)))
    log.info("wrote %s", ", ".join(map(str, written)))
    return 0
