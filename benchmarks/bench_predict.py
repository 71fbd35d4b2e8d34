"""Whole-process timing of ``nowcast predict``: each run a fresh interpreter, fp32 against bf16.

    python -m benchmarks.bench_predict --json results/bench/predict_64x3_256.json

Writes an authors'-format checkpoint (``{'net_param': ...}``, random weights, seed 0) of a
PredRNN-V2 64 x 3 and random context frames (1, 10, 1, H, W) into a temporary directory, then runs
``nowcast predict --official ...`` once untimed per variant (page cache) and ``--repeats`` timed
rounds, the variants interleaved so that drift on the machine hits them alike. The wall time is
the whole process: interpreter start, imports, checkpoint load, forecast and the .npy write.
``predict`` also logs its own forecast time, reported beside it.
"""

from __future__ import annotations

import logging
import re

log = logging.getLogger(__name__)

# name -> extra ``nowcast predict`` flags; bf16 turns on --fused and --channels-last by default
VARIANTS: dict[str, list[str]] = {
    "fp32": ["--precision", "fp32"],
    "bf16": ["--precision", "bf16"],
    "auto": ["--precision", "auto"],  # what the hardware gets by default: bf16 where it is native
    "bf16_autocast_only": ["--precision", "bf16", "--no-fused", "--no-channels-last"],
}
FORECAST_LOG = re.compile(r"\((fp32|bf16), ([0-9.]+) s\)")


if __name__ == "__main__":  # the command line is cli/bench_predict.py
    from cli import run_script

    raise SystemExit(run_script("cli.bench_predict:main"))
