"""``nowcast verification-plot`` through the real command (a subprocess), on records a real sweep wrote."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from PIL import Image

from tests.utils.redis_server import RedisServer, free_port
from tests.workers.conftest import FEED_START, blob_field, write_blob_feed
from tests.workers.verification_builders import make_product, shifted
from workers import skill_summary, verification
from workers.settings import WorkerSettings

DB = 7  # this module's Redis database
SLOTS, LEADS = 3, 3


def nowcast(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli", "verification-plot", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture()
def store(redis_server: RedisServer, tmp_path: Path) -> Iterator[tuple[str, redis.Redis, WorkerSettings]]:
    url = redis_server.url.replace("/0", f"/{DB}")
    r = redis.Redis.from_url(url)
    r.flushdb()
    yield url, r, WorkerSettings(redis_url=url, data_dir=tmp_path, verification_grace_minutes=30)
    r.flushdb()
    r.close()


def verified(settings: WorkerSettings, r: redis.Redis) -> None:
    """SLOTS slots of both streams, verified by the sweep against a real feed."""
    write_blob_feed(settings.feed_dir, FEED_START, SLOTS + LEADS + 1)
    truth = blob_field(SLOTS + LEADS + 1)
    for index in range(SLOTS):
        slot = FEED_START + dt.timedelta(minutes=6 * index)
        valid = truth[index + 1: index + 1 + LEADS]
        make_product(settings, r, slot=slot, stream="model", dbz=shifted(valid, 1), source="predrnn")
        make_product(settings, r, slot=slot, stream="extrapolation", dbz=shifted(valid, 3), source="extrapolation")
    summary = verification.sweep(settings, r, now=FEED_START + dt.timedelta(hours=2))
    assert summary["leads"]["scored"] == 2 * SLOTS * LEADS


def test_the_plot_of_a_real_sweeps_records(store: tuple[str, redis.Redis, WorkerSettings], tmp_path: Path) -> None:
    url, r, settings = store
    verified(settings, r)
    png, summary = tmp_path / "out" / "live_skill.png", tmp_path / "out" / "live_skill.json"
    result = nowcast("--redis-url", url, "--output", png, "--json", summary)
    assert result.returncode == 0, result.stderr
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size == (1600, 400)
    document = json.loads(summary.read_text())
    # The numbers behind the figure are GET /verification's aggregation of the same records.
    for stream, report in document["sources"].items():
        assert report["slots"] == SLOTS and [item["lead_minutes"] for item in report["leads"]] == [6, 12, 18]
        records = verification.skill_store.records_between(r, stream=stream, since=FEED_START,
                                                           until=FEED_START + dt.timedelta(days=1))
        assert report == skill_summary.summarize(records)
    # A window narrows the records: the first slot only.
    since, until = FEED_START.strftime("%Y-%m-%dT%H:%MZ"), (FEED_START + dt.timedelta(minutes=6)).strftime(
        "%Y-%m-%dT%H:%MZ")
    result = nowcast("--redis-url", url, "--since", since, "--until", until, "--output", png, "--json", summary)
    assert result.returncode == 0, result.stderr
    assert {report["slots"] for report in json.loads(summary.read_text())["sources"].values()} == {1}


def test_an_empty_store_is_a_message_not_a_traceback(store: tuple[str, redis.Redis, WorkerSettings],
                                                     tmp_path: Path) -> None:
    url, _, _ = store
    result = nowcast("--redis-url", url, "--output", tmp_path / "x.png")
    assert result.returncode == 2
    assert "no scored verification records" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("url", ["redis://127.0.0.1:{port}/0", "not-a-redis-url"])
def test_a_bad_redis_url_is_a_message_not_a_traceback(url: str, tmp_path: Path) -> None:
    url = url.format(port=free_port())  # nothing listens there
    result = nowcast("--redis-url", url, "--output", tmp_path / "x.png")
    assert result.returncode == 2, result.stderr
    assert "nowcast verification-plot: error:" in result.stderr and "Traceback" not in result.stderr
    assert url in result.stderr
