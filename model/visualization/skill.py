"""Verification pictures: skill against lead time, and strips of context, truth and forecasts.

plot_skill(results, path)    CSI per threshold against lead time, and MSE per predicted frame; with
                             extrapolation among the results, a second row of each method's CSI
                             minus extrapolation's
plot_sample(sequence, predictions, input_length, path, scaling)   one sequence as rows of frames

``results`` are the strict-JSON documents of model/verification/evaluate.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from model.io.units import DEFAULT_SCALING, Scaling, model_to_dbz
from model.visualization.figures import pyplot

GAP_LIMIT = 0.05  # CSI: the difference row shows +-this; a far worse method leaves the panel
GAP_BAND = 0.01  # CSI: the shaded band, "level with extrapolation"


def plot_skill(results: dict[str, dict[str, Any]], path: Path, reference: str = "extrapolation") -> Path:
    """PNG: CSI against lead time, one panel per dBZ threshold and one colour per method; MSE per frame.

    When ``reference`` is among several nowcast results, a second row shows each other method's
    CSI minus the reference's per lead: the small differences that decide whether a model beats
    extrapolation are invisible on the first row's 0-1 scale.
    """
    plt = pyplot()

    thresholds = sorted({t for r in results.values() if "nowcast" in r for t in r["nowcast"]["thresholds"]
                         if t.endswith("dBZ")}, key=lambda t: float(t.removesuffix("dBZ")))
    with_paper = any("paper" in r for r in results.values())
    panels = [("csi", t) for t in thresholds] + ([("mse", None)] if with_paper else [])
    nowcasts = [name for name, r in results.items() if "nowcast" in r]
    with_gaps = reference in nowcasts and len(nowcasts) > 1 and bool(thresholds)
    fig, axes = plt.subplots(2 if with_gaps else 1, len(panels), figsize=(4.5 * len(panels), 7.5 if with_gaps else 4),
                             squeeze=False)
    for axis, (kind, threshold) in zip(axes[0], panels, strict=True):
        for m, (name, result) in enumerate(results.items()):
            colour = f"C{m % 10}"
            if kind == "csi" and "nowcast" in result and threshold in result["nowcast"]["csi"]:
                lead, values = _csi_by_lead(result, threshold)
                axis.plot(lead, values, "-", color=colour, label=name)
                axis.set_xlabel("lead time (min)" if result.get("timestep_minutes") else "lead (frames)")
                axis.set_ylabel(f"CSI at {threshold.removesuffix('dBZ')} dBZ")
                axis.set_ylim(0, 1)
            if kind == "mse" and "paper" in result:
                mse = result["paper"]["per_frame"]["mse"]
                axis.plot(np.arange(1, len(mse) + 1), mse, "-", color=colour, marker="o", markersize=3, label=name)
                axis.set_xlabel("predicted frame")
                axis.set_ylabel("MSE per frame (sum over pixels)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    if with_gaps:
        _plot_gaps(axes[1], panels, results, reference)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _csi_by_lead(result: dict[str, Any], threshold: str) -> tuple[np.ndarray, np.ndarray]:
    """(lead times in minutes, or in frames without a time step; CSI with None as NaN)."""
    skill = result["nowcast"]
    lead = np.array(skill["lead_steps"]) * (result.get("timestep_minutes") or 1)
    return lead, np.array([np.nan if v is None else v for v in skill["csi"][threshold]], dtype=float)


def _plot_gaps(axes: Any, panels: list[tuple[str, str | None]], results: dict[str, dict[str, Any]],
               reference: str) -> None:
    """Second row: CSI minus the reference's per lead, clipped to +-GAP_LIMIT, the +-GAP_BAND band shaded."""
    for axis, (kind, threshold) in zip(axes, panels, strict=True):
        if kind != "csi" or threshold not in results[reference]["nowcast"]["csi"]:
            axis.set_visible(False)
            continue
        lead, base = _csi_by_lead(results[reference], threshold)
        axis.axhspan(-GAP_BAND, GAP_BAND, color="0.9", label=f"within {GAP_BAND:g}")
        axis.axhline(0.0, color="C1", linewidth=1)
        for m, (name, result) in enumerate(results.items()):
            if name == reference or "nowcast" not in result or threshold not in result["nowcast"]["csi"]:
                continue
            _, values = _csi_by_lead(result, threshold)
            axis.plot(lead, values - base, "-", color=f"C{m % 10}", marker="o", markersize=2, label=name)
        axis.set_ylim(-GAP_LIMIT, GAP_LIMIT)
        axis.set_xlabel("lead time (min)" if results[reference].get("timestep_minutes") else "lead (frames)")
        axis.set_ylabel(f"CSI - {reference}'s at {threshold.removesuffix('dBZ')} dBZ")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)


def plot_sample(sequence: np.ndarray, predictions: dict[str, np.ndarray], input_length: int,
                path: Path, scaling: Scaling = DEFAULT_SCALING, max_columns: int = 10) -> Path:
    """PNG strip: the context, the truth and each method's prediction (rows), frames as columns.

    ``sequence`` (T, C, H, W) and predictions (L, C, H, W) in [0, 1]; radar in the reflectivity
    palette of every other radar picture (model/visualization/palette.py).
    """
    from model.visualization.palette import reflectivity_colormap  # matplotlib, as pyplot(): only when drawing

    plt = pyplot()

    radar = scaling.get("kind") != "identity"
    cmap, norm = reflectivity_colormap()
    rows = [("context", sequence[:input_length][-max_columns:]), ("truth", sequence[input_length:])]
    rows += list(predictions.items())
    columns = min(max(len(frames) for _, frames in rows), max_columns)
    fig, axes = plt.subplots(len(rows), columns, figsize=(1.4 * columns, 1.5 * len(rows)), squeeze=False)
    for r, (label, frames) in enumerate(rows):
        for c in range(columns):
            axis = axes[r, c]
            axis.set_xticks([])
            axis.set_yticks([])
            if c >= len(frames):
                axis.set_visible(False)
                continue
            image = frames[c, 0]
            if radar:
                # The service's palette: below 5 dBZ is no echo (white), so a model's faint residual
                # in clear air does not paint the strip as it paints no map.
                axis.imshow(model_to_dbz(image, scaling), cmap=cmap, norm=norm, interpolation="nearest")
            else:
                axis.imshow(np.clip(image, 0, 1), cmap="gray", vmin=0, vmax=1)
            if c == 0:
                axis.set_ylabel(label, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
