"""Fit how far the ensemble's centre should carry on the context's change of motion, per lead.

    OMP_NUM_THREADS=1 python -m benchmarks.ensemble_drift --sequences 48 \
        --json results/ensemble/drift.json

The slot's motion is one velocity field held for two hours. Where the flow has been speeding up
or turning through the context, the rain will most likely have gone on doing so, and the
forecast lags or leads. For every validation storm (the calibration's cases,
benchmarks.ensemble_calibration; never test data) this finds the spatially constant shift of
the deterministic forecast (the network's frames carried forward with the slot's motion plus the
shift; px on a grid of ``--search`` px) with the least MAE against the truth at each lead, and
the context's mean velocity change a (model.ensemble.velocity_change, px per scan^2). A change
that persisted at the measured rate would add 0.5 k^2 a to the displacement at lead k, so a drift
beta_k moves the forecast by -beta_k 0.5 k^2 a (the sampling convention of model.ensemble). The
served drift is the one beta of :data:`BETAS` for every lead whose drift gives the least mean MAE
over the cases and leads (read at the nearest searched shift); the best beta of each lead is
reported beside it. Fitting the best shifts by least squares instead was
tried first: a few cases of large a carry that fit, and it raised the MAE at 30 minutes.

The JSON has beta per lead, the mean MAE of every beta tried, the correlation of the best shifts
with -0.5 k^2 a, and the mean MAE at no shift, at the chosen drift (in sample) and at each case's
best shift (an oracle: the most any common shift could gain). A beta of 0 at every lead says that
the context's change of motion does not tell where the forecast's rain will be off, and the
ensemble stays centred on the slot's motion (docs/ensemble.md has the result).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import time
from pathlib import Path

import numpy as np

from benchmarks.ensemble_calibration import SCORE_FLOOR_DBZ, validation_batches
from benchmarks.machine import machine_description
from benchmarks.report import emit_json

log = logging.getLogger("benchmarks.ensemble_drift")


def shifted_errors(lagrangian_dbz: np.ndarray, displacements: np.ndarray, truth_dbz: np.ndarray,
                   shifts_px: np.ndarray, floor_dbz: float) -> np.ndarray:
    """(K, S) MAE in dBZ of the forecast (K, H, W) carried forward along ``displacements`` (K, 2, H, W)
    plus each constant shift (S, 2) px, x then y, against ``truth_dbz`` (K, H, W); below 0 dBZ is 0 dBZ."""
    import torch
    import torch.nn.functional as F

    from model.network.lagrangian import sampling_grid

    steps, h, w = lagrangian_dbz.shape
    base, _ = sampling_grid(torch.from_numpy(np.ascontiguousarray(displacements[:steps], dtype=np.float32)))
    to_grid = torch.tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)])
    shifts = torch.from_numpy(shifts_px.astype(np.float32)) * to_grid
    truth = torch.from_numpy(np.maximum(truth_dbz, SCORE_FLOOR_DBZ).astype(np.float32))
    out = np.empty((steps, len(shifts_px)))
    with torch.no_grad():
        for k in range(steps):
            grid = base[k][None] + shifts.view(-1, 1, 1, 2)
            inside = (grid.abs() <= 1.0).all(dim=-1)
            field = torch.from_numpy(np.ascontiguousarray(lagrangian_dbz[k], dtype=np.float32)) - floor_dbz
            sampled = F.grid_sample(field.expand(len(shifts_px), 1, h, w), grid, mode="bilinear",
                                    padding_mode="zeros", align_corners=True)[:, 0]
            sampled = torch.where(inside, sampled, torch.zeros(())) + floor_dbz
            out[k] = (sampled.clamp_min(SCORE_FLOOR_DBZ) - truth[k]).abs().mean(dim=(1, 2)).numpy()
    return out


BETAS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)  # the drifts tried per lead


def drift_shifts(beta: float | np.ndarray, acceleration: np.ndarray, steps: int) -> np.ndarray:
    """(N, K, 2) px: beta (scalar or (K,)) times what a persisting change adds, -0.5 k^2 a, per case (N, 2)."""
    leads = np.arange(1, steps + 1, dtype=np.float64)
    beta = np.broadcast_to(np.asarray(beta, dtype=np.float64), (steps,))
    return -(beta * 0.5 * leads**2)[None, :, None] * acceleration[:, None, :]


def errors_at(mae: np.ndarray, shifts_px: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """(N, K) each case's MAE at the searched shift nearest to ``shifts_px`` (N, K, 2), clipped to the search."""
    step = float(axis[1] - axis[0])
    nearest = np.clip(np.rint((shifts_px - axis[0]) / step), 0, len(axis) - 1).astype(int)
    index = nearest[..., 1] * len(axis) + nearest[..., 0]
    return np.take_along_axis(mae, index[..., None], axis=2)[..., 0]


def fit_drift(mae: np.ndarray, acceleration: np.ndarray, axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per lead, the beta of :data:`BETAS` of least mean MAE over the cases: (K,) beta and (B, K) mean MAE.

    The MAE (N, K, S) is the cases' at each searched shift; a drift reads the nearest one.
    """
    steps = mae.shape[1]
    curve = np.stack([errors_at(mae, drift_shifts(b, acceleration, steps), axis).mean(0) for b in BETAS])
    return np.asarray(BETAS)[np.argmin(curve, axis=0)], curve


def shift_correlation(best_px: np.ndarray, acceleration: np.ndarray) -> np.ndarray:
    """(K,) correlation, over both axes of all cases, of each case's best shift with -0.5 k^2 a."""
    carried = drift_shifts(1.0, acceleration, best_px.shape[1])
    out = []
    for k in range(best_px.shape[1]):
        x, y = carried[:, k].ravel(), best_px[:, k].ravel()
        out.append(float(np.corrcoef(x, y)[0, 1]) if x.std() > 0 and y.std() > 0 else 0.0)
    return np.asarray(out)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ensemble_drift", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("model/checkpoints/radar_lagrangian.pt"))
    parser.add_argument("--sequences", type=int, default=48, help="validation storms")
    parser.add_argument("--flows", type=int, default=0, help="also this many cases of each kind of flow")
    parser.add_argument("--grid", default="128x128")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="as benchmarks.ensemble_calibration's, for its flows")
    parser.add_argument("--search", type=float, nargs=2, default=(30.0, 2.0), metavar=("RADIUS", "STEP"),
                        help="px: the shifts tried per axis, -RADIUS..RADIUS by STEP")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    radius, step = args.search
    if not (radius > 0 and 0 < step <= radius):
        parser.error("--search needs RADIUS > 0 and 0 < STEP <= RADIUS")
    if args.sequences + args.flows < 2:
        parser.error("--sequences and --flows need at least 2 cases to fit anything")
    if not args.checkpoint.is_file():
        parser.error(f"{args.checkpoint}: no such checkpoint")

    import torch

    from model.checkpoint import load_checkpoint
    from model.ensemble import mean_acceleration, velocity_change
    from model.forecast import forecast_lagrangian_frames
    from model.io.units import model_to_dbz

    model, meta = load_checkpoint(args.checkpoint)
    model.eval()
    if getattr(model.config, "frame", "eulerian") != "lagrangian":
        parser.error(f"{args.checkpoint}: the drift moves a Lagrangian model's forecast; this one is Eulerian")
    source, batches = validation_batches(args)
    scaling = meta.get("scaling") or source.scaling
    floor = float(scaling["dbz_min"])
    axis = np.arange(-radius, radius + step / 2, step)
    shifts = np.array([(x, y) for y in axis for x in axis])
    total = args.sequences + 2 * args.flows
    best, accelerations, errors = [], [], []
    started = last = time.perf_counter()
    for batch in batches:
        context, truth = batch[:, : source.input_length], batch[:, source.input_length:]
        with torch.inference_mode():
            predicted, motions = forecast_lagrangian_frames(model, context, args.steps, "fp32", torch.device("cpu"),
                                                            scaling=scaling)
        for i in range(batch.shape[0]):
            context_dbz = model_to_dbz(context[i, :, 0], scaling)
            change = velocity_change(context_dbz, motions[i].velocity, zerovalue=floor)
            if change is None:
                parser.error(f"the context has {context_dbz.shape[0]} scans: too few to see its motion change")
            mae = shifted_errors(model_to_dbz(predicted[i, :, 0], scaling), motions[i].displacements,
                                 model_to_dbz(truth[i, :, 0], scaling), shifts, floor)
            best.append(shifts[np.argmin(mae, axis=1)])
            accelerations.append(mean_acceleration(change))
            errors.append(mae)
        now = time.perf_counter()
        if now - last > 20:
            rate = len(best) / (now - started)
            log.info("%d / %d cases, %.2f cases/s, ETA %.0f s", len(best), total, rate, (total - len(best)) / rate)
            last = now
    best_px, acceleration, mae = np.stack(best), np.stack(accelerations), np.stack(errors)  # (N,K,2) (N,2) (N,K,S)
    per_lead, curve = fit_drift(mae, acceleration, axis)
    # One beta for every lead, the least MAE summed over the leads: per lead the minimum moves between
    # neighbouring leads on differences the cases cannot resolve, and 1 is what a persisting change means.
    beta = np.full(args.steps, BETAS[int(np.argmin(curve.sum(axis=1)))])
    correlation = shift_correlation(best_px, acceleration)
    at_drift = errors_at(mae, drift_shifts(beta, acceleration, args.steps), axis)
    zero = int(np.argmin(np.abs(shifts).sum(axis=1)))
    result = {
        "benchmark": "ensemble_drift",
        "date": dt.date.today().isoformat(),
        "machine": machine_description(),
        "config": {"checkpoint": str(args.checkpoint), "sequences": args.sequences, "flows": args.flows,
                   "grid": args.grid, "steps": args.steps, "seed": args.seed, "search_px": [radius, step]},
        "drift": [round(float(b), 3) for b in beta],
        "drift_per_lead": [round(float(b), 3) for b in per_lead],
        "correlation": [round(float(c), 3) for c in correlation],
        "betas_tried": list(BETAS),
        "mae_by_beta_dbz": np.round(curve, 4).tolist(),
        "mae_dbz": {"no_shift": np.round(mae[:, :, zero].mean(0), 4).tolist(),
                    "fitted_drift_in_sample": np.round(at_drift.mean(0), 4).tolist(),
                    "best_shift_oracle": np.round(mae.min(axis=2).mean(0), 4).tolist()},
        "rms_best_shift_px": np.round(np.sqrt((best_px**2).sum(-1).mean(0)), 3).tolist(),
        "median_acceleration_px_per_scan2": round(float(np.median(np.linalg.norm(acceleration, axis=1))), 5),
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
    emit_json(result, args.json)
    for k in (4, 9, 14, 19):
        if k < args.steps:
            log.info("lead %d: beta %.2f (r %.2f), MAE %.3f -> %.3f fitted, %.3f oracle", k + 1, beta[k],
                     correlation[k], result["mae_dbz"]["no_shift"][k], result["mae_dbz"]["fitted_drift_in_sample"][k],
                     result["mae_dbz"]["best_shift_oracle"][k])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
