"""The API as a real uvicorn process: a client vanishing mid-body is no error, and an API killed
mid-upload leaves nothing half-accepted; after its restart the same upload is accepted once."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from benchmarks.faultstack import FaultStack
from tests.service.builders import write_sequence
from workers import jobs

pytestmark = pytest.mark.integration


@pytest.fixture()
def api_stack(tmp_path: Path, tiny_checkpoint: Path) -> Iterator[FaultStack]:
    env = {"NOWCAST_INPUT_SCANS": "4", "NOWCAST_LEAD_STEPS": "3", "NOWCAST_MAX_GRID": "64",
           "NOWCAST_LOG_FORMAT": "text"}
    with FaultStack(tmp_path / "stack", checkpoint=tiny_checkpoint, env=env, workers_count=0) as stack:
        yield stack


def _multipart(paths: list[Path]) -> tuple[bytes, str]:
    request = httpx.Request("POST", "http://x/forecast", files=[("file", (p.name, p.read_bytes())) for p in paths],
                            data={"steps": "3"})
    return request.read(), request.headers["content-type"]


def _send_partial(url: str, key: str, body: bytes, content_type: str) -> socket.socket:
    """Headers announcing the whole body, then only its first half; the socket stays open."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    head = (f"POST /forecast HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {key}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    sock.sendall(head + body[: len(body) // 2])
    return sock


def test_client_disconnect_mid_body_is_logged_as_info(api_stack: FaultStack, tmp_path: Path) -> None:
    body, content_type = _multipart(write_sequence(tmp_path / "scans", count=4))
    sock = _send_partial(api_stack.api.url, api_stack.api_key, body, content_type)
    time.sleep(0.5)
    sock.close()
    deadline = time.monotonic() + 10
    while "client disconnected" not in api_stack.api.log_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    log = api_stack.api.log_text()
    assert "INFO service.problems: client disconnected before sending the whole body" in log, log[-2000:]
    assert " ERROR " not in log and "Traceback" not in log
    assert httpx.get(f"{api_stack.api.url}/healthz").status_code == 200


def test_api_killed_mid_upload_leaves_nothing_and_takes_it_again(api_stack: FaultStack, tmp_path: Path) -> None:
    paths = write_sequence(tmp_path / "scans", count=4)
    body, content_type = _multipart(paths)
    sock = _send_partial(api_stack.api.url, api_stack.api_key, body, content_type)
    time.sleep(0.5)
    api_stack.api.kill()
    sock.close()
    inputs = api_stack.data_dir / "inputs"
    assert not inputs.exists() or list(inputs.iterdir()) == []  # nothing was staged, nothing accepted
    api_stack.api.start()
    response = httpx.post(f"{api_stack.api.url}/forecast", content=body,
                          headers={**api_stack.headers, "Content-Type": content_type}, timeout=30)
    assert response.status_code == 201, response.text
    store = redis.Redis(port=api_stack.redis.port)
    try:
        assert jobs.list_jobs(store)[1] == 1 and store.llen("gpu") == 1
    finally:
        store.close()
    assert [p.name for p in inputs.iterdir()] == [response.json()["jobID"]]
