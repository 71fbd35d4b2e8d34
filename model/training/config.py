"""A training preset: the dataclasses behind ``configs/*.toml``, their validation, and the data source they name.

load_config(path) -> TrainConfig            a TOML preset; every error names the file and ``[section] key``
config_differences(saved, current) -> list  fields whose change would alter a resumed trajectory
build_source(data) / check_source(source, model)   the ``[data]`` source, checked against ``[model]``
"""

from __future__ import annotations

import dataclasses
import importlib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model.network.precision import PRECISIONS
from model.network.predrnn import PredRNNConfig
from model.network.sampling import SamplingConfig


class TrainConfigError(ValueError):
    """A preset file is unreadable or has an unknown, missing or invalid field (the message names it)."""


@dataclass
class DataConfig:
    source: str = "moving_mnist"  # a name for model.data.get_method, or "package.module:factory"
    options: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the source factory
    eval_batch_size: int = 16  # sequences per validation / test batch
    valid_max_batches: int = 0  # validation batches per evaluation; 0 = the whole valid split


@dataclass
class OptimConfig:
    batch_size: int = 8  # sequences per iteration (global: split across DDP ranks)
    lr: float = 1e-4  # Adam learning rate (the peak rate with "onecycle")
    lr_schedule: str = "constant"  # "constant" (the authors') | "onecycle"
    onecycle_pct_start: float = 0.3  # fraction of the run spent warming up with "onecycle"
    max_iterations: int = 80000  # iterations; each is 2 optimizer steps with reverse_input
    reverse_input: bool = True  # second update on the time-reversed sequence (every published script)


@dataclass
class RunConfig:
    display_interval: int = 100  # iterations between log lines / history rows
    checkpoint_interval: int = 5000  # iterations between last.pt writes (also written on exit)
    eval_interval: int = 5000  # iterations between validations (best.pt selection)
    # "fp32" | "bf16" | "auto": bf16 autocast for the training updates on CUDA or a CPU with native
    # bf16 (AMX / AVX512-BF16; fp32 with a warning on other CPUs, where bf16 is emulated and slow);
    # "auto" = bf16 where native. Validation and test scores are always float32 forecasts.
    precision: str = "fp32"
    channels_last: bool = False  # NHWC weights: oneDNN's fastest convolution layout (1.1-1.3x on CPU)
    compile: bool = False  # torch.compile the network (CUDA only; ignored with a warning on CPU)
    test_at_end: bool = True  # evaluate best.pt on the test split when the run completes


@dataclass
class TrainConfig:
    name: str
    seed: int = 1  # model initialisation, sampling masks (the data source has its own seed option)
    model: PredRNNConfig = field(default_factory=PredRNNConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], origin: str = "config") -> TrainConfig:
        """Build and validate; every error names ``origin`` and the offending ``[section] key``."""
        values = dict(values)
        sections: dict[str, type] = {
            "model": PredRNNConfig,
            "data": DataConfig,
            "optim": OptimConfig,
            "sampling": SamplingConfig,
            "run": RunConfig,
        }
        top_level = {"name", "seed"} | set(sections)
        unknown = sorted(set(values) - top_level)
        if unknown:
            raise TrainConfigError(f"{origin}: unknown top-level key(s) {unknown}; valid: {sorted(top_level)}")
        if not isinstance(values.get("name"), str) or not values["name"]:
            raise TrainConfigError(f"{origin}: 'name' must be a non-empty string")
        built: dict[str, Any] = {"name": values["name"], "seed": values.get("seed", 1)}
        if not isinstance(built["seed"], int) or isinstance(built["seed"], bool):
            raise TrainConfigError(f"{origin}: 'seed' must be an integer, not {built['seed']!r}")
        for key, section_type in sections.items():
            built[key] = _build_section(section_type, values.get(key, {}), f"{origin}: [{key}]")
        config = cls(**built)
        config.validate(origin)
        return config

    def validate(self, origin: str = "config") -> None:
        o, r, d = self.optim, self.run, self.data
        checks = [
            (o.batch_size >= 1, "[optim] batch_size must be >= 1"),
            (o.lr > 0, "[optim] lr must be > 0"),
            (
                o.lr_schedule in ("constant", "onecycle"),
                "[optim] lr_schedule must be 'constant' or 'onecycle'",
            ),
            (0 < o.onecycle_pct_start < 1, "[optim] onecycle_pct_start must be in (0, 1)"),
            (o.max_iterations >= 1, "[optim] max_iterations must be >= 1"),
            (r.display_interval >= 1, "[run] display_interval must be >= 1"),
            (r.checkpoint_interval >= 1, "[run] checkpoint_interval must be >= 1"),
            (r.eval_interval >= 1, "[run] eval_interval must be >= 1"),
            (r.precision in PRECISIONS, "[run] precision must be 'fp32', 'bf16' or 'auto'"),
            (d.eval_batch_size >= 1, "[data] eval_batch_size must be >= 1"),
            (d.valid_max_batches >= 0, "[data] valid_max_batches must be >= 0 (0 = all)"),
            (isinstance(d.options, dict), "[data] options must be a table"),
            (self.model.total_length >= 3, "[model] input_length + output_length must be >= 3"),
        ]
        for ok, message in checks:
            if not ok:
                raise TrainConfigError(f"{origin}: {message}")


def _type_fits(default: Any, value: Any) -> bool:
    """TOML value against the field's default type (an int is fine where a float is meant)."""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, int | float)
    for kind in (int, str, list, dict):
        if isinstance(default, kind):
            return isinstance(value, kind)
    return True


def _build_section(section_type: type, values: Any, origin: str) -> Any:
    if not isinstance(values, dict):
        raise TrainConfigError(f"{origin} must be a table, not {type(values).__name__}")
    defaults = section_type()
    names = {f.name for f in dataclasses.fields(section_type)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise TrainConfigError(f"{origin}: unknown key(s) {unknown}; valid: {sorted(names)}")
    for key, value in values.items():
        default = getattr(defaults, key)
        if not _type_fits(default, value):
            raise TrainConfigError(f"{origin} {key}: expected {type(default).__name__}, got {value!r}")
    try:
        return section_type(**values)
    except (TypeError, ValueError) as exc:
        raise TrainConfigError(f"{origin}: {exc}") from exc


def load_config(path: str | Path) -> TrainConfig:
    """Read a TOML preset; the ``name`` defaults to the file's stem."""
    path = Path(path)
    if not path.is_file():
        raise TrainConfigError(f"{path}: config file not found")
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise TrainConfigError(f"{path}: not valid TOML ({exc})") from exc
    values.setdefault("name", path.stem)
    return TrainConfig.from_dict(values, origin=str(path))


# Fields that may change between a run and its resumption: they do not alter the trajectory.
_RESUMABLE_CHANGES = {("run", k) for k in dataclasses.asdict(RunConfig())} | {
    ("data", "eval_batch_size"),
    ("data", "valid_max_batches"),
    ("optim", "max_iterations"),
}


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``section.key`` of every field that differs and would change the training trajectory."""
    differences = []
    for section in sorted(set(saved) | set(current)):
        a, b = saved.get(section), current.get(section)
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                if (section, key) not in _RESUMABLE_CHANGES and a.get(key) != b.get(key):
                    differences.append(f"{section}.{key}")
        elif a != b and section != "name":
            differences.append(section)
    return differences


def build_source(data: DataConfig) -> Any:
    """Instantiate the sequence source: a registry name, or ``module:factory`` for custom data."""
    if ":" in data.source:
        module_name, factory_name = data.source.split(":", 1)
        try:
            factory = getattr(importlib.import_module(module_name), factory_name)
        except (ImportError, AttributeError) as exc:
            raise TrainConfigError(f"[data] source {data.source!r} cannot be imported ({exc})") from exc
    else:
        from model.data import get_method

        try:
            factory = get_method(data.source)
        except ValueError as exc:
            raise TrainConfigError(f"[data] source: {exc}") from exc
    try:
        return factory(**dict(data.options))
    except (TypeError, ValueError) as exc:  # wrong option names, or data missing / not in the layout
        raise TrainConfigError(f"[data] source {data.source!r} with options {data.options}: {exc}") from exc


def check_source(source: Any, model: PredRNNConfig) -> None:
    """The source's sequences must be the shape the model is configured for."""
    expected = {
        "input_length": model.input_length,
        "total_length": model.total_length,
        "channels": model.channels,
        "height": model.height,
        "width": model.width,
    }
    for name, value in expected.items():
        actual = getattr(source, name, None)
        if actual != value:
            raise TrainConfigError(
                f"[data] source gives {name} = {actual}, but [model] implies {value}; make them agree"
            )

