"""The 6-minute nowcast schedule as pure functions of the clock (docs/workers.md).

Beat fires on a crontab aligned to the scan grid and shifted by the feed's latency; the task then
maps "now" back to the slot (the scan time) it serves:

    fire time  = slot + latency_offset            e.g. 12:02 for the 12:00 scan
    slot       = floor_to_step(now - latency_offset + SLOT_TOLERANCE)
    expires    = timestep - 60 s                  a trigger still queued at the next slot is dropped

so a trigger that runs late (up to ``expires``) or slightly early (up to ``SLOT_TOLERANCE``) still
names the slot beat fired for, and never the next one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from celery.schedules import crontab

SLOT_TOLERANCE = dt.timedelta(seconds=30)  # beat's clock may run a little ahead of ours
NOWCAST_TASK = "workers.tasks.nowcast"
WATCH_TASK = "workers.tasks.watch_feed"
BEAT_ENTRY = "nowcast-every-slot"
WATCH_ENTRY = "nowcast-when-scan-lands"


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def floor_to_step(moment: dt.datetime, timestep_minutes: int) -> dt.datetime:
    """The latest scan time on the ``timestep_minutes`` grid at or before ``moment`` (UTC)."""
    moment = _utc(moment)
    midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    step = dt.timedelta(minutes=timestep_minutes)
    return midnight + ((moment - midnight) // step) * step


def slot_for(moment: dt.datetime, *, timestep_minutes: int, latency_offset_minutes: int) -> dt.datetime:
    """The scan time a nowcast triggered at ``moment`` serves."""
    shifted = _utc(moment) - dt.timedelta(minutes=latency_offset_minutes) + SLOT_TOLERANCE
    return floor_to_step(shifted, timestep_minutes)


def expires_seconds(timestep_minutes: int) -> int:
    """How long a trigger may wait in the queue: less than one period, so it never meets the next."""
    return max(30, timestep_minutes * 60 - 60)


def beat_crontab(
    *, timestep_minutes: int, latency_offset_minutes: int, nowfun: Callable[[], dt.datetime] | None = None
) -> crontab:
    """Fires at minutes offset, offset + step, ... of every hour (``timestep_minutes`` divides 60)."""
    minute = f"{latency_offset_minutes}-59/{timestep_minutes}"
    return crontab(minute=minute, nowfun=nowfun) if nowfun is not None else crontab(minute=minute)


def beat_schedule(
    *, timestep_minutes: int, latency_offset_minutes: int, queue: str = "gpu",
    nowfun: Callable[[], dt.datetime] | None = None, feed_poll_seconds: float = 0,
    watch_queue: str = "cpu",
) -> dict[str, dict[str, Any]]:
    """The ``beat_schedule`` setting: one nowcast per slot, no arguments (the task derives the slot).

    With ``feed_poll_seconds`` > 0, a second entry looks for the slot's scan that often and starts
    the nowcast as soon as it lands (workers/trigger.py); the slot entry is then the watchdog.
    """
    schedule = {
        BEAT_ENTRY: {
            "task": NOWCAST_TASK,
            "schedule": beat_crontab(timestep_minutes=timestep_minutes,
                                     latency_offset_minutes=latency_offset_minutes, nowfun=nowfun),
            "options": {"queue": queue, "expires": expires_seconds(timestep_minutes)},
        }
    }
    if feed_poll_seconds > 0:
        schedule[WATCH_ENTRY] = {
            "task": WATCH_TASK,
            "schedule": dt.timedelta(seconds=feed_poll_seconds),
            # A check still queued at the next check is worthless: drop it rather than pile up
            # behind a running forecast.
            "options": {"queue": watch_queue, "expires": max(1.0, feed_poll_seconds)},
        }
    return schedule


def fire_times(
    start: dt.datetime, end: dt.datetime, *, timestep_minutes: int, latency_offset_minutes: int
) -> list[dt.datetime]:
    """Every fire time in [start, end): slot + offset for each slot (the crontab's arithmetic)."""
    start, end = _utc(start), _utc(end)
    offset = dt.timedelta(minutes=latency_offset_minutes)
    moment = floor_to_step(start - offset, timestep_minutes) + offset
    times = []
    while moment < end:
        if moment >= start:
            times.append(moment)
        moment += dt.timedelta(minutes=timestep_minutes)
    return times
