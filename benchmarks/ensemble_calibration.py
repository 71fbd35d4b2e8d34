"""Calibrate and choose the ensemble's perturbations on validation storms, minimising CRPS per lead.

    OMP_NUM_THREADS=1 python -m benchmarks.ensemble_calibration \
        --checkpoint model/checkpoints/radar_lagrangian.pt --sequences 30 --members 20 \
        --json results/ensemble/calibration.json [--write-settings]

For every validation storm (the synthetic source's ``valid`` split, never the test storms) the
network runs once; each member's random draws (motion offset, noise fields, echo shift) are
drawn once per storm and scaled by every combination on a grid of amplitudes: a motion offset of
``displacement_px`` (px, per axis), a decorrelation ``c`` of the forecast's scales, an
intensity matching share ``a`` and an intensity spread ``s`` (dB; model/ensemble.py). The
deterministic forecast is scored too, whatever the grid. The CRPS, the spread-skill ratio and
the Brier score at 20 and 30 dBZ of every combination at every lead are summed over the storms
(dBZ, below 0 dBZ counted as 0 dBZ, as the verification scores it).

The JSON has, per lead, the best combination of each family of perturbations (motion only,
scales only, both) and the CRPS each reaches, next to the deterministic forecast's (all zero: its
MAE), and the spread-skill ratio of the chosen one. The served choice is the bounded selection
over the whole grid; ``--write-settings`` writes its amplitudes beside the checkpoint as
``<stem>.ensemble.json`` (model/ensemble.py reads it), with this run's provenance.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from benchmarks.machine import machine_description
from benchmarks.report import emit_json
from model.checkpoint import load_checkpoint
from model.data.synthetic import SyntheticRadar
from model.ensemble import (
    CASE_MEASURES,
    FOLLOWS_CASE,
    EnsembleSettings,
    apply_perturbations,
    calibration_path,
    draw_perturbations,
    hindcast_error,
    match_intensities,
    motion_change,
    newest_pair,
)
from model.forecast import forecast_lagrangian_frames
from model.io.units import model_to_dbz

log = logging.getLogger("benchmarks.ensemble_calibration")

DISPLACEMENTS_PX = (0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0, 12.0, 15.0, 20.0, 25.0, 30.0)
DECORRELATIONS = (0.0, 0.5, 1.0, 2.0)
INTENSITY_MATCHING = (0.0,)
INTENSITY_SPREADS_DB = (0.0,)
BRIER_THRESHOLDS_DBZ = (20.0, 30.0)
SCORE_FLOOR_DBZ = 0.0  # as model/verification/probabilistic.py: below 0 dBZ is no echo
FAMILIES = {"motion": lambda d, c: c == 0.0, "scales": lambda d, c: d == 0.0, "both": lambda d, c: True}
# (displacement px, decorrelation, intensity matching share, intensity spread dB)
Combo = tuple[float, float, float, float]
DETERMINISTIC: Combo = (0.0, 0.0, 0.0, 0.0)


def grid_axes(args: argparse.Namespace) -> tuple[tuple[float, ...], ...]:
    """The grid's values of each amplitude: displacements, decorrelations, shares, intensity spreads."""
    return (DISPLACEMENTS_PX, *(tuple(float(v) for v in text.split(",")) for text in
                                (args.decorrelations, args.intensity_matching, args.intensity_spreads)))


def grid_pairs(axes: tuple[tuple[float, ...], ...]) -> list[Combo]:
    """Every combination of the axes, after the deterministic forecast, which is always scored."""
    return list(dict.fromkeys([DETERMINISTIC, *itertools.product(*axes)]))


def crps_per_lead(members: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """members (M, K, H, W), truth (K, H, W) dBZ -> per lead: CRPS sum, ensemble variance sum, squared error sum.

    The standard ensemble CRPS from sorted members: mean |x - y| - (1 / M^2) sum_i (2i - M - 1) x_(i).
    """
    import torch

    x = torch.from_numpy(members).clamp_min(SCORE_FLOOR_DBZ)
    y = torch.from_numpy(truth).clamp_min(SCORE_FLOOR_DBZ)
    m = x.shape[0]
    absolute = (x - y[None]).abs().mean(dim=0)
    ordered, _ = torch.sort(x, dim=0)
    weights = (2.0 * torch.arange(1, m + 1, dtype=x.dtype) - m - 1).view(m, 1, 1, 1)
    spread_term = (weights * ordered).sum(dim=0) / (m * m)
    crps = (absolute - spread_term).sum(dim=(1, 2))
    mean = x.mean(dim=0)
    variance = x.var(dim=0, unbiased=True) if m > 1 else torch.zeros_like(mean)
    return crps.double().numpy(), variance.sum(dim=(1, 2)).double().numpy(), \
        ((mean - y) ** 2).sum(dim=(1, 2)).double().numpy()


def brier_per_lead(members: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """members (M, K, H, W), truth (K, H, W) dBZ -> (K, thresholds) Brier score sums at BRIER_THRESHOLDS_DBZ."""
    out = np.empty((truth.shape[0], len(BRIER_THRESHOLDS_DBZ)))
    for j, threshold in enumerate(BRIER_THRESHOLDS_DBZ):
        probability = (members >= threshold).mean(axis=0, dtype=np.float64)
        out[:, j] = ((probability - (truth >= threshold)) ** 2).sum(axis=(1, 2))
    return out


def _chosen(pairs: list[Combo], best: list[int], crps: np.ndarray, ratio: np.ndarray) -> dict[str, list[float]]:
    return {
        "displacement_px": [pairs[b][0] for b in best], "decorrelation": [pairs[b][1] for b in best],
        "intensity_matching": [pairs[b][2] for b in best], "intensity_spread_db": [pairs[b][3] for b in best],
        "crps_dbz": [round(float(crps[b, k]), 4) for k, b in enumerate(best)],
        "spread_skill": [round(float(ratio[b, k]), 3) for k, b in enumerate(best)],
    }


def _best(pairs: list[Combo], crps: np.ndarray, ratio: np.ndarray, min_ratio: float) -> dict[str, list[float]]:
    """Per lead, the pair of least CRPS among those with a spread-skill ratio of at least ``min_ratio``.

    A forecaster reads an ensemble's spread as its uncertainty: the least-CRPS pair of these
    perturbations is under-dispersed (ratio about 0.6-0.7), so the served one is the least-CRPS
    pair that is dispersed enough; where no pair is, the most dispersed one.
    """
    eligible = np.where(ratio >= min_ratio, crps, np.inf)
    best = eligible.argmin(axis=0)
    fallback = np.where(np.isfinite(crps), ratio, -np.inf).argmax(axis=0)
    best = np.where(np.isfinite(eligible.min(axis=0)), best, fallback)
    return _chosen(pairs, [int(b) for b in best], crps, ratio)


def _dispersed_within(pairs: list[Combo], crps: np.ndarray, ratio: np.ndarray, ceiling: np.ndarray,
                      brier: np.ndarray | None = None, brier_ceiling: np.ndarray | None = None
                      ) -> dict[str, list[float]]:
    """Per lead, the combination whose spread-skill ratio is nearest 1 among those with a CRPS below ``ceiling[k]``
    and, given ``brier`` (combos, K, thresholds) and ``brier_ceiling`` (K, thresholds), a Brier score below
    the ceiling at every threshold.

    Where none meets the Brier ceilings, the CRPS ceiling alone decides; where none is below that
    either, the least-CRPS combination. Ties in the ratio go to the lower CRPS.
    """
    best = []
    for k in range(crps.shape[1]):
        under = np.flatnonzero(crps[:, k] < ceiling[k])
        if brier is not None and brier_ceiling is not None:
            sharp = under[np.all(brier[under, k] < brier_ceiling[k], axis=-1)]
            under = sharp if sharp.size else under
        if under.size == 0:
            best.append(int(np.argmin(crps[:, k])))
            continue
        order = np.lexsort((crps[under, k], np.abs(ratio[under, k] - 1.0)))
        best.append(int(under[order[0]]))
    return _chosen(pairs, best, crps, ratio)


FLOW_ENTROPY = 98  # the calibration's flows; the training splits use 11 and 12, benchmarks.ensemble_shift 99


Validation = tuple[SyntheticRadar, list[np.ndarray]]  # the source (input length, scaling), the cases' batches


def validation_batches(args: argparse.Namespace) -> Validation:
    """The synthetic source (for its input length and scaling) and the calibration's cases in batches of 4.

    Made once per run: the motion-change pass, the grid and STEPS all score the same cases.

    ``args.sequences`` validation storms of the synthetic source, then ``args.flows`` cases of each
    kind of ``model.training.lagrangian.evolving_storm`` (a developed storm field, then rain with a
    composite's texture, set in motion with one region growing and another decaying): the other
    half of the default model's training data, and the kind the real composite cases are.
    (B, T, 1, H, W) in model space.
    """
    from model.io.units import dbz_to_model
    from model.training.lagrangian import evolving_storm

    height, width = (int(v) for v in args.grid.split("x"))
    source = SyntheticRadar(height=height, width=width, valid_sequences=args.sequences, output_length=args.steps)

    def batches() -> Iterator[np.ndarray]:
        yield from source.eval_batches("valid", 4)
        for textured in (False, True):
            for start in range(0, args.flows, 4):
                cases = []
                for i in range(start, min(start + 4, args.flows)):
                    entropy = [args.seed, FLOW_ENTROPY, int(textured), i]
                    cases.append(evolving_storm(np.random.default_rng([*entropy, 1]), entropy,
                                                source.input_length + args.steps, height, width, textured=textured))
                yield dbz_to_model(np.stack(cases), source.scaling)[:, :, None].astype(np.float32)

    return source, list(batches())


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ensemble_calibration",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("model/checkpoints/radar_lagrangian.pt"))
    parser.add_argument("--sequences", type=int, default=30, help="validation storms")
    parser.add_argument("--flows", type=int, default=0,
                        help="also this many cases of each kind of flow that grows and decays its rain "
                             "(a storm field, textured rain; model.training.lagrangian.evolving_storm)")
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument("--grid", default="128x128")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="draws of storm i use seed + i")
    parser.add_argument("--min-spread-skill", type=float, default=0.9,
                        help="choose the lowest CRPS among the pairs at least this dispersed (0: no bound)")
    parser.add_argument("--with-steps", action="store_true",
                        help="also score pysteps STEPS on the same storms (its CRPS and spread-skill per lead)")
    parser.add_argument("--steps-margin", type=float, default=0.0,
                        help="with STEPS scored: per lead, the pair nearest a spread-skill of 1 among those whose CRPS "
                             "is at least this share below STEPS' (0: not used)")
    parser.add_argument("--predictability-exponent", type=float, default=0.0,
                        help="scale each storm's offsets by (its case measure / the storms' median) ** this "
                             "(0: the same offsets for every storm)")
    parser.add_argument("--case-measure", choices=CASE_MEASURES, default="motion_change",
                        help="what the case's factor is read off: its motion change (model.ensemble.motion_change) "
                             "or its context's hindcast error (model.ensemble.hindcast_error)")
    parser.add_argument("--decorrelations", default=",".join(f"{v:g}" for v in DECORRELATIONS),
                        help="the decorrelation amplitudes of the grid, comma-separated (0 alone: motion only)")
    parser.add_argument("--intensity-matching", default=",".join(f"{v:g}" for v in INTENSITY_MATCHING),
                        help="the intensity matching shares of the grid, comma-separated, with 0 "
                             "(model.ensemble.match_intensities)")
    parser.add_argument("--intensity-spreads", default=",".join(f"{v:g}" for v in INTENSITY_SPREADS_DB),
                        help="the intensity spreads of the grid (dB, the std of each member's echo shift), "
                             "comma-separated, with 0")
    parser.add_argument("--rearranged-from", type=float, default=EnsembleSettings().rearranged_from_dbz,
                        help="dBZ: the decorrelated scales rearrange only the pixels at or above this level")
    parser.add_argument("--follows-case", choices=FOLLOWS_CASE, default="offsets",
                        help="what the case's predictability factor scales: the offsets, or all the amplitudes")
    parser.add_argument("--flows-as-constraint", action="store_true",
                        help="choose on the storms alone, among the combinations whose CRPS on the --flows cases "
                             "is not above the deterministic forecast's there (STEPS is scored on the storms only)")
    parser.add_argument("--uncentred", action="store_true",
                        help="independent offsets, as before they were centred (to measure what centring gives)")
    parser.add_argument("--steps-reference-from", type=Path,
                        help="take STEPS' scores from an earlier run's JSON on the same storms and seed")
    parser.add_argument("--from-grid", type=Path,
                        help="reselect from the grid scores of an earlier run's JSON instead of measuring")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--write-settings", action="store_true", help="write <checkpoint stem>.ensemble.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    _, decorrelations, shares, spreads = axes = grid_axes(args)
    if 0.0 not in decorrelations or 0.0 not in spreads:
        parser.error("--decorrelations and --intensity-spreads must include 0 (the unperturbed forecast)")
    if not all(0.0 <= a <= 1.0 for a in shares):
        parser.error("--intensity-matching shares must be in [0, 1]")
    if min(spreads) < 0:
        parser.error("--intensity-spreads must not be negative")
    if args.flows_as_constraint and not args.flows and not args.from_grid:
        parser.error("--flows-as-constraint needs --flows")
    pairs = grid_pairs(axes)
    started = time.perf_counter()
    validation: Validation | None = None
    reference = None
    if args.steps_reference_from:
        earlier = json.loads(args.steps_reference_from.read_text())
        # With the flows as a constraint STEPS is scored on the storms alone, as a run without flows scored it.
        flows = 0 if args.flows_as_constraint else args.flows
        if (earlier["sequences"], earlier.get("flows", 0) if not earlier.get("flows_as_constraint") else 0,
                earlier["seed"], earlier["grid"], earlier["members"]) != (
                args.sequences, flows, args.seed, args.grid, args.members) or not earlier.get("steps_reference"):
            raise SystemExit(f"{args.steps_reference_from}: its STEPS scores are of other storms, seeds or members")
        reference = earlier["steps_reference"]
    if args.from_grid:
        earlier = json.loads(args.from_grid.read_text())
        grids = (earlier["grid_displacement_px"], earlier["grid_decorrelation"],
                 earlier.get("grid_intensity_matching", [0.0]), earlier.get("grid_intensity_spread_db", [0.0]))
        if [list(axis) for axis in axes] != [list(g) for g in grids]:
            raise SystemExit(f"{args.from_grid}: measured on another grid of amplitudes; measure again")
        if earlier.get("rearranged_from_dbz", args.rearranged_from) != args.rearranged_from:
            raise SystemExit(f"{args.from_grid}: its cores were rearranged from {earlier['rearranged_from_dbz']} dBZ, "
                             f"not {args.rearranged_from}; measure again")
        measured_with = earlier.get("follows_case", "offsets")
        if measured_with != args.follows_case:
            raise SystemExit(f"{args.from_grid}: measured with follows_case {measured_with!r}; measure again")
        measured_with = earlier.get("case_measure", "motion_change")
        if args.predictability_exponent > 0 and measured_with != args.case_measure:
            raise SystemExit(f"{args.from_grid}: measured with case_measure {measured_with!r}; measure again")
        crps, ratio = np.array(earlier["grid_crps_dbz"]), np.array(earlier["grid_spread_skill"])
        brier = np.array(earlier["grid_brier"]) if earlier.get("grid_brier") else None
        by_kind = {kind: (np.array(v["crps_dbz"]), np.array(v["spread_skill"]), np.array(v["brier"]))
                   for kind, v in earlier["grid_by_kind"].items()} if earlier.get("grid_by_kind") else None
        args.flows = earlier.get("flows", 0)
        if args.flows_as_constraint and by_kind is None:
            raise SystemExit(f"{args.from_grid}: has no scores per kind of case; measure again")
        seen, seconds = earlier["sequences"] + 2 * args.flows, earlier["seconds"]
        reference = reference or earlier.get("steps_reference")
        args.reference_measure = earlier.get(reference_key(args.case_measure))
    else:
        validation = validation_batches(args)
        crps, ratio, brier, seen, by_kind = measure(args, pairs, validation)
        seconds = round(time.perf_counter() - started, 1)
    if args.with_steps and reference is None:
        reference = measure_steps(args, validation or validation_batches(args))
    return report(args, pairs, crps, ratio, brier, seen, seconds, reference, by_kind)


def measure_steps(args: argparse.Namespace, validation: Validation) -> dict[str, list[float]]:
    """pysteps STEPS on the same validation storms (storm i with seed + i): CRPS, spread-skill and Brier per lead."""
    from model.baselines import steps_ensemble

    height, width = (int(v) for v in args.grid.split("x"))
    source, cases = validation
    total = args.sequences if args.flows_as_constraint else args.sequences + 2 * args.flows
    crps, variance, squared = np.zeros(args.steps), np.zeros(args.steps), np.zeros(args.steps)
    brier = np.zeros((args.steps, len(BRIER_THRESHOLDS_DBZ)))
    seen = 0
    for batch in cases:
        for sequence in batch[: total - seen]:
            dbz = model_to_dbz(sequence[:, 0], source.scaling)
            members = steps_ensemble(dbz[: source.input_length], args.steps, members=args.members,
                                     seed=args.seed + seen)
            c, v, q = crps_per_lead(members, dbz[source.input_length:])
            crps, variance, squared = crps + c, variance + v, squared + q
            brier += brier_per_lead(members, dbz[source.input_length:])
            seen += 1
        log.info("STEPS: %d / %d cases", seen, total)
    ratio = np.sqrt((args.members + 1) / args.members) * np.sqrt(variance / np.maximum(squared, 1e-12))
    return {"crps_dbz": np.round(crps / (seen * height * width), 4).tolist(),
            "spread_skill": np.round(ratio, 3).tolist(),
            "brier": np.round(brier / (seen * height * width), 6).tolist()}


KINDS = ("storms", "flows")  # the calibration's cases: validation storms first, then the --flows cases


# (combos, steps) CRPS and spread-skill, (combos, steps, thresholds) Brier score
Scores = tuple[np.ndarray, np.ndarray, np.ndarray]


def measure(args: argparse.Namespace, pairs: list[Combo], validation: Validation
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, dict[str, Scores] | None]:
    """(combos, steps) CRPS in dBZ and spread-skill ratio and (combos, steps, thresholds) Brier score of
    every combination over every case; the cases scored; and, with ``--flows``, the same three per
    kind of case (:data:`KINDS`)."""
    import torch

    model, meta = load_checkpoint(args.checkpoint)
    model.eval()
    scaling = meta.get("scaling") or SyntheticRadar().scaling
    source, cases = validation
    total = args.sequences + 2 * args.flows
    crps = np.zeros((len(KINDS), len(pairs), args.steps))
    variance = np.zeros_like(crps)
    squared = np.zeros_like(crps)
    brier = np.zeros((len(KINDS), len(pairs), args.steps, len(BRIER_THRESHOLDS_DBZ)))
    seen = 0
    started = last = time.perf_counter()
    floor, cap = float(scaling["dbz_min"]), float(scaling["dbz_max"])
    settings = EnsembleSettings()
    measures = case_measures(validation, floor, args.case_measure) if args.predictability_exponent > 0 else None
    if measures is not None:
        # The reference is the storms' median, with or without flows: the factor is 1 for a typical storm.
        args.reference_measure = round(float(np.nanmedian(measures[: args.sequences])), 5)
        settings = EnsembleSettings(predictability_exponent=args.predictability_exponent,
                                    case_measure=args.case_measure, follows_case=args.follows_case,
                                    **{reference_key(args.case_measure): args.reference_measure})
        log.info("%s of the storms: median %.4f, range %.4f-%.4f", args.case_measure, args.reference_measure,
                 float(np.nanmin(measures)), float(np.nanmax(measures)))
    for batch in cases:
        context, truth = batch[:, : source.input_length], batch[:, source.input_length:]
        with torch.inference_mode():
            predicted, motions = forecast_lagrangian_frames(model, context, args.steps, "fp32", torch.device("cpu"),
                                                            scaling=scaling)
        for i in range(batch.shape[0]):
            kind = 0 if seen < args.sequences else 1
            lagrangian = model_to_dbz(predicted[i, :, 0], scaling)
            truth_dbz = model_to_dbz(truth[i, :, 0], scaling)
            motion = None if motions is None else motions[i]
            previous, newest = (model_to_dbz(f, scaling) for f in newest_pair(context[i, :, 0], motion))
            draws = draw_perturbations(previous, newest, args.members, args.seed + seen, settings.cascade_levels,
                                       centred=not args.uncentred)
            scale, decorrelation_scale, share_scale = settings.case_factors(
                None if measures is None else measures[seen])
            matched = {a: match_intensities(lagrangian, newest, a * share_scale)
                       for a in dict.fromkeys(p[2] for p in pairs)}
            for p, (d, n, a, v) in enumerate(pairs):
                members = apply_perturbations(matched[a], motion, draws, np.full(args.steps, d * scale),
                                              np.full(args.steps, n * decorrelation_scale), floor, cap,
                                              np.full(args.steps, v), args.rearranged_from)
                c, v, s = crps_per_lead(members, truth_dbz)
                crps[kind, p] += c
                variance[kind, p] += v
                squared[kind, p] += s
                brier[kind, p] += brier_per_lead(members, truth_dbz)
            seen += 1
        now = time.perf_counter()
        if now - last > 20:
            rate = seen / (now - started)
            log.info("%d / %d cases, %.2f cases/s, ETA %.0f s", seen, total, rate, (total - seen) / rate)
            last = now
    height, width = (int(v) for v in args.grid.split("x"))
    counts = np.array([args.sequences, 2 * args.flows], dtype=np.float64) * height * width
    correction = np.sqrt((args.members + 1) / args.members)

    def scores(rows: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pixels = counts[rows].sum()
        ratio = correction * np.sqrt(variance[rows].sum(0) / pixels) / np.sqrt(
            np.maximum(squared[rows].sum(0) / pixels, 1e-12))
        return crps[rows].sum(0) / pixels, ratio, brier[rows].sum(0) / pixels

    by_kind = {name: scores(slice(k, k + 1)) for k, name in enumerate(KINDS)} if args.flows else None
    return (*scores(slice(None)), seen, by_kind)


def reference_key(case_measure: str) -> str:
    """The EnsembleSettings field (and JSON key) holding the reference of ``case_measure``."""
    return "reference_acceleration" if case_measure == "motion_change" else "reference_hindcast_dbz"


def case_measures(validation: Validation, floor: float, case_measure: str) -> np.ndarray:
    """(cases,) each calibration case's measure from its context (model.ensemble.motion_change or
    hindcast_error); NaN where the context is too short to tell."""
    from model.baselines import estimate_motion
    from model.network.lagrangian import MOTION_FRAMES

    source, cases = validation
    out = []
    for batch in cases:
        for sequence in batch:
            context = model_to_dbz(sequence[: source.input_length, 0], source.scaling)
            if case_measure == "hindcast":
                value = hindcast_error(context, zerovalue=floor)
            else:
                value = motion_change(context, estimate_motion(context[-MOTION_FRAMES:], zerovalue=floor),
                                      zerovalue=floor)
            out.append(np.nan if value is None else value)
    return np.asarray(out, dtype=np.float64)


def _as_stored(crps: np.ndarray, ratio: np.ndarray, brier: np.ndarray | None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """CRPS, spread-skill and Brier score rounded as the JSON stores them (4, 3 and 6 decimals)."""
    return (np.round(crps, 4), np.round(np.nan_to_num(ratio), 3),
            None if brier is None else np.round(brier, 6))


def report(args: argparse.Namespace, pairs: list[Combo], crps: np.ndarray, ratio: np.ndarray,
           brier: np.ndarray | None, seen: int, seconds: float, reference: dict[str, list[float]] | None,
           by_kind: dict[str, Scores] | None = None) -> int:
    """Choose per family and bound, write the JSON and (``--write-settings``) the calibration.

    With STEPS' Brier scores in ``reference``, the served choice must also beat STEPS' Brier score
    at 20 and 30 dBZ at a lead wherever some combination does (:func:`_dispersed_within`). With
    ``--flows-as-constraint`` the choice is made on the storms' scores, among the combinations
    whose CRPS on the flows is at most the deterministic forecast's at that lead: the ensemble may
    not make a flow's nowcast worse than the network's own field.
    """
    deterministic = pairs.index(DETERMINISTIC)
    # Choose on the scores rounded as the JSON keeps them, so that --from-grid reselects exactly
    # what the measuring run chose (unrounded, near-ties at the argmin could go either way).
    crps, ratio, brier = _as_stored(crps, ratio, brier)
    if by_kind is not None:
        by_kind = {kind: _as_stored(*scores) for kind, scores in by_kind.items()}
    grid_scores = (crps, ratio, brier)  # over every case, as the JSON's grid keeps them
    flows_allowed = None
    if args.flows_as_constraint and by_kind is not None:
        crps, ratio, brier = by_kind["storms"]
        flows_crps = by_kind["flows"][0]
        flows_allowed = flows_crps <= flows_crps[deterministic][None] * (1.0 + 1e-9)  # (combos, steps)
        crps = np.where(flows_allowed, crps, np.inf)
    brier_ceiling = None
    if brier is not None and reference is not None and reference.get("brier"):
        brier_ceiling = np.asarray(reference["brier"])
    if reference is not None and args.steps_margin > 0:
        label = f"within STEPS - {args.steps_margin:g}"
        ceiling = (1.0 - args.steps_margin) * np.asarray(reference["crps_dbz"])

        def bounded_choice(mask: np.ndarray) -> dict[str, list[float]]:
            return _dispersed_within(pairs, np.where(mask[:, None], crps, np.inf), ratio, ceiling, brier,
                                     brier_ceiling)
    else:
        label = f"spread-skill >= {args.min_spread_skill:g}"

        def bounded_choice(mask: np.ndarray) -> dict[str, list[float]]:
            return _best(pairs, np.where(mask[:, None], crps, np.inf), ratio, args.min_spread_skill)
    shares = list(grid_axes(args)[2])
    share_of = np.array([p[2] for p in pairs])
    families = {}
    bounded = {}
    for name, member_of in FAMILIES.items():
        allowed = np.array([member_of(p[0], p[1]) for p in pairs])
        families[name] = _best(pairs, np.where(allowed[:, None], crps, np.inf), ratio, 0.0)
        families[f"{name}, spread-skill >= {args.min_spread_skill:g}"] = _best(
            pairs, np.where(allowed[:, None], crps, np.inf), ratio, args.min_spread_skill)
        families[f"{name}, {label}"] = bounded_choice(allowed)
        bounded[name] = f"{name}, {label}"
        # One intensity matching share for every lead: chosen lead by lead, the share flips
        # between neighbouring leads on differences the storms cannot resolve.
        if len(shares) > 1:
            for share in shares:
                key = f"{name}, intensity matching {share:g}, {label}"
                families[key] = bounded_choice(allowed & (share_of == share))
            bounded[name] = min((f"{name}, intensity matching {share:g}, {label}" for share in shares),
                                key=lambda key: sum(families[key]["crps_dbz"]))
    # The served choice is the selection over the whole grid ("both": every combination): the rule
    # per lead already weighs CRPS, Brier and dispersion. Comparing the families' summed CRPS
    # instead threw away a better Brier score for CRPS differences of 0.1%, less than the storms
    # resolve. The kind served is what the chosen combinations use.
    served = families[bounded["both"]]
    offsets, scales = any(v > 0 for v in served["displacement_px"]), any(v > 0 for v in served["decorrelation"])
    winner = "both" if offsets and scales else ("scales" if scales else "motion")
    chosen = [pairs.index(combo) for combo in zip(served["displacement_px"], served["decorrelation"],
                                                  served["intensity_matching"], served["intensity_spread_db"],
                                                  strict=True)]
    if brier is not None and brier_ceiling is not None:
        served["brier_skill_vs_steps"] = {
            f"{t:g}dBZ": [round(1.0 - float(brier[c, k, j]) / max(float(brier_ceiling[k, j]), 1e-12), 4)
                          for k, c in enumerate(chosen)] for j, t in enumerate(BRIER_THRESHOLDS_DBZ)}
    if flows_allowed is not None:
        served["flows_crps_dbz"] = [round(float(flows_crps[c, k]), 4) for k, c in enumerate(chosen)]
        served["flows_deterministic_crps_dbz"] = [round(float(v), 4) for v in flows_crps[deterministic]]
    grid_crps, grid_ratio, grid_brier = grid_scores
    report = {
        "benchmark": "ensemble_calibration", "date": dt.date.today().isoformat(), "machine": machine_description(),
        "checkpoint": str(args.checkpoint), "split": "valid", "sequences": seen - 2 * args.flows, "grid": args.grid,
        "flows": args.flows,
        "members": args.members, "seed": args.seed, "steps": args.steps, "timestep_minutes": 6,
        **dict(zip(("grid_displacement_px", "grid_decorrelation", "grid_intensity_matching",
                    "grid_intensity_spread_db"), (list(axis) for axis in grid_axes(args)), strict=True)),
        "centred_offsets": not args.uncentred, "rearranged_from_dbz": args.rearranged_from,
        "follows_case": args.follows_case, "flows_as_constraint": bool(args.flows_as_constraint),
        "predictability_exponent": args.predictability_exponent, "case_measure": args.case_measure,
        reference_key(args.case_measure): getattr(args, "reference_measure", None),
        "deterministic_crps_dbz": [round(float(v), 4) for v in crps[deterministic]],
        "families": families, "winner": winner, "served": bounded["both"], "min_spread_skill": args.min_spread_skill,
        "steps_reference": reference, "steps_margin": args.steps_margin,
        "grid_crps_dbz": np.round(grid_crps, 4).tolist(), "grid_spread_skill": np.round(grid_ratio, 3).tolist(),
        "grid_brier": None if grid_brier is None else np.round(grid_brier, 6).tolist(),
        "grid_by_kind": None if by_kind is None else {
            kind: {"crps_dbz": np.round(c, 4).tolist(), "spread_skill": np.round(np.nan_to_num(r), 3).tolist(),
                   "brier": np.round(b, 6).tolist()} for kind, (c, r, b) in by_kind.items()},
        "brier_thresholds_dbz": list(BRIER_THRESHOLDS_DBZ),
        "seconds": seconds,
        "command": "python -m benchmarks.ensemble_calibration " + " ".join(
            f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}") for k, v in vars(args).items()
            if v is not None and v is not False and k not in ("from_grid", "json", "reference_measure")),
    }
    emit_json(report, args.json)
    if args.write_settings:
        calibration = {
            "displacement_px": served["displacement_px"], "decorrelation": served["decorrelation"],
            "intensity_matching": served["intensity_matching"], "intensity_spread_db": served["intensity_spread_db"],
            "rearranged_from_dbz": args.rearranged_from,
            "centred_offsets": not args.uncentred, "follows_case": args.follows_case,
            "cascade_levels": EnsembleSettings().cascade_levels, "perturb": winner,
            "predictability_exponent": args.predictability_exponent, "case_measure": args.case_measure,
            reference_key(args.case_measure): getattr(args, "reference_measure", None) or
            getattr(EnsembleSettings(), reference_key(args.case_measure)),
            "calibrated_on": f"{seen - 2 * args.flows} validation storms"
                             + (f" and {args.flows} of each kind of growing and decaying flow" if args.flows else "")
                             + (" (no worse than the deterministic forecast on the flows)"
                                if flows_allowed is not None else "")
                             + f" {args.grid}, {args.members} members, seed {args.seed}",
            "calibration_crps_dbz": served["crps_dbz"], "calibration_spread_skill": served["spread_skill"],
            "date": report["date"], "cpu": report["machine"]["cpu"], "command": report["command"],
        }
        path = calibration_path(args.checkpoint)
        path.write_text(json.dumps(calibration, indent=2) + "\n")
        log.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
