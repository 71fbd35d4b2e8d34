"""Fixtures of the API tests: a TestClient over ``create_app(test_settings)`` and the real private Redis.

The API's tests use Redis database 9 of the test run's private ``redis-server`` (other suites use
other databases) and flush it around every test, so job counts and listings are exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from service.main import create_app
from service.settings import ApiSettings
from tests.utils.redis_server import RedisServer

API_KEY = "test-key-0123456789abcdef"
OTHER_KEY = "other-key-abcdef0123456789"
API_DB = 9


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real checkpoint with random weights (num_hidden [8, 8]); only its bytes matter to the API."""
    import torch

    from model.checkpoint import save_checkpoint
    from model.network.predrnn import PredRNN, PredRNNConfig

    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = PredRNNConfig(num_hidden=[8, 8], filter_size=3, patch_size=2, input_length=4, output_length=3)
    path = tmp_path_factory.mktemp("checkpoint") / "tiny.pt"
    save_checkpoint(path, PredRNN(config))
    return path


@pytest.fixture()
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    url = redis_server.url.rsplit("/", 1)[0] + f"/{API_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture()
def store(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture()
def settings(tmp_path: Path, redis_url: str, tiny_checkpoint: Path) -> ApiSettings:
    return ApiSettings(
        api_keys=[API_KEY, OTHER_KEY],
        redis_url=redis_url,
        data_dir=tmp_path / "data",
        checkpoint=tiny_checkpoint,
        input_scans=4,
        lead_steps=3,
        max_lead_steps=12,
        max_grid=64,
        log_format="json",
        readiness_timeout_seconds=0.5,
        readiness_cache_seconds=0,
    )


@pytest.fixture()
def client(settings: ApiSettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture()
def auth() -> dict[str, str]:
    return {"X-API-Key": API_KEY}
