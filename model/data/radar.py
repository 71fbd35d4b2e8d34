"""Windows over a directory of CF netCDF radar scans, split by time blocks.

Source: ``RadarScans(root=DIR, input_length=10, output_length=10, ...)`` (interface in
``model/data/__init__.py``); frames are read with ``model.io.netcdf.read_scans`` and scaled with
``model.io.units.dbz_to_model`` (NaN / no data becomes 0).

Splitting: time is cut into blocks of ``block_scans`` scan intervals aligned to the Unix epoch (240
six-minute scans = whole UTC days). Blocks take the splits of ``split_pattern`` in turn (default 8
train, 1 valid, 1 test), so every split samples every season. A window never leaves its block,
and a block whose predecessor belongs to another split drops its first ``total_length`` scans, so
no storm is shared between train, valid and test.

Windows are ``total_length`` consecutive scans with no gap (a missing, unreadable or all-NaN scan
ends a run). Training windows start every ``train_stride`` scans; valid and test windows every
``eval_stride`` scans (default ``total_length``: no scan is scored twice).

Frames are held in memory as float16 in [0, 1] (half the memory of float32; the rounding is
below 0.04 dBZ with the default scaling) and returned as float32.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from model.io.units import DEFAULT_SCALING, Scaling, dbz_to_model

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
DEFAULT_PATTERN = ("train",) * 8 + ("valid", "test")


class RadarDatasetError(ValueError):
    """The scan directory cannot give the windows asked for; the message names the directory."""


class RadarScans:
    """Sequences (B, T, 1, H, W) float32 in [0, 1] from a directory of CF scans."""

    channels = 1

    def __init__(
        self,
        *,
        root: str | Path,
        input_length: int = 10,
        output_length: int = 10,
        timestep_minutes: float = 6,
        block_scans: int = 240,
        split_pattern: Sequence[str] = DEFAULT_PATTERN,
        train_stride: int = 1,
        eval_stride: int | None = None,
        seed: int = 0,
        scaling: Scaling = DEFAULT_SCALING,
    ) -> None:
        from model.io.netcdf import RadarInputError, read_scans

        self.root = Path(root)
        self.input_length = int(input_length)
        self.total_length = int(input_length + output_length)
        self.seed = int(seed)
        self.timestep_minutes = float(timestep_minutes)
        self.scaling: Scaling = dict(scaling)  # type: ignore[assignment]
        if unknown := set(split_pattern) - set(SPLITS):
            raise ValueError(f"split_pattern may only name {SPLITS}, got {sorted(unknown)}")
        if block_scans < self.total_length:
            raise ValueError(f"block_scans ({block_scans}) must hold a window of {self.total_length} scans")
        files = sorted(self.root.glob("*.nc")) if self.root.is_dir() else []
        if not files:
            raise RadarDatasetError(f"{self.root}: no .nc scans found")

        frames: list[np.ndarray] = []
        times: list[np.ndarray] = []
        grid_shape = None
        for path in files:
            try:
                sequence = read_scans(path, timestep_minutes=timestep_minutes)
            except RadarInputError as exc:  # an outage or a broken file is a gap, not a failure
                log.warning("skipping %s", exc)
                continue
            if grid_shape is None:
                grid_shape = sequence.dbz.shape[1:]
            elif sequence.dbz.shape[1:] != grid_shape:
                raise RadarDatasetError(f"{path}: grid {sequence.dbz.shape[1:]} differs from {grid_shape}")
            frames.append(dbz_to_model(sequence.dbz, self.scaling).astype(np.float16))
            times.append(sequence.times.astype("datetime64[s]").astype(np.int64))
        if grid_shape is None:
            raise RadarDatasetError(f"{self.root}: none of the {len(files)} files could be read")
        self.height, self.width = (int(n) for n in grid_shape)
        seconds = np.concatenate(times)
        order = np.argsort(seconds, kind="stable")
        self._frames = np.concatenate(frames)[order]
        seconds = seconds[order]
        if np.any(np.diff(seconds) == 0):
            raise RadarDatasetError(f"{self.root}: two files hold the same scan time")
        step = int(round(timestep_minutes * 60))
        if np.any(seconds % step):
            raise RadarDatasetError(f"{self.root}: scan times are not on the {timestep_minutes:g}-minute grid")

        slots = seconds // step  # scan number since the epoch
        blocks = slots // block_scans
        unique_blocks = np.unique(blocks)
        split_of_block = {int(b): split_pattern[i % len(split_pattern)] for i, b in enumerate(unique_blocks)}
        eval_stride = self.total_length if eval_stride is None else int(eval_stride)
        self._windows: dict[str, list[int]] = {name: [] for name in SPLITS}
        previous_split = None
        for block in unique_blocks:
            split = split_of_block[int(block)]
            members = np.flatnonzero(blocks == block)
            first_slot = int(block) * block_scans
            guard = self.total_length if previous_split not in (None, split) else 0
            previous_split = split
            stride = train_stride if split == "train" else eval_stride
            for start in members:
                offset = int(slots[start]) - first_slot
                end = start + self.total_length - 1
                if offset < guard or end > members[-1] or (offset - guard) % stride:
                    continue
                if slots[end] - slots[start] == self.total_length - 1:  # no gap inside
                    self._windows[split].append(int(start))
        log.info("radar windows from %d scans in %s: %s", slots.size, self.root,
                 {k: len(v) for k, v in self._windows.items()})

    def split_size(self, split: str) -> int:
        return len(self._windows[split])

    def window_starts(self, split: str) -> list[int]:
        """Indices (into the time-sorted scans) where the windows of ``split`` start."""
        return list(self._windows[split])

    def _load(self, starts: Sequence[int]) -> np.ndarray:
        index = np.asarray(starts)[:, None] + np.arange(self.total_length)
        return self._frames[index].astype(np.float32)[:, :, None]

    def train_batch(self, iteration: int, batch_size: int) -> np.ndarray:
        """(B, T, 1, H, W): the training windows in a seeded order per epoch."""
        windows = self._windows["train"]
        if not windows:
            raise RadarDatasetError(f"{self.root}: no training windows; add scans or lower block_scans")
        positions = int(iteration) * batch_size + np.arange(batch_size)
        epochs, offsets = np.divmod(positions, len(windows))
        picks = [windows[np.random.default_rng([self.seed, int(e)]).permutation(len(windows))[o]]
                 for e, o in zip(epochs, offsets, strict=True)]
        return self._load(picks)

    def eval_batches(self, split: str, batch_size: int) -> Iterator[np.ndarray]:
        """Every window of ``split`` ("valid" | "test") in time order; no batch dropped."""
        if split not in ("valid", "test"):
            raise ValueError(f"split must be 'valid' or 'test', got {split!r}")
        windows = self._windows[split]
        if not windows:
            raise RadarDatasetError(f"{self.root}: no {split} windows; add scans or lower block_scans")
        for first in range(0, len(windows), batch_size):
            yield self._load(windows[first : first + batch_size])
