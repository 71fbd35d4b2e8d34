"""Fixtures shared by the whole test run. Torch is kept to one thread so parallel suites on 2 cores stay predictable."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.utils.redis_server import RedisServer, free_port


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
