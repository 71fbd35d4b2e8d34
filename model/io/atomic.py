"""Files that appear whole or not at all: write under a temporary name, then rename.

    with atomic_path(target) as tmp:      # tmp: a hidden name in target's directory
        write_something(tmp)              # on success: fsync, chmod, rename over target

A reader (the API, another worker) opening ``target`` sees the old file, the new one, or none,
never half of one; if the block raises, the temporary file is removed and ``target`` is untouched.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(target: Path | str, *, mode: int = 0o644, fsync: bool = True) -> Iterator[Path]:
    """A temporary path beside ``target`` to write; renamed over ``target`` when the block succeeds.

    ``mode``: the file's permissions (mkstemp makes 0600; products and checkpoints are read by
    other users, such as the API's). ``fsync``: flush the data to disk before the rename, so that a
    crash right after it cannot leave an empty file under the final name.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
