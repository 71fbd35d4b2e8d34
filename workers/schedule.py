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

from celery.schedules import BaseSchedule, crontab, schedstate

SLOT_TOLERANCE = dt.timedelta(seconds=30)  # beat's clock may run a little ahead of ours
NOWCAST_TASK = "workers.tasks.nowcast"
EXTRAPOLATION_TASK = "workers.tasks.nowcast_extrapolation"
VERIFY_TASK = "workers.tasks.verify"
BEAT_ENTRY = "nowcast-every-slot"
REQUEUE_ENTRY = "requeue-stalled-jobs"
PRUNE_ENTRY = "prune-old-jobs"
REQUEUE_TASK = "workers.housekeeping.requeue_stalled"
PRUNE_TASK = "workers.housekeeping.prune"
EXTRAPOLATION_ENTRY = "extrapolation-every-slot"
VERIFY_ENTRY = "verify"
WATCH_TASK = "workers.tasks.watch_feed"
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


class SlotSchedule(BaseSchedule):
    """Beat's trigger on a simulated clock (workers/clock.py): due at slot + offset of *that* clock.

    ``simulated = sim_start + speed * (wall - wall_start)``. Beat keeps ``last_run_at`` on the wall
    clock; it is mapped onto the simulated one, so the entry is due once per simulated slot, and the
    time to the next trigger is returned in wall seconds (1/speed of the simulated wait). Like the
    crontab, a slot whose trigger passed before beat (re)started is not backfilled.
    """

    def __init__(self, *, timestep_minutes: int, latency_offset_minutes: int, speed: float, wall_start: float,
                 sim_start: dt.datetime, app: Any = None, nowfun: Callable[[], dt.datetime] | None = None) -> None:
        super().__init__(nowfun=nowfun, app=app)  # nowfun: the wall clock (tests freeze it)
        self.timestep_minutes = timestep_minutes
        self.latency_offset_minutes = latency_offset_minutes
        self.speed = float(speed)
        self.wall_start = float(wall_start)
        self.sim_start = _utc(sim_start)

    def simulated(self, wall: dt.datetime | float) -> dt.datetime:
        seconds = wall.timestamp() if isinstance(wall, dt.datetime) else float(wall)
        return self.sim_start + dt.timedelta(seconds=self.speed * (seconds - self.wall_start))

    def _last_fire(self, simulated_now: dt.datetime) -> dt.datetime:
        offset = dt.timedelta(minutes=self.latency_offset_minutes)
        return floor_to_step(simulated_now - offset, self.timestep_minutes) + offset

    def remaining_estimate(self, last_run_at: dt.datetime) -> dt.timedelta:
        now = self.simulated(self.now())
        following = self._last_fire(now) + dt.timedelta(minutes=self.timestep_minutes)
        return dt.timedelta(seconds=(following - now).total_seconds() / self.speed)

    def is_due(self, last_run_at: dt.datetime) -> schedstate:
        now = self.simulated(self.now())
        fire = self._last_fire(now)
        wait = self.remaining_estimate(last_run_at).total_seconds()
        if last_run_at.tzinfo is None:  # beat's times are UTC (enable_utc)
            last_run_at = last_run_at.replace(tzinfo=dt.UTC)
        return schedstate(self.simulated(last_run_at) < fire, max(0.05, wait))

    def __reduce__(self) -> tuple[Any, ...]:
        # Beat pickles its entries into the schedule file; rebuild from the plain values.
        return (_slot_schedule, (self.timestep_minutes, self.latency_offset_minutes, self.speed, self.wall_start,
                                 self.sim_start.isoformat()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SlotSchedule) and self.__reduce__()[1] == other.__reduce__()[1]

    def __hash__(self) -> int:
        return hash(self.__reduce__()[1])

    def __repr__(self) -> str:
        return (f"<SlotSchedule every {self.timestep_minutes} min + {self.latency_offset_minutes}, "
                f"x{self.speed:g} from {self.sim_start:%Y-%m-%dT%H:%MZ}>")


def _slot_schedule(timestep_minutes: int, latency_offset_minutes: int, speed: float, wall_start: float,
                   sim_start: str) -> SlotSchedule:
    return SlotSchedule(timestep_minutes=timestep_minutes, latency_offset_minutes=latency_offset_minutes,
                        speed=speed, wall_start=wall_start, sim_start=dt.datetime.fromisoformat(sim_start))


def beat_schedule(
    *, timestep_minutes: int, latency_offset_minutes: int, queue: str = "gpu",
    nowfun: Callable[[], dt.datetime] | None = None, cpu_queue: str = "cpu", verify_every_s: float = 60.0,
    clock: tuple[float, float, dt.datetime] | None = None, lease_s: float = 30, feed_poll_seconds: float = 0,
) -> dict[str, dict[str, Any]]:
    """The ``beat_schedule`` setting: per slot the model's and the extrapolation nowcast (no arguments:
    the task derives the slot), the verification sweep every ``verify_every_s`` wall seconds, the
    lost-job check every half lease (a lost job waits at most 1.5 leases) and an hourly prune.
    With ``feed_poll_seconds`` > 0, one more entry looks for the slot's scan that often and starts
    the slot's nowcasts as soon as it lands (workers/trigger.py); the slot entries are the watchdog.

    ``clock`` = (speed, wall_start, sim_start) puts the slot triggers on the stack's simulated clock
    (:class:`SlotSchedule`) and shortens their ``expires`` by the speed; None keeps the crontab.
    """
    def slot_trigger() -> BaseSchedule:
        if clock is not None:
            speed, wall_start, sim_start = clock
            return SlotSchedule(timestep_minutes=timestep_minutes, latency_offset_minutes=latency_offset_minutes,
                                speed=speed, wall_start=wall_start, sim_start=sim_start)
        return beat_crontab(timestep_minutes=timestep_minutes, latency_offset_minutes=latency_offset_minutes,
                            nowfun=nowfun)

    expires: float = expires_seconds(timestep_minutes)
    if clock is not None:
        expires = max(0.5, expires / clock[0])
    schedule = {
        BEAT_ENTRY: {
            "task": NOWCAST_TASK,
            "schedule": slot_trigger(),
            "options": {"queue": queue, "expires": expires},
        },
        EXTRAPOLATION_ENTRY: {
            "task": EXTRAPOLATION_TASK,
            "schedule": slot_trigger(),
            "options": {"queue": cpu_queue, "expires": expires},
        },
        VERIFY_ENTRY: {
            "task": VERIFY_TASK,
            "schedule": dt.timedelta(seconds=verify_every_s),
            # A sweep still queued when the next is due is dropped: the next one does its work.
            "options": {"queue": cpu_queue, "expires": max(1.0, verify_every_s)},
        },
        REQUEUE_ENTRY: {
            "task": REQUEUE_TASK,
            "schedule": lease_s / 2,
            "options": {"queue": cpu_queue, "expires": lease_s / 2},
        },
        PRUNE_ENTRY: {
            "task": PRUNE_TASK,
            "schedule": 3600.0,
            "options": {"queue": cpu_queue, "expires": 1800},
        },
    }
    if feed_poll_seconds > 0:
        schedule[WATCH_ENTRY] = {
            "task": WATCH_TASK,
            "schedule": dt.timedelta(seconds=feed_poll_seconds),
            # A check still queued at the next check is worthless: drop it rather than pile up
            # behind a running forecast.
            "options": {"queue": cpu_queue, "expires": max(1.0, feed_poll_seconds)},
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


def domain_entries(
    domains: Any, *, settings_of: Callable[[Any], Any], clock: tuple[float, float, dt.datetime] | None = None,
    nowfun: Callable[[], dt.datetime] | None = None,
) -> dict[str, dict[str, Any]]:
    """Beat's slot entries of every domain (workers/domains.py), each on its domain's cadence and queues.

    The default domain's entries keep today's names and send no arguments (the task serves the
    default); another domain's are ``<entry>:<id>`` and send ``domain=<id>``. Each domain has its
    own entries, so one domain's late or missing scan holds up nothing of another's, and its model
    job goes to its own ``queue`` (a domain pinned to GPU workers, another to CPU workers).
    ``settings_of(domain)`` gives the domain's settings (its timestep and latency offset).
    """
    entries: dict[str, dict[str, Any]] = {}
    for domain in domains:
        own = settings_of(domain)
        step, offset = own.timestep_minutes, own.latency_offset_minutes
        expires: float = expires_seconds(step)
        if clock is not None:
            expires = max(0.5, expires / clock[0])
        suffix = "" if domain.default else f":{domain.id}"
        kwargs = {} if domain.default else {"domain": domain.id}
        for entry, task, queue in ((BEAT_ENTRY, NOWCAST_TASK, domain.queue),
                                   (EXTRAPOLATION_ENTRY, EXTRAPOLATION_TASK, domain.extrapolation_queue)):
            if clock is not None:
                trigger: BaseSchedule = SlotSchedule(timestep_minutes=step, latency_offset_minutes=offset,
                                                     speed=clock[0], wall_start=clock[1], sim_start=clock[2])
            else:
                trigger = beat_crontab(timestep_minutes=step, latency_offset_minutes=offset, nowfun=nowfun)
            entries[entry + suffix] = {"task": task, "schedule": trigger, "kwargs": kwargs,
                                       "options": {"queue": queue, "expires": expires}}
    return entries
