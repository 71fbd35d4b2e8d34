"""The live skill figure: CSI against lead time per source at 20 / 30 / 40 dBZ, and the slots behind it.

plot_live_skill(reports, path, title) -> Path

``reports`` is {source: summary} with the summaries of ``workers.skill_summary.summarize`` (what
``GET /verification`` serves per source): ``leads`` [{lead_minutes, slots, scores {threshold: {csi}}}].
An undefined CSI (no event observed or forecast at that lead) is a gap in the line, not a zero.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from model.visualization.figures import pyplot

THRESHOLDS = ("20dBZ", "30dBZ", "40dBZ")
STYLES = {"model": ("C0", "o", "-"), "extrapolation": ("C1", "s", "--")}
FIGSIZE_IN, DPI = (16.0, 4.0), 100  # 1600 x 400 pixels


def _series(report: dict[str, Any], threshold: str) -> tuple[list[int], list[float]]:
    leads, csi = [], []
    for item in report["leads"]:
        value = item["scores"].get(threshold, {}).get("csi")
        leads.append(item["lead_minutes"])
        csi.append(float("nan") if value is None else value)
    return leads, csi


def plot_live_skill(reports: dict[str, dict[str, Any]], path: Path, title: str) -> Path:
    """Four panels: CSI by lead at each threshold (one line per source), then slots scored per lead."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(THRESHOLDS) + 1, figsize=FIGSIZE_IN, dpi=DPI)
    for axis, threshold in zip(axes, THRESHOLDS, strict=False):
        for source, report in reports.items():
            color, marker, line = STYLES.get(source, ("C2", "^", ":"))
            leads, csi = _series(report, threshold)
            axis.plot(leads, csi, line, color=color, marker=marker, markersize=3, label=source)
        axis.set_title(f"CSI at {threshold.replace('dBZ', ' dBZ')}")
        axis.set_xlabel("lead time (min)")
        axis.set_ylim(0, 1)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    axes[0].set_ylabel("CSI (pooled over slots)")
    counts = axes[-1]
    for offset, (source, report) in zip((-1.2, 1.2), reports.items(), strict=False):
        color = STYLES.get(source, ("C2",))[0]
        leads = [item["lead_minutes"] for item in report["leads"]]
        counts.bar([lead + offset for lead in leads], [item["slots"] for item in report["leads"]], width=2.4,
                   color=color, label=f"{source}: {report['slots']} slots, {report['missing_scans']} missing")
    counts.set_title("slots scored per lead")
    counts.set_xlabel("lead time (min)")
    counts.set_ylabel("slots")
    counts.grid(alpha=0.3, axis="y")
    counts.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
