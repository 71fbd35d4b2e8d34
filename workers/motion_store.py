"""The motion field of a slot computed once and shared by the slot's jobs (model and extrapolation).

Interface
---------
FileMotionStore(directory, *, scope=None, keep_s=3600)(frames, options, compute) -> (2, H, W) field
shared_motion(settings, scope=None) -> context manager: model.baselines.estimate_motion uses the store

Both of a slot's jobs estimate Lucas-Kanade motion from the slot's last three scans with the same
options. With ``scope`` (``<domain>-<slot>``: the slot names its scans' times) the field is named by
the scope, the grid and the options, so the model job, which estimates on the scans after its
model-space round trip (differences of about 1e-5 dBZ), uses the field of the scans as read, the same
one the extrapolation job uses; without a scope by the frames' bytes as well. The first job to need
it computes it and writes ``<data_dir>/motion/<key>.npy`` (under a hidden temporary name, then
renamed, so a reader never sees half a file); the other reads it. Two jobs that start at the same
moment on two workers may both compute it (the rename makes that harmless). Fields older than
``keep_s`` are removed as new ones are written. With a shared product store the workers of every
machine share the fields too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from workers.settings import WorkerSettings

log = logging.getLogger(__name__)


class FileMotionStore:
    """Motion fields as ``.npy`` files in one directory, keyed by :func:`model.baselines.motion_key`."""

    def __init__(self, directory: Path, *, scope: str | None = None, keep_s: float = 3600.0) -> None:
        self.directory = Path(directory)
        self.scope = scope
        self.keep_s = keep_s
        self.hits = 0
        self.misses = 0

    def __call__(self, frames: np.ndarray, options: dict[str, Any], compute: Callable[[], np.ndarray]) -> np.ndarray:
        from model.baselines import motion_key

        key = motion_key(frames, options, content=self.scope is None)
        if self.scope is not None:
            key = f"{self.scope}-{key}"
        path = self.directory / f"{key}.npy"
        try:
            field = np.load(path, allow_pickle=False)
            self.hits += 1
            log.info("motion %s read from the store", key)
            return field
        except (OSError, ValueError):  # absent (the first job) or unreadable: compute it
            pass
        field = compute()
        self.misses += 1
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            temporary = self.directory / f".{key}.{uuid.uuid4().hex[:8]}.npy"
            np.save(temporary, field, allow_pickle=False)
            os.replace(temporary, path)
            self._prune()
        except OSError as exc:  # a full or read-only store costs the saving, never the forecast
            log.warning("motion %s not stored: %s", key, exc)
        return field

    def _prune(self) -> None:
        cutoff = time.time() - self.keep_s
        for old in self.directory.glob("*.npy"):
            with contextlib.suppress(OSError):
                if old.stat().st_mtime < cutoff:
                    old.unlink()


@contextlib.contextmanager
def shared_motion(settings: WorkerSettings, scope: str | None = None) -> Iterator[FileMotionStore]:
    """Inside the block every Lucas-Kanade estimate goes through the data directory's motion store."""
    from model.baselines import sharing_motion

    store = FileMotionStore(settings.data_dir / "motion", scope=scope)
    with sharing_motion(store):
        yield store
