"""Verification pictures for ensembles: the probabilistic scores of several methods side by side.

plot_probabilistic(results, path, timestep_minutes=6, reference="steps")
    one PNG. First row: CRPS by lead; Brier skill against the reference (or against the sample
    climatology without one); the spread-skill ratio with the 0.8-1.2 band shaded; ROC area.
    Second row: reliability diagrams at 30 and 60 minutes per threshold, with the diagonal.
    Third row: rank histograms at 30 and 60 minutes for the ensembles (more than one member).
plot_probability_strip(predictions, path, threshold="30dBZ")
    rows of exceedance probability per lead for each ensemble's sample.

``results`` are the strict-JSON documents of model/verification/evaluate.py; a method without a
"probabilistic" section is skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from model.visualization.figures import pyplot

RATIO_BAND = (0.8, 1.2)  # spread-skill: "well dispersed enough"
DETAIL_MINUTES = (30, 60)  # reliability and rank histograms at these lead times
LINESTYLES = ("-", "--", ":", "-.")


def _values(values: list[Any]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def detail_leads(n_leads: int, step: float) -> list[tuple[int, str]]:
    """(0-based lead index, label) at :data:`DETAIL_MINUTES`; the middle and last lead if those are not on the grid."""
    chosen = [(int(m // step) - 1, f"{m:g} min") for m in DETAIL_MINUTES
              if m % step == 0 and 1 <= m // step <= n_leads]
    if not chosen:
        picks = sorted({max(0, n_leads // 2 - 1), n_leads - 1})
        chosen = [(k, f"{(k + 1) * step:g} min") for k in picks]
    return chosen


def plot_probabilistic(results: dict[str, dict[str, Any]], path: Path, timestep_minutes: float = 6,
                       reference: str = "steps") -> Path:
    """PNG of the probabilistic scores of every method with a "probabilistic" section.

    Parameters
    ----------
    results : dict
        {method: strict-JSON result}; each ``result["probabilistic"]`` is an
        :meth:`model.verification.probabilistic.EnsembleScores.compute` document.
    path : Path
        Where the PNG goes (its folder is created).
    timestep_minutes : float
        Minutes per lead step, for the axes (a result's own ``timestep_minutes`` wins).
    reference : str
        The method the Brier skill is measured against; without it, against the sample climatology.
    """
    plt = pyplot()
    scored = {name: r for name, r in results.items() if r.get("probabilistic")}
    if not scored:
        raise ValueError("no method has a probabilistic section to plot")
    first = next(iter(scored.values()))
    step = float(first.get("timestep_minutes") or timestep_minutes)
    prob0 = first["probabilistic"]
    thresholds = list(prob0["thresholds"])
    n_leads = len(prob0["lead_steps"])
    lead = np.arange(1, n_leads + 1) * step
    details = detail_leads(n_leads, step)
    ensembles = {name: r for name, r in scored.items() if r["probabilistic"]["members"] > 1}
    columns = max(4, len(details) * len(thresholds))
    fig, axes = plt.subplots(3, columns, figsize=(3.6 * columns, 10.5), squeeze=False)
    for axis in axes.ravel():
        axis.set_visible(False)
    colours = {name: f"C{m % 10}" for m, name in enumerate(results)}

    def show(axis: Any, ylabel: str, xlabel: str = "lead time (min)") -> Any:
        axis.set_visible(True)
        axis.set_xlabel(xlabel)
        axis.set_ylabel(ylabel)
        axis.grid(alpha=0.3)
        return axis

    crps_axis = show(axes[0, 0], "CRPS (dBZ)")
    for name, result in scored.items():
        crps_axis.plot(lead, _values(result["probabilistic"]["crps_dbz"]), "-", color=colours[name],
                       label=f"{name} ({result['probabilistic']['members']})")
    crps_axis.legend(fontsize=7, title="method (members)", title_fontsize=7)

    has_reference = reference in scored and len(scored) > 1
    bss_axis = show(axes[0, 1], f"Brier skill vs {reference}" if has_reference else "Brier skill vs climatology")
    bss_axis.axhline(0.0, color="0.5", linewidth=1)
    for name, result in scored.items():
        if has_reference and name == reference:
            continue
        prob = result["probabilistic"]
        for t, threshold in enumerate(thresholds):
            if has_reference:
                brier, ref = _values(prob["brier"][threshold]), _values(scored[reference]["probabilistic"]["brier"][
                    threshold])
                with np.errstate(divide="ignore", invalid="ignore"):
                    skill = 1.0 - brier / ref
            else:
                skill = _values(prob["brier_skill_climatology"][threshold])
            bss_axis.plot(lead, skill, LINESTYLES[t % len(LINESTYLES)], color=colours[name],
                          label=f"{name} {threshold}")
    bss_axis.legend(fontsize=6)

    ratio_axis = show(axes[0, 2], "spread-skill ratio (1 = well dispersed)")
    ratio_axis.axhspan(*RATIO_BAND, color="0.9", label=f"{RATIO_BAND[0]:g}-{RATIO_BAND[1]:g}")
    ratio_axis.axhline(1.0, color="0.5", linewidth=1)
    top = 2.0
    for name, result in ensembles.items():
        ratio = _values(result["probabilistic"]["spread_skill"]["ratio"])
        ratio_axis.plot(lead, ratio, "-", color=colours[name], label=name)
        if np.isfinite(ratio).any():
            top = max(top, float(np.nanmax(ratio)) * 1.05)  # an over-dispersed ensemble stays in view
    ratio_axis.set_ylim(0, top)
    ratio_axis.legend(fontsize=7)

    roc_axis = show(axes[0, 3], "ROC area")
    roc_axis.axhline(0.5, color="0.5", linewidth=1)
    for name, result in scored.items():
        for t, threshold in enumerate(thresholds):
            roc_axis.plot(lead, _values(result["probabilistic"]["roc_area"][threshold]),
                          LINESTYLES[t % len(LINESTYLES)], color=colours[name], label=f"{name} {threshold}")
    roc_axis.set_ylim(0.4, 1.0)
    roc_axis.legend(fontsize=6)

    for d, (k, label) in enumerate(details):
        for t, threshold in enumerate(thresholds):
            axis = show(axes[1, d * len(thresholds) + t], "observed frequency", "forecast probability")
            axis.plot([0, 1], [0, 1], color="0.5", linewidth=1)
            for name, result in scored.items():
                table = result["probabilistic"]["reliability"][threshold]
                axis.plot(_values(table["forecast_probability"][k]), _values(table["observed_frequency"][k]),
                          "o-", color=colours[name], markersize=3, label=name)
            axis.set_xlim(0, 1)
            axis.set_ylim(0, 1)
            axis.set_title(f"reliability {threshold.removesuffix('dBZ')} dBZ at {label}", fontsize=9)
            axis.legend(fontsize=6)

    for d, (k, label) in enumerate(details):
        if not ensembles:
            break
        axis = show(axes[2, d], "frequency", "rank of the truth among the members")
        width = 0.8 / len(ensembles)
        for e, (name, result) in enumerate(ensembles.items()):
            frequency = _values(result["probabilistic"]["rank_histogram"]["frequency"][k])
            bins = np.arange(frequency.size)
            axis.bar(bins + (e - (len(ensembles) - 1) / 2) * width, frequency, width, color=colours[name], label=name)
            axis.axhline(1.0 / frequency.size, color=colours[name], linewidth=1, linestyle=":")
        axis.set_title(f"rank histogram at {label} (flat = dotted)", fontsize=9)
        axis.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def plot_probability_strip(probabilities: dict[str, np.ndarray], path: Path, threshold: str = "30dBZ",
                           max_columns: int = 10, timestep_minutes: float | None = None) -> Path:
    """PNG: one row per ensemble of its exceedance probability (L, H, W) in [0, 1], leads as columns
    (titled in minutes with ``timestep_minutes``, else in steps)."""
    plt = pyplot()
    rows = list(probabilities.items())
    columns = min(max(p.shape[0] for _, p in rows), max_columns)
    fig, axes = plt.subplots(len(rows), columns, figsize=(1.4 * columns + 0.8, 1.5 * len(rows)), squeeze=False)
    image = None
    for r, (label, frames) in enumerate(rows):
        for c in range(columns):
            axis = axes[r, c]
            axis.set_xticks([])
            axis.set_yticks([])
            if c >= frames.shape[0]:
                axis.set_visible(False)
                continue
            image = axis.imshow(frames[c], cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
            if r == 0:
                axis.set_title(f"+{(c + 1) * timestep_minutes:g} min" if timestep_minutes else f"+{c + 1}",
                               fontsize=7)
            if c == 0:
                axis.set_ylabel(f"{label}\nP(>= {threshold})", fontsize=7)
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), fraction=0.02)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
