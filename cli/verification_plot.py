"""``nowcast verification-plot``: the live skill figure drawn from the verification records in Redis.

    nowcast verification-plot --redis-url redis://127.0.0.1:6379/0 --output live_skill.png
        [--since ISO] [--until ISO] [--json summary.json]

The records are aggregated exactly as ``GET /verification`` does it (``skill_store.records_between``
then ``skill_summary.summarize`` per source): CSI from the contingency table pooled over the slots
of the window. Without ``--since`` / ``--until`` the window is every stored slot, because the stack's
clock may be simulated (``nowcast up --speed``) and "the last 24 hours" of the wall clock would
miss its slots. An empty window or an unreachable Redis is a one-line error (exit status 2).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import redis

from model import InputError
from workers import jobs, skill_store, skill_summary

log = logging.getLogger(__name__)

EVERYTHING = (dt.datetime(1970, 1, 1, tzinfo=dt.UTC), dt.datetime(9999, 1, 1, tzinfo=dt.UTC))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nowcast verification-plot", description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default=os.environ.get("NOWCAST_REDIS_URL", "redis://127.0.0.1:6379/0"),
                        help="the job store holding the records (default $NOWCAST_REDIS_URL or the local one)")
    parser.add_argument("--since", help="first slot, ISO-8601 UTC, inclusive (default: the oldest stored)")
    parser.add_argument("--until", help="slot bound, ISO-8601 UTC, exclusive (default: after the newest stored)")
    parser.add_argument("--output", type=Path, required=True, help="the PNG to write")
    parser.add_argument("--json", type=Path, help="also write the aggregated numbers here")
    return parser


def _moment(text: str | None, name: str, default: dt.datetime) -> dt.datetime:
    if text is None:
        return default
    try:
        return skill_store.parse_iso(text)
    except ValueError as exc:
        raise InputError(f"--{name} {text!r} is not an ISO-8601 time ({exc})") from exc


def read_reports(url: str, since: dt.datetime, until: dt.datetime) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """{source: the per-lead summary GET /verification gives} for the slots in [since, until), and the
    slots of those records (ISO, sorted)."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=30)
    except ValueError as exc:
        raise InputError(f"--redis-url {url!r} is not a Redis URL ({exc})") from exc
    try:
        records = {stream: skill_store.records_between(client, stream=stream, since=since, until=until)
                   for stream in jobs.STREAMS}
    except redis.RedisError as exc:
        raise InputError(f"cannot read the verification records from {url} ({exc.__class__.__name__}: {exc})"
                         ) from exc
    finally:
        client.close()
    slots = sorted({rec.meta["slot"] for stream in records.values() for rec in stream if rec.meta})
    return {stream: skill_summary.summarize(found) for stream, found in records.items()}, slots


def _span(url: str, since: dt.datetime, until: dt.datetime) -> str:
    first = _iso(since) if since != EVERYTHING[0] else "the oldest"
    last = _iso(until) if until != EVERYTHING[1] else "the newest"
    return f"{url}, slots from {first} to {last}"


def _iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    since = _moment(args.since, "since", EVERYTHING[0])
    until = _moment(args.until, "until", EVERYTHING[1])
    if since >= until:
        raise InputError(f"--since ({_iso(since)}) must be before --until ({_iso(until)})")
    reports, slot_times = read_reports(args.redis_url, since, until)
    if not any(report["slots"] for report in reports.values()):
        products = sum(report["products"] for report in reports.values())
        raise InputError(f"no scored verification records in {_span(args.redis_url, since, until)} "
                         f"({products} product(s) stored, none with a scored lead); nothing to plot")
    from model.visualization.live_skill import plot_live_skill  # matplotlib only when there is a figure

    slots = ", ".join(f"{source} {report['slots']} slots" for source, report in reports.items())
    title = f"live skill: slots {slot_times[0]} to {slot_times[-1]}, pooled ({slots})"
    plot_live_skill(reports, args.output, title)
    if args.json is not None:
        document = {"command": shlex.join(["nowcast", "verification-plot", *(argv if argv is not None
                                                                             else sys.argv[1:])]),
                    "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "since": args.since, "until": args.until, "sources": reports}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    log.info("wrote %s (%s)", args.output, slots)
    return 0
