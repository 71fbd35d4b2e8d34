"""Start a slot's nowcast as soon as its scan lands, instead of at a fixed offset after the slot.

trigger_if_landed(settings, r, send, now) -> {"slot": iso, "sent": bool, "reason": str}

Beat runs ``workers.tasks.watch_feed`` every ``feed_poll_seconds``; it looks for the current slot's
scan by name (one ``stat``, no file opened) and, the first time it is there, sends that slot's
``workers.tasks.nowcast``. A Redis marker (``SET NX`` for one period) makes the send happen once per
slot however many watchers run; should one slip through anyway, the nowcast's job id
(``nowcast-<slot>``) turns the duplicate into a no-op. The fixed-offset beat entry stays as the
watchdog: it serves a slot whose scan came late and skips a stale one with the reason. Only the
current slot is ever sent, so nothing is backfilled.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

import redis

from model.io.netcdf import SCAN_NAME
from workers import jobs
from workers.schedule import expires_seconds, floor_to_step
from workers.settings import WorkerSettings

log = logging.getLogger(__name__)

TRIGGER_KEY = "nowcast:trigger:{job_id}"  # set once the slot's nowcast was sent by a watcher

Send = Callable[[str, int], None]  # (slot ISO-8601, expires seconds) -> the nowcast is queued


def trigger_if_landed(settings: WorkerSettings, r: redis.Redis, send: Send, now: dt.datetime, *,
                      job_id_of: Callable[[dt.datetime], str] = jobs.nowcast_job_id) -> dict[str, object]:
    """Send the nowcast of the slot at ``now`` (UTC) when its scan is in the feed and nobody sent it yet.

    ``settings`` are the domain's (its feed and cadence) and ``job_id_of(slot)`` its slot's job id.
    """
    slot = floor_to_step(now, settings.timestep_minutes)
    slot_iso = f"{slot:%Y-%m-%dT%H:%M:%SZ}"
    scan = settings.feed_dir / SCAN_NAME.format(slot)
    if not scan.is_file():
        return {"slot": slot_iso, "sent": False, "reason": f"{scan.name} not in the feed yet"}
    job_id = job_id_of(slot)
    period = settings.timestep_minutes * 60
    if not r.set(TRIGGER_KEY.format(job_id=job_id), "sent", nx=True, ex=period):
        return {"slot": slot_iso, "sent": False, "reason": "already sent"}
    # Queued for less than one period, as beat's own trigger: it never meets the next slot.
    send(slot_iso, expires_seconds(settings.timestep_minutes))
    log.info("%s landed; sent %s", scan.name, job_id)
    return {"slot": slot_iso, "sent": True, "reason": f"{scan.name} landed"}
