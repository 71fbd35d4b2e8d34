"""The synthetic radar feed of the local stack: a storm written as CF scans, one per time slot.

The feed child (``python -m stack.launcher feed``, started by ``nowcast up``) plays a radar: on
start it writes the last ``history`` scan slots that the feed directory lacks (so a forecast can be
submitted at once), then one scan per slot as its clock reaches it. Its clock runs ``speed`` times
faster than the wall clock; on a reused directory it continues after the newest scan already there.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger("nowcast.up")


@dataclass(frozen=True)
class SimulatedClock:
    """Feed time = ``sim_start + speed * (wall - wall_start)``."""

    wall_start: float  # time.time() when the feed started
    sim_start: dt.datetime  # aware UTC
    speed: float

    def now(self, wall: float) -> dt.datetime:
        return self.sim_start + dt.timedelta(seconds=self.speed * (wall - self.wall_start))

    def wall_at(self, sim: dt.datetime) -> float:
        """The wall-clock time (epoch seconds) at which feed time reaches ``sim``."""
        return self.wall_start + (sim - self.sim_start).total_seconds() / self.speed


def floor_slot(time_utc: dt.datetime, step: dt.timedelta) -> dt.datetime:
    """The scan slot at or before ``time_utc`` on the grid of ``step`` from midnight UTC."""
    midnight = time_utc.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight + ((time_utc - midnight) // step) * step


def slots_to_write(
    newest: dt.datetime | None, current: dt.datetime, *, step: dt.timedelta, history: int
) -> list[dt.datetime]:
    """The slots the feed lacks up to ``current``: at most the last ``history`` (no deep backfill)."""
    first = current - (history - 1) * step
    if newest is not None:
        first = max(first, newest + step)
    count = max(0, int((current - first) / step) + 1)
    return [first + index * step for index in range(count)]


def newest_scan_time(feed_dir: Path) -> dt.datetime | None:
    from model.io.netcdf import scan_time_from_name

    times = [t for t in (scan_time_from_name(p) for p in feed_dir.glob("scan_*.nc")) if t is not None]
    return max(times) if times else None


def prune_scans(feed_dir: Path, keep: int) -> int:
    """Delete all but the newest ``keep`` scans (names sort by time); returns how many went."""
    scans = sorted(feed_dir.glob("scan_*.nc"))
    doomed = scans[:-keep] if keep > 0 else scans
    for path in doomed:
        path.unlink(missing_ok=True)
    return len(doomed)


class FrameSource:
    """The feed's weather: one :class:`model.data.synthetic.StormGenerator` storm, a scan per slot.

    Same grid conventions as ``nowcast synth`` (1 km pixels, row 0 north, the synthetic site's grid
    mapping unless the domain names its own ``projection``). The storm is seeded by ``(seed, first
    slot)``: reproducible, yet a restarted feed brings new weather rather than replaying the old.
    """

    def __init__(self, grid: tuple[int, int], *, seed: int, first_slot: dt.datetime,
                 projection: str | None = None) -> None:
        import numpy as np

        from model.data.synthetic import SITE_GRID_MAPPING, StormGenerator
        from workers.domains import projection_grid_mapping

        height, width = grid
        first_index = int(first_slot.timestamp()) // 60
        self.storm = StormGenerator(np.random.default_rng([seed, first_index]), height, width)
        # A domain's own projection (its ``projection`` key), else the fictional site's; either way the
        # grid is centred on the projection's natural origin (its false easting and northing).
        self.grid_mapping = projection_grid_mapping(projection) if projection else dict(SITE_GRID_MAPPING)
        east = float(self.grid_mapping.get("false_easting", 0.0))
        north = float(self.grid_mapping.get("false_northing", 0.0))
        self.x = east + (np.arange(width) - (width - 1) / 2.0) * 1000.0  # metres
        self.y = north + ((height - 1) / 2.0 - np.arange(height)) * 1000.0

    def write(self, feed_dir: Path, slots: Sequence[dt.datetime]) -> list[Path]:
        """Write the storm's next ``len(slots)`` scans at those times."""
        from model.io.netcdf import write_scans

        frames = self.storm.frames(len(slots))  # (T, H, W) dBZ
        return write_scans(feed_dir, frames, list(slots), x=self.x, y=self.y, grid_mapping=self.grid_mapping)


def stack_clock_origin(feed_dir: Path, wall: float | None = None) -> tuple[float, dt.datetime]:
    """(wall_start, sim_start) of the stack's clock: now, or the newest scan when an earlier, faster
    run left scans "in the future" (the feed then goes on from there, and so does beat)."""
    wall = time.time() if wall is None else wall
    start = dt.datetime.fromtimestamp(wall, dt.UTC)
    newest = newest_scan_time(feed_dir) if feed_dir.is_dir() else None
    return wall, max(start, newest) if newest is not None else start


def set_from_signal(event: threading.Event) -> None:
    """Set ``event`` from a signal handler without risking a deadlock.

    The handler runs in the main thread between two bytecodes, possibly while that thread holds
    the event's internal lock inside ``event.wait()``; ``event.set()`` there would wait for that
    lock forever. A short-lived thread takes the lock once the main thread lets it go.
    """
    threading.Thread(target=event.set, name="stop-from-signal", daemon=True).start()


def run_feed(
    feed_dir: Path,
    *,
    speed: float = 1.0,
    grid: tuple[int, int] = (128, 128),
    timestep_minutes: int = 6,
    history: int = 12,
    keep: int = 480,
    seed: int = 0,
    projection: str | None = None,
) -> int:
    """Play the radar into ``feed_dir`` until SIGTERM or SIGINT; returns 0.

    ``speed``: feed minutes per wall minute; ``grid``: (H, W) pixels of 1 km; ``history``: slots
    written at start when missing; ``keep``: scans kept on disk; ``seed``: the storms' seed;
    ``projection``: the grid's CRS (PROJ string or EPSG code, workers.domains), None for the site's.
    """
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: set_from_signal(stop))
    step = dt.timedelta(minutes=timestep_minutes)
    feed_dir.mkdir(parents=True, exist_ok=True)
    newest = newest_scan_time(feed_dir)
    if os.environ.get("NOWCAST_CLOCK_WALL_START") and os.environ.get("NOWCAST_CLOCK_SIM_START"):
        # The stack's one clock, shared with beat and the workers (workers/clock.py).
        clock = SimulatedClock(float(os.environ["NOWCAST_CLOCK_WALL_START"]),
                               dt.datetime.fromisoformat(os.environ["NOWCAST_CLOCK_SIM_START"]), speed)
    else:
        clock = SimulatedClock(*stack_clock_origin(feed_dir), speed)
    source: FrameSource | None = None
    while not stop.is_set():
        current = floor_slot(clock.now(time.time()), step)
        slots = slots_to_write(newest, current, step=step, history=history)
        if slots:
            source = source or FrameSource(grid, seed=seed, first_slot=slots[0], projection=projection)
            source.write(feed_dir, slots)
            newest = slots[-1]
            prune_scans(feed_dir, keep)
            logger.info("feed: wrote %d scan(s) up to %s", len(slots), f"{newest:%Y-%m-%dT%H:%MZ}")
        stop.wait(max(0.05, clock.wall_at(current + step) - time.time()))
    return 0
