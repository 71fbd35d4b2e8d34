"""The stack's one clock: wall time, or a simulated time that runs ``clock_speed`` times faster.

Interface
---------
now(settings) -> aware UTC datetime       what every process (beat, tasks, feed, API) calls "now"
seconds(settings, simulated_s) -> float   wall seconds that ``simulated_s`` simulated seconds take

With the defaults (``clock_speed = 1``, no origin) this is the wall clock. ``nowcast up --speed 60``
sets, for every child, ``NOWCAST_CLOCK_SPEED``, ``NOWCAST_CLOCK_WALL_START`` (epoch seconds) and
``NOWCAST_CLOCK_SIM_START`` (ISO-8601), so that the feed writes scans, beat fires slots and the
sweep decides "late" on the same simulated time:

    simulated = sim_start + speed * (wall - wall_start)
"""

from __future__ import annotations

import datetime as dt
import time

from workers.settings import WorkerSettings


def now(settings: WorkerSettings) -> dt.datetime:
    """The current time on the configured clock (UTC)."""
    wall = time.time()
    origin = settings.clock_origin
    if origin is None:
        return dt.datetime.fromtimestamp(wall, dt.UTC)
    wall_start, sim_start = origin
    return sim_start + dt.timedelta(seconds=settings.clock_speed * (wall - wall_start))


def seconds(settings: WorkerSettings, simulated_s: float) -> float:
    """Wall-clock seconds for ``simulated_s`` seconds of the clock (a countdown, an expiry)."""
    return simulated_s / settings.clock_speed
