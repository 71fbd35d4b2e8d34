"""KTH Actions in the authors' frame-folder layout (docs/model.md, Data sets), windowed as they window it.

Layout: ``root/<category>/<personXX_action_dN>/image_XXXX.png``. The person id is characters
6-8 of the folder name, the frame number characters 6-10 of the file name. Frames are read as
grey (PIL ``convert("L")``), resized to ``image_size`` x ``image_size`` with OpenCV's default
bilinear interpolation and scaled by 1/255, as in the reference.

Windows of ``total_length`` consecutive frames never cross videos and walk backwards from the end
of each video: boxing, handclapping, handwaving and walking take non-overlapping windows; jogging
and running take one every 3 frames (applied to the test set too, as the reference does).

Splits: persons 1-16 train and 17-25 test in the paper. The reference has no validation split (it
evaluates on the test persons during training); here ``valid`` is a held-out training person
(16 by default, so training uses persons 1-15) to keep model selection off the test set. Pass
``train_persons=range(1, 17), valid_persons=()`` for the paper's exact training set; ``valid`` is
then the test persons, with a warning.

Source: ``KTH(root=..., input_length=10, output_length=10 | 20, image_size=128)``; see
``model/data/__init__.py`` for the interface.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.io.units import IDENTITY_SCALING, Scaling

log = logging.getLogger(__name__)

NON_OVERLAPPING = ("boxing", "handclapping", "handwaving", "walking")
EVERY_THIRD = ("jogging", "running")
CATEGORIES = NON_OVERLAPPING + EVERY_THIRD
PAPER_TRAIN_PERSONS = tuple(range(1, 17))
TEST_PERSONS = tuple(range(17, 26))


class KTHLayoutError(ValueError):
    """The frame folders are missing or not in the authors' layout; the message names the path."""


@dataclass(frozen=True)
class Video:
    category: str
    folder: Path
    person: int
    frames: tuple[Path, ...]  # sorted by name
    numbers: tuple[int, ...]  # frame numbers from the names


def find_videos(root: str | Path, persons: Iterable[int]) -> list[Video]:
    """The videos of ``persons`` under ``root``, in category order, then folder name."""
    root = Path(root)
    if not root.is_dir():
        raise KTHLayoutError(f"{root}: KTH root directory not found")
    wanted = {int(p) for p in persons}
    videos = []
    for category in CATEGORIES:
        category_dir = root / category
        if not category_dir.is_dir():
            continue
        for folder in sorted(p for p in category_dir.iterdir() if p.is_dir()):
            try:
                person = int(folder.name[6:8])
            except ValueError as exc:
                raise KTHLayoutError(f"{folder}: expected a 'personXX_...' folder name") from exc
            if person not in wanted:
                continue
            frames = tuple(sorted(p for p in folder.iterdir() if p.name.startswith("image")))
            try:
                numbers = tuple(int(p.name[6:10]) for p in frames)
            except ValueError as exc:
                raise KTHLayoutError(f"{folder}: frame names must be 'image_XXXX.png'") from exc
            videos.append(Video(category, folder, person, frames, numbers))
    return videos


def window_starts(video: Video, length: int) -> list[int]:
    """Start positions of the windows in ``video``, walking back from its last frame.

    A window is ``length`` frames with consecutive numbers. After a window the walk moves back a
    whole window (non-overlapping categories) or 3 frames (jogging, running); after a failed
    position it moves back one frame.
    """
    stride = length if video.category in NON_OVERLAPPING else 3
    starts = []
    end = len(video.frames) - 1
    while end >= length - 1:
        start = end - length + 1
        if video.numbers[end] - video.numbers[start] == length - 1:
            starts.append(start)
            end -= stride
        else:
            end -= 1
    return sorted(starts)


@functools.lru_cache(maxsize=16384)
def _read_frame(path: Path, size: int) -> np.ndarray:
    """One frame as (size, size) uint8; cached because neighbouring windows share frames."""
    import cv2
    from PIL import Image

    with Image.open(path) as image:
        grey = np.asarray(image.convert("L"))
    return cv2.resize(grey, (size, size))


class KTH:
    """KTH windows as (B, T, 1, S, S) float32 in [0, 1]."""

    channels = 1
    scaling: Scaling = IDENTITY_SCALING

    def __init__(
        self,
        *,
        root: str | Path,
        input_length: int = 10,
        output_length: int = 10,
        image_size: int = 128,
        train_persons: Sequence[int] = tuple(range(1, 16)),
        valid_persons: Sequence[int] = (16,),
        test_persons: Sequence[int] = TEST_PERSONS,
        seed: int = 0,
    ) -> None:
        self.root = Path(root)
        self.input_length = int(input_length)
        self.total_length = int(input_length + output_length)
        self.height = self.width = int(image_size)
        self.seed = int(seed)
        persons = {"train": train_persons, "valid": valid_persons, "test": test_persons}
        if set(persons["train"]) & set(persons["test"]) or set(persons["valid"]) & set(persons["test"]):
            raise ValueError("KTH: test persons must not be used for training or validation")
        if not persons["valid"]:
            log.warning("KTH: no validation persons; the valid split is the test persons (as the reference)")
            persons["valid"] = persons["test"]
        self._windows: dict[str, list[tuple[Video, int]]] = {}
        for split, members in persons.items():
            videos = find_videos(self.root, members)
            self._windows[split] = [(v, s) for v in videos for s in window_starts(v, self.total_length)]
        log.info("KTH windows: %s", {k: len(v) for k, v in self._windows.items()})

    def split_size(self, split: str) -> int:
        return len(self._windows[split])

    def _load(self, items: Sequence[tuple[Video, int]]) -> np.ndarray:
        batch = np.empty((len(items), self.total_length, 1, self.height, self.width), dtype=np.float32)
        for i, (video, start) in enumerate(items):
            for t, path in enumerate(video.frames[start : start + self.total_length]):
                batch[i, t, 0] = _read_frame(path, self.height) / np.float32(255.0)
        return batch

    def train_batch(self, iteration: int, batch_size: int) -> np.ndarray:
        """(B, T, 1, S, S): the training windows in a seeded order per epoch."""
        windows = self._windows["train"]
        if not windows:
            raise KTHLayoutError(f"{self.root}: no training windows of {self.total_length} frames")
        positions = int(iteration) * batch_size + np.arange(batch_size)
        epochs, offsets = np.divmod(positions, len(windows))
        picks = [np.random.default_rng([self.seed, int(e)]).permutation(len(windows))[o]
                 for e, o in zip(epochs, offsets, strict=True)]
        return self._load([windows[i] for i in picks])

    def eval_batches(self, split: str, batch_size: int) -> Iterator[np.ndarray]:
        """Every window of ``split`` ("valid" | "test") in order; no batch dropped."""
        if split not in ("valid", "test"):
            raise ValueError(f"split must be 'valid' or 'test', got {split!r}")
        windows = self._windows[split]
        for start in range(0, len(windows), batch_size):
            yield self._load(windows[start : start + batch_size])
