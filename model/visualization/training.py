"""Pictures of training runs: one run's loss curve, two runs' curves side by side, test scores.

plot_history(history_path, png_path, title)    a run's history.csv: loss terms and validation MSE
plot_curves(result, labels, png, title)        ``compare_curves`` of model/verification/report.py
plot_scores(entries, png, title)               ``collect_scores``: MSE and SSIM per predicted frame
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from model.training.history import read_history
from model.verification.report import smooth
from model.visualization.figures import pyplot


def plot_history(history_path: Path, png_path: Path, title: str) -> None:
    """Loss terms against iteration (log scale) and validation MSE per frame on a second axis."""
    plt = pyplot()

    rows = read_history(history_path)
    train_rows = [r for r in rows if r["loss"]]
    valid_rows = [r for r in rows if r["valid_mse_per_frame"]]
    figure, axis = plt.subplots(figsize=(8, 4.5))
    for key, style in (("loss", "-"), ("mse", "--"), ("decouple", ":")):
        values = [float(r[key]) for r in train_rows]
        if any(v > 0 for v in values):
            axis.plot([int(r["iteration"]) for r in train_rows], values, style, label=key)
    axis.set_xlabel("iteration")
    axis.set_ylabel("training loss (patch space, mean)")
    if train_rows:
        axis.set_yscale("log")
    axis.grid(alpha=0.3)
    if valid_rows:
        second = axis.twinx()
        second.plot(
            [int(r["iteration"]) for r in valid_rows],
            [float(r["valid_mse_per_frame"]) for r in valid_rows],
            "o-",
            color="C3",
            label="valid MSE/frame",
        )
        second.set_ylabel("validation MSE per frame (sum over pixels)")
        second.legend(loc="upper center")
    axis.legend(loc="upper right")
    axis.set_title(title)
    figure.tight_layout()
    tmp = png_path.with_name(f".{png_path.name}.tmp.png")
    figure.savefig(tmp, dpi=100)
    plt.close(figure)
    os.replace(tmp, png_path)


def plot_curves(result: dict[str, Any], labels: list[str], png: Path, title: str) -> None:
    plt = pyplot()

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, height_ratios=[3, 1])
    iterations = result["iterations"]
    window = result["smoothed_window_rows"]
    for values, label, style in zip(result["mse"], labels, ("-", "--"), strict=True):
        top.plot(iterations, smooth(values, window), style, label=f"{label} (mean of {window} rows)")
    top.set_yscale("log")
    top.set_ylabel("training MSE (patch space)")
    top.grid(alpha=0.3)
    top.legend()
    top.set_title(title)
    a, b = (smooth(v, window) for v in result["mse"])
    bottom.plot(iterations, [100 * (y - x) / x for x, y in zip(a, b, strict=True)], color="C2")
    bottom.axhline(0, color="k", lw=0.5)
    bottom.set_ylabel("second - first (%)")
    bottom.set_xlabel("iteration")
    bottom.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(png, dpi=100)
    plt.close(figure)


def plot_scores(entries: dict[str, Any], png: Path, title: str) -> None:
    plt = pyplot()

    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for index, (name, entry) in enumerate(entries.items()):
        per_frame = entry["paper"]["per_frame"]
        frames = range(1, len(per_frame["mse"]) + 1)
        style = "k:" if name == "persistence" else f"C{index}-"
        for axis, key in zip(axes, ("mse", "ssim"), strict=True):
            axis.plot(frames, per_frame[key], style, marker="o", ms=3, label=name)
    for axis, label in zip(axes, ("MSE per frame (lower is better)", "SSIM (higher is better)"), strict=True):
        axis.set_xlabel("predicted frame")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    axes[0].legend()
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(png, dpi=100)
    plt.close(figure)
