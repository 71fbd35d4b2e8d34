"""Does a checkpoint keep the intense cores that extrapolation keeps? As JSON.

    python -m benchmarks.intense_cores [--checkpoint [NAME=]PATH ...] [--storms 30] [--json out.json]

On synthetic *validation* storms (``SyntheticRadar`` split "valid": never trained on, and not the
test storms of the results table), 128 x 128, 10 scans given, 20 forecast:

- ``area_40dBZ``: per lead, the pixels at or above 40 dBZ in the truth, in extrapolation's forecast
  and in each checkpoint's, summed over the storms, and their ratio to the truth's (the frequency
  bias). A model that lets every core fade has a bias far below extrapolation's;
- ``trend_at_cores_db_per_scan``: for a checkpoint with the trend input, the mean of its trend
  channel over the pixels of the newest scan at or above 40 dBZ, and over all echo at or above
  20 dBZ. A synthetic storm's convective cells grow by several dB per scan and die within 30 to
  90 minutes; a trend that shows their growth tells the network which echo is a cell.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.machine import machine_description
from benchmarks.report import emit_json
from model.baselines import extrapolation
from model.checkpoint import load_checkpoint
from model.data.synthetic import SyntheticRadar
from model.forecast import forecast_dbz
from model.io.units import DEFAULT_SCALING
from workers.settings import SHIPPED_CHECKPOINT

CONTEXT, STEPS, SIZE = 10, 20, 128
CORE_DBZ = 40.0


def trend_at_cores(model: Any, context: np.ndarray) -> tuple[float, float] | None:
    """(mean trend over the newest scan's >= 40 dBZ pixels, over its >= 20 dBZ pixels), dB per scan."""
    import torch

    from model.network.lagrangian import align_context, motion_of, trend

    if not model.config.trend_input:
        return None
    frames = context[-model.config.input_length:]
    motion = motion_of(frames, len(frames) - 1, zerovalue=DEFAULT_SCALING["dbz_min"])
    aligned = align_context(frames, motion, DEFAULT_SCALING["dbz_min"])
    field = trend(torch.from_numpy(aligned[None]), model.config.trend_sigma_px)[0, 0].numpy()
    cores, echo = frames[-1] >= CORE_DBZ, frames[-1] >= 20.0
    return (float(field[cores].mean()) if cores.any() else float("nan"),
            float(field[echo].mean()) if echo.any() else float("nan"))


def core_report(checkpoints: dict[str, Path], storms: int) -> dict[str, Any]:
    """The 40 dBZ areas per lead of truth, extrapolation and each checkpoint on ``storms`` storms."""
    models = {name: load_checkpoint(path) for name, path in checkpoints.items()}
    source = SyntheticRadar(height=SIZE, width=SIZE, input_length=CONTEXT, output_length=STEPS,
                            valid_sequences=storms)
    areas = {name: np.zeros(STEPS) for name in ("truth", "extrapolation", *models)}
    trends: dict[str, list[tuple[float, float]]] = {name: [] for name in models}
    for i in range(storms):
        scans = source.sequence_dbz("valid", i)
        context, truth = scans[:CONTEXT], scans[CONTEXT:]
        areas["truth"] += (truth >= CORE_DBZ).sum(axis=(1, 2))
        areas["extrapolation"] += (extrapolation(context, STEPS) >= CORE_DBZ).sum(axis=(1, 2))
        for name, (model, meta) in models.items():
            forecast = forecast_dbz(model, context, STEPS, scaling=meta["scaling"])
            areas[name] += (forecast >= CORE_DBZ).sum(axis=(1, 2))
            at = trend_at_cores(model, context)
            if at is not None:
                trends[name].append(at)
    truth = np.maximum(areas["truth"], 1)
    report: dict[str, Any] = {"area_40dBZ": {name: [int(v) for v in a] for name, a in areas.items()},
                              "bias_40dBZ": {name: [round(float(v), 3) for v in a / truth]
                                             for name, a in areas.items() if name != "truth"}}
    report["trend_at_cores_db_per_scan"] = {
        name: {"cores_40dBZ": _mean([c for c, _ in t]), "echo_20dBZ": _mean([e for _, e in t])}
        for name, t in trends.items() if t}
    return report


def _mean(values: list[float]) -> float | None:
    """Mean over the storms that have such pixels; None (JSON null) when none has."""
    finite = [v for v in values if np.isfinite(v)]
    return round(float(np.mean(finite)), 3) if finite else None


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.intense_cores", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", action="append", metavar="[NAME=]PATH",
                        help="repeatable; NAME labels it (default: the file's stem); default: the shipped model")
    parser.add_argument("--storms", type=int, default=30)
    parser.add_argument("--json", type=Path, help="write the report here as well as to stdout")
    args = parser.parse_args()
    checkpoints: dict[str, Path] = {}
    for given in args.checkpoint or [str(SHIPPED_CHECKPOINT)]:
        name, _, path = given.rpartition("=")
        path = Path(path)
        name = name or path.stem
        if not path.is_file():
            parser.error(f"no such checkpoint: {path}")
        if name in checkpoints or name in ("truth", "extrapolation"):
            parser.error(f"two checkpoints named {name!r}: label them NAME=PATH")
        checkpoints[name] = path
    if args.storms < 1:
        parser.error("--storms must be at least 1")
    report = {"created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "machine": machine_description(),
              "storms": args.storms, "split": "valid", "grid": [SIZE, SIZE], "context": CONTEXT, "steps": STEPS,
              "checkpoints": {name: str(p) for name, p in checkpoints.items()}, **core_report(checkpoints, args.storms)}
    emit_json(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
