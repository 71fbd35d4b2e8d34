"""A worker's scans read once: consecutive slots share all but one of their input scans.

Interface
---------
read_feed_scans(paths, *, timestep_minutes, min_scans, max_grid) -> RadarSequence
    what ``model.io.netcdf.read_scans(paths, ...)`` returns, with each file decoded only the first time

A slot's nowcast reads its ``input_scans`` newest feed files; the next slot's reads the same files
but the oldest, plus the new one. Each file is decoded and validated on its own by ``read_scans``
(units, plausible values, grid, header size) and kept, keyed by its path and its stat (inode, size,
modification and change times: a feed writes a scan under a temporary name and renames it, so a
rewritten scan is a new key). The sequence is then put together from the kept files. Only when
the files plainly form one sequence (same grid, same unit, one scan every ``timestep_minutes``)
is that result used; anything else is read again by ``read_scans`` over all the files, which
raises the error a reader would get without this module. The sequence's ``dbz`` is a new array
every time, so nothing that holds it can change what is kept.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import numpy as np

from model.io.netcdf import RadarSequence, read_scans

MAX_FILES = 64  # scans kept per process (about 16 MiB at 256 x 256; a few domains' windows)

_KEPT: OrderedDict[tuple, RadarSequence] = OrderedDict()


def _key(path: Path) -> tuple:
    stat = os.stat(path)
    return (str(path.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def _one_file(path: Path, *, timestep_minutes: float, max_grid: int | None) -> RadarSequence:
    key = _key(path)
    if key in _KEPT:
        _KEPT.move_to_end(key)
        return _KEPT[key]
    sequence = read_scans([path], timestep_minutes=timestep_minutes, min_scans=1, max_grid=max_grid)
    _KEPT[key] = sequence
    while len(_KEPT) > MAX_FILES:
        _KEPT.popitem(last=False)
    return sequence


def _one_sequence(parts: list[RadarSequence], timestep_minutes: float) -> bool:
    """True when ``parts`` (sorted by first time) are one gapless sequence on one grid, in one unit."""
    step = np.timedelta64(int(round(timestep_minutes * 60)), "s")
    times = np.concatenate([part.times for part in parts])
    return (all(part.grid.same_as(parts[0].grid) is None and part.input_unit == parts[0].input_unit
                for part in parts[1:])
            and bool(np.all(np.diff(times) == step)))


def read_feed_scans(paths: list[Path], *, timestep_minutes: float, min_scans: int = 1,
                    max_grid: int | None = None) -> RadarSequence:
    """The sequence of the feed files ``paths`` (any order), as :func:`model.io.netcdf.read_scans`.

    Returns ``dbz`` (T, H, W) float32 dBZ sorted by time, its times, grid and source files.
    Raises the ``RadarInputError`` of ``read_scans`` for anything that is not one valid sequence.
    """
    try:
        parts = [_one_file(Path(path), timestep_minutes=timestep_minutes, max_grid=max_grid) for path in paths]
    except (OSError, ValueError):  # any unreadable or invalid file: the plain reader says what and where
        parts = []
    parts.sort(key=lambda part: part.times[0])
    if not parts or not _one_sequence(parts, timestep_minutes) or sum(p.times.size for p in parts) < min_scans:
        return read_scans(paths, timestep_minutes=timestep_minutes, min_scans=min_scans, max_grid=max_grid)
    return RadarSequence(np.concatenate([part.dbz for part in parts]), np.concatenate([part.times for part in parts]),
                         parts[0].grid, [path for part in parts for path in part.source_files], parts[0].input_unit)
