"""Training: a preset (config.py) run by the loop (loop.py) into a resumable run directory.

The names other packages use are importable from here; ``configs/`` holds the presets.
"""

from model.training.config import TrainConfig, TrainConfigError, build_source, check_source, load_config
from model.training.distributed import init_distributed
from model.training.evaluation import final_test
from model.training.loop import train

__all__ = [
    "TrainConfig",
    "TrainConfigError",
    "build_source",
    "check_source",
    "final_test",
    "init_distributed",
    "load_config",
    "train",
]
