"""``history.csv``: one row per logged window of iterations, and the loss curve drawn from it.

Columns (HISTORY_FIELDS): the means of the loss terms over the window (patch space), the learning
rate, the two sampling probabilities of ground truth, iterations per second, seconds since the
start of this invocation and, on validation rows, the validation MSE per frame. A resumed run first
drops the rows written after its checkpoint, so the file always matches ``last.pt``.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import IO, Any

HISTORY = "history.csv"
HISTORY_FIELDS = [
    "iteration",
    "loss",
    "mse",
    "decouple",
    "lr",
    "encoder_p_gt",
    "decoder_p_gt",
    "iterations_per_s",
    "elapsed_s",
    "valid_mse_per_frame",
]


def _writer(handle: IO[str], fields: list[str]) -> csv.DictWriter:
    return csv.DictWriter(handle, fieldnames=fields)


def append_history(path: Path, row: dict[str, Any], fields: list[str] = HISTORY_FIELDS) -> None:
    """Append ``row`` (missing columns left empty), writing the header first in a new file.

    ``fields``: the columns; the default is the training loop's, other trainers pass their own.
    """
    new_file = not path.exists()
    with path.open("a", newline="", encoding="utf-8") as handle:
        writer = _writer(handle, fields)
        if new_file:
            writer.writeheader()
        writer.writerow({k: row.get(k, "") for k in fields})


def read_history(path: Path) -> list[dict[str, str]]:
    """The rows as strings keyed by column ([] when there is no file yet)."""
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def truncate_history(path: Path, iteration: int) -> None:
    """Drop rows written after the checkpoint we resume from (they will be written again).

    The file keeps its own columns, whichever trainer wrote it.
    """
    rows = read_history(path)
    kept = [row for row in rows if int(row["iteration"]) <= iteration]
    if len(kept) == len(rows):
        return
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = _writer(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)
    os.replace(tmp, path)


def format_duration(seconds: float) -> str:
    """``1h05m`` or ``4m07s`` for a log line; ``?`` when the rate is not known yet."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"
