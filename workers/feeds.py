"""Scan discovery for the scheduled nowcast: the newest complete sequence ending at a slot.

Interface
---------
list_scans(feed_dir) -> {scan time (UTC datetime): path}
select_sequence(feed_dir, *, slot, input_scans, timestep_minutes, stale_after_minutes) -> FeedSelection
    raises FeedSkip (stale, incomplete, empty: record ``skipped``) or FeedNotReady (the slot's scan
    is merely late: try again shortly).

Scans are found by name, ``scan_YYYYmmddTHHMMZ.nc`` (what :func:`model.io.netcdf.write_scans`
writes), so discovery opens no file; the selected files are then read and validated by
:func:`model.io.netcdf.read_scans`. Hidden and temporary files (a scan still being copied in) are
ignored. The task never backfills: it serves its own slot or skips it.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

from model.io.netcdf import scan_time_from_name

log = logging.getLogger(__name__)


class FeedSkip(Exception):
    """The slot cannot be served (stale, incomplete or empty feed); the message is the reason."""


class FeedNotReady(Exception):
    """The slot's scan has not arrived yet, but the feed is live: worth another look shortly."""


@dataclass
class FeedSelection:
    paths: list[Path]  # oldest first, one per scan
    times: list[dt.datetime]  # UTC, oldest first; times[-1] == slot


def _fmt(moment: dt.datetime) -> str:
    return f"{moment:%Y-%m-%dT%H:%MZ}"


def list_scans(feed_dir: Path) -> dict[dt.datetime, Path]:
    """Scan time -> file for every ``scan_*.nc`` in ``feed_dir`` (other names are ignored)."""
    scans: dict[dt.datetime, Path] = {}
    for path in sorted(Path(feed_dir).iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        moment = scan_time_from_name(path)
        if moment is None:
            log.debug("%s: not a scan_YYYYmmddTHHMMZ.nc name; ignored", path)
            continue
        scans[moment] = path
    return scans


def select_sequence(
    feed_dir: Path,
    *,
    slot: dt.datetime,
    input_scans: int,
    timestep_minutes: int,
    stale_after_minutes: int,
) -> FeedSelection:
    """The ``input_scans`` consecutive scans ending exactly at ``slot``.

    Raises
    ------
    FeedSkip
        no feed, no scan at or before the slot, the newest scan older than ``stale_after_minutes``,
        or a gap among the scans needed.
    FeedNotReady
        the slot's scan is missing but the newest scan is recent (it is probably on its way).
    """
    feed_dir = Path(feed_dir)
    if not feed_dir.is_dir():
        raise FeedSkip(f"feed directory {feed_dir} does not exist")
    scans = list_scans(feed_dir)
    usable = [moment for moment in scans if moment <= slot]
    if not usable:
        raise FeedSkip(f"no scans at or before {_fmt(slot)} in {feed_dir}")
    newest = max(usable)
    if newest < slot:
        age_minutes = (slot - newest).total_seconds() / 60
        if age_minutes > stale_after_minutes:
            raise FeedSkip(f"feed stale: newest scan {_fmt(newest)} is {age_minutes:g} min older than the slot "
                           f"{_fmt(slot)} (limit {stale_after_minutes} min)")
        raise FeedNotReady(f"scan for {_fmt(slot)} not in {feed_dir} yet (newest {_fmt(newest)})")
    step = dt.timedelta(minutes=timestep_minutes)
    needed = [slot - k * step for k in range(input_scans - 1, -1, -1)]
    missing = [moment for moment in needed if moment not in scans]
    if missing:
        raise FeedSkip(f"incomplete feed: {len(missing)} of the {input_scans} scans ending {_fmt(slot)} "
                       f"missing ({', '.join(_fmt(m) for m in missing)})")
    return FeedSelection([scans[moment] for moment in needed], needed)
