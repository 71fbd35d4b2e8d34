"""The ``nowcast`` command: one entry point, subcommands resolved lazily by name.

Each subcommand is a ``main(argv) -> int`` in its own module, imported only when used, so
``nowcast predict`` never imports FastAPI and ``nowcast up`` never imports torch in this process.
This package is the only place that turns exceptions into what a user sees: a library's
:class:`model.InputError` becomes one line naming the file and the problem on stderr, exit
status 2, no traceback.
"""

from __future__ import annotations

import importlib
import logging
import sys

from model import InputError

# name -> ("module:function", one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "predict": ("cli.predict:main", "forecast frames (.npy or .nc) with a checkpoint"),
    "bench": ("cli.bench:main", "time training steps and inference, write JSON"),
    "synth": ("cli.synth:main", "write a synthetic radar feed as CF netCDF scans"),
    "evaluate": ("cli.evaluate:main", "score predictions or baselines (paper or nowcast protocol)"),
    "train": ("cli.train:main", "train a preset from model/training/configs (resumable)"),
    "report": ("cli.report:main", "compare training runs: loss curves, test scores"),
    "up": ("cli.up:main", "run the whole stack locally: redis, API, worker, beat, feed"),
    "verification-plot": ("cli.verification_plot:main", "draw the live skill (CSI by lead per source) from Redis"),
}


def _usage() -> str:
    lines = ["usage: nowcast COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<18} {help_text}" for name, (_, help_text) in COMMANDS.items()]
    lines += ["", "nowcast COMMAND --help shows the options of a command."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        sys.stderr.write(f"nowcast: unknown command {name!r}\n{_usage()}")
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    module_name, function_name = COMMANDS[name][0].split(":")
    command = getattr(importlib.import_module(module_name), function_name)
    try:
        return int(command(rest) or 0)
    except InputError as exc:
        sys.stderr.write(f"nowcast {name}: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"nowcast {name}: interrupted\n")
        return 130


def run_script(target: str, argv: list[str] | None = None) -> int:
    """Run the front end ``"module:function"`` for a ``python -m benchmarks.NAME`` / ``stack.NAME`` script.

    The library module keeps its ``python -m`` name and hands its argv over here; the front end is
    resolved by name, so a library module and its front end in cli/ never import each other.
    """
    module_name, function_name = target.split(":")
    command = getattr(importlib.import_module(module_name), function_name)
    return int(command(list(sys.argv[1:] if argv is None else argv)) or 0)
