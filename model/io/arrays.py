"""NumPy array files (.npy, .npz) opened with one message for a missing or unreadable file.

open_array_file(path, noun="input file", ...) -> np.ndarray | NpzFile
    ``{path}: {noun} not found`` or ``{path}: not a readable {kind} ({reason})``, raised as ``error``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from model import InputError


def open_array_file(
    path: str | Path,
    noun: str = "file",
    *,
    kind: str = ".npy array",
    mmap: bool = False,
    error: type[Exception] = InputError,
) -> Any:
    """``np.load`` without pickles; a missing or unreadable file raises ``error`` naming ``path``.

    ``noun`` says what the file is for in the not-found message ("truth file", "input file");
    ``kind`` what it should have been (".npz archive"); ``mmap`` maps a .npy read-only
    instead of reading it (large test sets). Returns an array, or an NpzFile for a .npz.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {noun} not found")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise error(f"{path}: not a readable {kind} ({exc})") from exc
