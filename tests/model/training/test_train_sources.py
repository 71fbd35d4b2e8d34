"""A tiny sequence source for the trainer's tests: bright squares moving and bouncing on a black grid.

It implements the ``model.data.SequenceSource`` protocol (train_batch deterministic in seed and
iteration; eval_batches over fixed, disjoint valid and test sets) so the trainer can be tested
before, and independently of, the real datasets. It is importable by name
(``tests.model.training.test_train_sources:MovingSquares``) for the subprocess and torchrun tests.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np

from model.io.units import DEFAULT_SCALING, IDENTITY_SCALING, Scaling

_SPLIT_OFFSETS = {"valid": 1_000_003, "test": 2_000_003}


class MovingSquares:
    """Sequences (B, T, 1, H, W) float32 in [0, 1]; one square per sequence, constant velocity."""

    def __init__(
        self,
        *,
        input_length: int = 3,
        total_length: int = 6,
        height: int = 8,
        width: int = 8,
        size: int = 3,
        seed: int = 0,
        eval_sequences: int = 6,
        delay_s: float = 0.0,
        radar: bool = False,
    ) -> None:
        self.input_length = input_length
        self.total_length = total_length
        self.channels = 1
        self.height = height
        self.width = width
        self.size = size
        self.seed = seed
        self.eval_sequences = eval_sequences
        self.delay_s = delay_s  # makes each training batch slow, so a test can signal mid-run
        # radar=True: the values are dBZ in model space (a physical source: nowcast skill is scored)
        self.scaling: Scaling = DEFAULT_SCALING if radar else IDENTITY_SCALING

    def _sequences(self, rng: np.random.Generator, count: int) -> np.ndarray:
        frames = np.zeros((count, self.total_length, 1, self.height, self.width), dtype=np.float32)
        for index in range(count):
            y, x = rng.integers(0, self.height - self.size + 1), rng.integers(0, self.width - self.size + 1)
            dy, dx = rng.choice([-1, 1]), rng.choice([-1, 1])
            for t in range(self.total_length):
                frames[index, t, 0, y : y + self.size, x : x + self.size] = 1.0
                if not 0 <= y + dy <= self.height - self.size:
                    dy = -dy
                if not 0 <= x + dx <= self.width - self.size:
                    dx = -dx
                y, x = y + dy, x + dx
        return frames

    def train_batch(self, iteration: int, batch_size: int) -> np.ndarray:
        if self.delay_s:
            time.sleep(self.delay_s)
        return self._sequences(np.random.default_rng([self.seed, iteration]), batch_size)

    def eval_batches(self, split: str, batch_size: int) -> Iterator[np.ndarray]:
        if split not in _SPLIT_OFFSETS:
            raise ValueError(f"split must be 'valid' or 'test', not {split!r}")
        everything = self._sequences(np.random.default_rng([self.seed, _SPLIT_OFFSETS[split]]), self.eval_sequences)
        for start in range(0, self.eval_sequences, batch_size):
            yield everything[start : start + batch_size]
