"""Fixtures shared by the whole test run, and the order in which its test files start.

Torch is kept to one thread so parallel suites on 2 cores stay predictable.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.utils.redis_server import RedisServer, free_port

# Test files that start whole processes (stacks, workers, benchmark scripts) and take tens of
# seconds each: their directories, and the markers their tests carry elsewhere.
HEAVY_DIRECTORIES = ("benchmarks", "integration")
HEAVY_MARKERS = ("slow", "integration")


def _is_heavy(item: pytest.Item) -> bool:
    in_directory = item.path.parent.name in HEAVY_DIRECTORIES and item.path.parent.parent.name == "tests"
    return in_directory or any(item.get_closest_marker(name) for name in HEAVY_MARKERS)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Heavy test files first, the many short ones after them; within a file the order stays.

    `make test` hands whole files to two pytest-xdist workers in this order
    (``--dist loadfile --no-loadscope-reorder``). Long files started last would leave one worker
    alone at the end; started first, the short files fill in behind them (longest first).
    """
    heavy_files = {item.path for item in items if _is_heavy(item)}
    items.sort(key=lambda item: item.path not in heavy_files)  # sort is stable


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private redis-server for the whole test session (AOF on, its own port and directory)."""
    server = RedisServer(port=free_port(), data_dir=Path(tmp_path_factory.mktemp("redis"))).start()
    yield server
    server.stop()


@pytest.fixture()
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of one test's own, for tests that stop, pause, kill or restart it."""
    server = RedisServer(port=free_port(), data_dir=tmp_path / "redis").start()
    yield server
    if server.process is not None and server.process.poll() is None:
        os.kill(server.process.pid, signal.SIGCONT)  # a test may leave it paused (SIGSTOP)
    server.stop()
