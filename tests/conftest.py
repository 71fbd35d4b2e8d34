"""Fixtures shared by the whole test run. Torch is kept to one thread so parallel suites on 2 cores stay predictable."""

from __future__ import annotations

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
