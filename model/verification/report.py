"""Compare finished training runs: loss curves of two runs, and test scores of several.

    nowcast report curves RUN_A RUN_B [--labels A,B] [--upto N] --json OUT.json --png OUT.png
    nowcast report scores RUN [RUN ...] --json OUT.json --md OUT.md --png OUT.png

``curves`` reads each run's ``history.csv`` (nowcast train) and puts the training MSE of two runs of
the same preset side by side, row by row, with the relative difference of the curves smoothed over
``--window`` rows; it answers "did this optimisation change the loss curve?".

``scores`` reads each run's ``test_metrics.json`` (best.pt on the test split, paper protocol) and
writes one table with persistence (scored on the same sequences, taken from the first run) and a
figure of MSE and SSIM per predicted frame. The figures are drawn by model/visualization/training.py.
"""

from __future__ import annotations

import json
import logging
import statistics
from pathlib import Path
from typing import Any

from model import InputError
from model.training.history import HISTORY, read_history

log = logging.getLogger(__name__)


def _read_history(run: Path) -> list[dict[str, str]]:
    path = run / HISTORY
    if not path.is_file():
        raise InputError(f"{path}: not found (is {run} a nowcast train run directory?)")
    return read_history(path)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(f"{path}: not found (has the run finished its test evaluation?)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from exc


def smooth(values: list[float], window: int) -> list[float]:
    """Trailing mean over ``window`` values (fewer at the start)."""
    return [statistics.fmean(values[max(0, i - window + 1) : i + 1]) for i in range(len(values))]


def compare_curves(run_a: Path, run_b: Path, upto: int | None, window: int) -> dict[str, Any]:
    """Training MSE of two runs at the iterations both logged (up to ``upto``)."""
    rows = []
    for run in (run_a, run_b):
        history = {int(r["iteration"]): r for r in _read_history(run) if r["mse"]}
        rows.append(history)
    shared = sorted(k for k in rows[0].keys() & rows[1].keys() if upto is None or k <= upto)
    if not shared:
        raise InputError(f"{run_a} and {run_b} share no logged iteration{f' up to {upto}' if upto else ''}")
    mse_a = [float(rows[0][k]["mse"]) for k in shared]
    mse_b = [float(rows[1][k]["mse"]) for k in shared]
    smooth_a, smooth_b = smooth(mse_a, window), smooth(mse_b, window)
    relative = [abs(b - a) / a for a, b in zip(smooth_a, smooth_b, strict=True)]
    valid = {}
    for k in sorted(rows[0].keys() & rows[1].keys()):
        va, vb = rows[0][k]["valid_mse_per_frame"], rows[1][k]["valid_mse_per_frame"]
        if va and vb and (upto is None or k <= upto):
            valid[k] = [float(va), float(vb)]
    # A separate logged column: the rate each run reached (iterations per second, its own machine load).
    rate = [statistics.median(float(r["iterations_per_s"]) for r in history.values()) for history in rows]
    return {
        "iterations": shared,
        "mse": [mse_a, mse_b],
        "smoothed_window_rows": window,
        "relative_difference_smoothed": {
            "mean": statistics.fmean(relative),
            "max": max(relative),
            "final": relative[-1],
        },
        "valid_mse_per_frame": {str(k): v for k, v in valid.items()},
        "median_iterations_per_s": rate,
    }


def collect_scores(runs: list[Path]) -> dict[str, Any]:
    """The test_metrics.json of each run (keyed by its directory name), and persistence from the first."""
    entries: dict[str, Any] = {}
    persistence = None
    for run in runs:
        document = _read_json(run / "test_metrics.json")
        results = document["results"]
        # Keyed by run directory: two seeds of one preset are two rows.
        if run.name in entries:
            raise InputError(f"{run}: two runs named {run.name!r}; rename one directory")
        entries[run.name] = {
            "preset": document["preset"],
            "run": str(run),
            "iteration": document["iteration"],
            "weights_sha256": document["weights_sha256"],
            "selected_on": document["selected_on"],
            "final_decouple": _final_decouple(run),
            "paper": results["model"]["paper"],
        }
        if persistence is None:
            persistence = results["persistence"]["paper"]
        elif results["persistence"]["paper"]["sequences"] != persistence["sequences"]:
            raise InputError(f"{run}: scored on a different test split than {runs[0]}")
    entries["persistence"] = {"paper": persistence}
    return entries


def _final_decouple(run: Path, rows: int = 10) -> float | None:
    """Mean |cos(adapter(dC), adapter(dM))| over the last ``rows`` history rows; None for v1.

    V2 logs the term whether or not it is in the loss (decouple_beta = 0 still measures it), so it
    shows what the decoupling loss does to the two memories' increments.
    """
    config = _read_json(run / "config.json")
    if config["model"]["version"] != "v2":
        return None
    values = [float(r["decouple"]) for r in _read_history(run) if r["decouple"]]
    return statistics.fmean(values[-rows:]) if values else None


def scores_markdown(entries: dict[str, Any]) -> str:
    lines = [
        "| method | best iteration | test sequences | MSE/frame | MAE/frame | SSIM | PSNR "
        "| abs cos(dC, dM), last 10 log rows |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in entries.items():
        paper = entry["paper"]
        mean = paper["mean"]
        decouple = entry.get("final_decouple")
        lines.append(
            f"| {name} | {entry.get('iteration', '-')} | {paper['sequences']:,} | {mean['mse']:.1f} | "
            f"{mean['mae']:.1f} | {mean['ssim']:.3f} | {mean['psnr']:.2f} | "
            f"{'-' if decouple is None else f'{decouple:.4f}'} |"
        )
    return "\n".join(lines) + "\n"
