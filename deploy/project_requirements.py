#!/usr/bin/env python3
"""Print the project's runtime requirements from pyproject.toml, one per line, for image builds.

The Dockerfile installs torch separately (CPU or CUDA wheels, by build argument) and the API image
not at all, so it needs the dependency list with torch split off. Reading pyproject.toml keeps one
source of truth instead of a hand-kept requirements file that drifts.

Usage::

    project_requirements.py [--pyproject PATH] [--exclude NAME ...] [--only NAME]

Exit status 2 when a named package is not a dependency of the project.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def requirement_name(requirement: str) -> str:
    """The normalised distribution name of a PEP 508 requirement (``celery[redis]>=5`` -> ``celery``)."""
    match = _NAME.match(requirement)
    if match is None:
        raise ValueError(f"not a PEP 508 requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def project_requirements(pyproject: Path) -> list[str]:
    """The ``[project] dependencies`` of a pyproject.toml, as written."""
    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    try:
        return list(data["project"]["dependencies"])
    except KeyError as exc:
        raise ValueError(f"{pyproject}: no [project] dependencies") from exc


def select(requirements: list[str], *, exclude: list[str], only: str | None) -> list[str]:
    """Filter requirements by name; every name asked for must be a dependency."""
    names = {requirement_name(r) for r in requirements}
    asked = [requirement_name(n) for n in [*exclude, *([only] if only else [])]]
    unknown = [n for n in asked if n not in names]
    if unknown:
        raise LookupError(f"not a project dependency: {', '.join(unknown)}")
    if only is not None:
        return [r for r in requirements if requirement_name(r) == requirement_name(only)]
    excluded = {requirement_name(n) for n in exclude}
    return [r for r in requirements if requirement_name(r) not in excluded]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    parser.add_argument("--pyproject", type=Path, default=default_pyproject)
    parser.add_argument("--exclude", action="append", default=[], metavar="NAME")
    parser.add_argument("--only", metavar="NAME")
    args = parser.parse_args(argv)
    try:
        lines = select(project_requirements(args.pyproject), exclude=args.exclude, only=args.only)
    except (LookupError, ValueError, OSError) as exc:
        sys.stderr.write(f"project_requirements: {exc}\n")
        return 2
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
