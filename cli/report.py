"""Compare finished training runs: loss curves of two runs, and test scores of several.

The command line: ``nowcast report``: compare training runs (see model/verification/report.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import shlex
import sys
from pathlib import Path
from typing import Any

from model import InputError
from model.verification.report import collect_scores, compare_curves, scores_markdown
from model.visualization.training import plot_curves, plot_scores

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nowcast report", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    curves = commands.add_parser("curves", help="training-loss curves of two runs of one preset")
    curves.add_argument("runs", nargs=2, type=Path)
    curves.add_argument("--labels", default="a,b", help="two names for the legend and the JSON")
    curves.add_argument("--upto", type=int, help="compare iterations <= N")
    curves.add_argument("--window", type=int, default=5, help="rows in the trailing mean (default 5)")
    curves.add_argument("--title", default="training loss")
    curves.add_argument("--json", type=Path, required=True)
    curves.add_argument("--png", type=Path)
    scores = commands.add_parser("scores", help="test-split scores of finished runs and persistence")
    scores.add_argument("runs", nargs="+", type=Path)
    scores.add_argument("--title", default="test split, paper protocol")
    scores.add_argument("--json", type=Path, required=True)
    scores.add_argument("--md", type=Path)
    scores.add_argument("--png", type=Path)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = shlex.join(["nowcast", "report", *(argv if argv is not None else sys.argv[1:])])
    document: dict[str, Any] = {"command": command, "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    if args.command == "curves":
        labels = args.labels.split(",")
        if len(labels) != 2:
            raise InputError(f"--labels needs two names separated by a comma, got {args.labels!r}")
        result = compare_curves(args.runs[0], args.runs[1], args.upto, args.window)
        document.update(runs=[str(r) for r in args.runs], labels=labels, **result)
        if args.png:
            plot_curves(result, labels, args.png, args.title)
        summary = result["relative_difference_smoothed"]
        log.info("%d shared rows; smoothed MSE differs by %.1f %% on average, %.1f %% at most",
                 len(result["iterations"]), 100 * summary["mean"], 100 * summary["max"])
    else:
        entries = collect_scores(args.runs)
        document["scores"] = entries
        table = scores_markdown(entries)
        if args.md:
            args.md.write_text(table)
        if args.png:
            plot_scores(entries, args.png, args.title)
        log.info("\n%s", table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0
