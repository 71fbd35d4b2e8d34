"""Skill parity of bf16 and fp32 forecasts: the same checkpoint, the same held-out storms.

``python -m benchmarks.parity``: the command line of benchmarks/parity.py. Exit status 0 when the
check passes, 1 when it fails, 2 for a missing or unreadable checkpoint.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
from pathlib import Path

from benchmarks.parity import CSI_TOLERANCE, MAD_TOLERANCE_DBZ, compare_precisions

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.parity", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("model/checkpoints/radar_v2.pt"))
    parser.add_argument("--sequences", type=int, default=100, help="held-out synthetic storms (test split)")
    parser.add_argument("--grid", type=int, default=128, help="storms are GRID x GRID pixels")
    parser.add_argument("--input-length", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20, help="lead times (6-minute scans)")
    parser.add_argument("--data-seed", type=int, default=0, help="SyntheticRadar seed (the shipped model's)")
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--json", type=Path, help="write the report here")
    return parser


def main(argv: list[str] | None = None) -> int:
    from benchmarks.bench import machine_info, write_report
    from model.checkpoint import CheckpointError, load_checkpoint
    from model.data.synthetic import SyntheticRadar
    from model.network.precision import cpu_has_native_bf16

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        model, meta = load_checkpoint(args.checkpoint)
    except CheckpointError as exc:
        sys.stderr.write(f"python -m benchmarks.parity: error: {exc}\n")
        return 2  # bad input, as the nowcast commands; 1 means the parity check failed
    source = SyntheticRadar(seed=args.data_seed, height=args.grid, width=args.grid, input_length=args.input_length,
                            output_length=args.steps, test_sequences=args.sequences, scaling=meta["scaling"])
    result = compare_precisions(model, source.scaling, source.eval_batches("test", args.batch), args.input_length,
                                args.steps)
    report = {
        "command": "python -m benchmarks.parity " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "checkpoint": str(args.checkpoint),
        "weights_sha256": meta.get("weights_sha256"),
        "data": {"source": "synthetic_radar", "split": "test", "seed": args.data_seed, "grid": [args.grid, args.grid],
                 "input_length": args.input_length, "steps": args.steps},
        "fp32": "plain path (forecast defaults)",
        "bf16": "bf16 autocast, fused gates, channels_last (forecast_frames's bf16 defaults)",
        "native_bf16": cpu_has_native_bf16(),
        "machine": machine_info(),
        "result": result,
    }
    write_report(args.json, report)
    log.info("%d storms, %d leads: max |dCSI| %.4f (tolerance %.2f), max mean |bf16 - fp32| %.3f dBZ "
             "(tolerance %.1f), max |bf16 - fp32| %.1f dBZ: %s", result["sequences"], args.steps,
             result["max_abs_delta_csi"], CSI_TOLERANCE, result["max_mad_dbz"], MAD_TOLERANCE_DBZ,
             result["max_abs_diff_dbz"], "passed" if result["passed"] else "FAILED")
    return 0 if result["passed"] else 1
