#!/usr/bin/env python3
"""Container health checks that need nothing but the standard library (no curl in the images).

Installed as ``nowcast-healthcheck`` in both images and used by docker-compose.yml::

    nowcast-healthcheck http URL [--timeout S]          # 2xx from URL, e.g. the API's /healthz
    nowcast-healthcheck file-age PATH --max-age S       # PATH (or PATH.*) modified in the last S s

``file-age`` is beat's check: beat has no ``inspect ping``, but while it ticks it rewrites its
schedule file (a shelve, which some dbm backends split into ``PATH.db`` / ``PATH.dat``) every few
minutes, so a stale file means a stuck scheduler. Exit status 0 healthy, 1 unhealthy; one line
on stdout says why, which ``docker inspect`` shows.
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def check_http(url: str, *, timeout: float) -> tuple[bool, str]:
    """Healthy when a GET of ``url`` answers 2xx within ``timeout`` seconds."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (local URL)
            return 200 <= response.status < 300, f"{url}: HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return False, f"{url}: HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return False, f"{url}: {exc}"


def newest_mtime(path: Path) -> float | None:
    """The newest modification time (epoch seconds) of ``path`` or its ``path.*`` siblings."""
    candidates = [path, *path.parent.glob(f"{path.name}.*")] if path.parent.is_dir() else [path]
    times = [p.stat().st_mtime for p in candidates if p.is_file()]
    return max(times) if times else None


def check_file_age(path: Path, *, max_age: float, now: float | None = None) -> tuple[bool, str]:
    """Healthy when ``path`` (or ``path.*``) was modified less than ``max_age`` seconds ago."""
    mtime = newest_mtime(path)
    if mtime is None:
        return False, f"{path}: missing"
    age = (time.time() if now is None else now) - mtime
    return age <= max_age, f"{path}: modified {age:.0f} s ago (limit {max_age:.0f} s)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nowcast-healthcheck", description="container health checks")
    commands = parser.add_subparsers(dest="check", required=True)
    http = commands.add_parser("http", help="GET a URL, healthy on 2xx")
    http.add_argument("url")
    http.add_argument("--timeout", type=float, default=5.0, help="seconds")
    file_age = commands.add_parser("file-age", help="healthy when a file was modified recently")
    file_age.add_argument("path", type=Path)
    file_age.add_argument("--max-age", type=float, required=True, help="seconds")
    args = parser.parse_args(argv)

    if args.check == "http":
        healthy, reason = check_http(args.url, timeout=args.timeout)
    else:
        healthy, reason = check_file_age(args.path, max_age=args.max_age)
    sys.stdout.write(f"{'healthy' if healthy else 'unhealthy'}: {reason}\n")
    return 0 if healthy else 1


if __name__ == "__main__":
    raise SystemExit(main())
