"""``run_stack`` end to end with stand-in children: fast checks of the launcher's own flow.

A driver process runs the real ``nowcast up`` with ``stack_specs`` replaced by one small
HTTP server that plays the API (``/readyz``) and records the environment it was given. The whole
stack, with the real children, is in tests/integration/test_stack.py.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from stack.launcher import free_port
from tests.utils.redis_server import RedisServer

DRIVER = """
    import os, sys
    from pathlib import Path
    from stack import launcher

    FAKE_API = '''
    import http.server, json, os, sys
    port, record, ready = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "ready"
    with open(record, "w") as handle:
        json.dump({k: v for k, v in os.environ.items() if k.startswith("NOWCAST_")}, handle)
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if ready and self.path == "/readyz" else 503)
            self.end_headers()
        def log_message(self, *args):
            pass
    if sys.argv[3] == "crash":
        print("fake api: bad settings")
        raise SystemExit(3)
    http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
    '''

    def fake_specs(options, env, *, node_name):
        argv = [sys.executable, "-c", FAKE_API, str(options.port), "@RECORD@", "@MODE@"]
        return [launcher.ChildSpec("api", argv, env, cwd=options.data_dir)]

    launcher.stack_specs = fake_specs
    from cli import main
    raise SystemExit(main(["up", *sys.argv[1:]]))
"""


def start_driver(tmp_path: Path, mode: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    code = textwrap.dedent(DRIVER).replace("@RECORD@", str(tmp_path / "env.json")).replace("@MODE@", mode)
    return subprocess.Popen(
        [sys.executable, "-c", code, *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def base_env(tmp_path: Path) -> dict[str, str]:
    import os

    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"not read by the stand-in API")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOWCAST_")}
    env["NOWCAST_CHECKPOINT"] = str(checkpoint)
    return env


def test_external_redis_and_configured_key(tmp_path: Path, base_env: dict[str, str], redis_server: RedisServer) -> None:
    port = free_port()
    base_env["NOWCAST_API_KEYS"] = "a-configured-key-long-enough"
    argv = ["--port", str(port), "--data-dir", str(tmp_path / "var"), "--redis-url", redis_server.url, "--quiet"]
    driver = start_driver(tmp_path, "ready", argv, base_env)
    assert driver.stdout is not None
    first = driver.stdout.readline()
    assert first == f"Nowcast is ready: http://127.0.0.1:{port}\n"  # no X-API-Key line: one was configured
    run_info = json.loads((tmp_path / "var" / "run" / "launcher.json").read_text())
    assert set(run_info["children"]) == {"api"}  # --redis-url: no private redis-server
    child_env = json.loads((tmp_path / "env.json").read_text())
    assert child_env["NOWCAST_REDIS_URL"] == redis_server.url
    assert child_env["NOWCAST_API_KEYS"] == "a-configured-key-long-enough"
    assert child_env["NOWCAST_DATA_DIR"] == str(tmp_path / "var")
    assert child_env["NOWCAST_FEED_DIR"] == str(tmp_path / "var" / "feed")
    driver.send_signal(signal.SIGTERM)
    assert driver.wait(timeout=30) == 0
    assert "stack stopped in" in driver.stderr.read()


def test_a_dying_child_stops_the_stack_with_its_output(tmp_path: Path, base_env: dict[str, str]) -> None:
    argv = ["--port", str(free_port()), "--data-dir", str(tmp_path / "var"), "--quiet"]
    driver = start_driver(tmp_path, "crash", argv, base_env)
    out, err = driver.communicate(timeout=60)
    assert driver.returncode == 1
    assert out.startswith("X-API-Key: ")  # the generated key came before the API could start
    assert "api exited while waiting for" in err and "fake api: bad settings" in err
    assert "stopped redis (exit status 0)" in err  # the private Redis went down in order
    assert not (tmp_path / "var" / "run" / "launcher.json").exists()


def test_ready_timeout_reports_the_last_readiness_answer(tmp_path: Path, base_env: dict[str, str]) -> None:
    argv = ["--port", str(free_port()), "--data-dir", str(tmp_path / "var"), "--quiet", "--ready-timeout", "2"]
    started = time.monotonic()
    driver = start_driver(tmp_path, "never-ready", argv, base_env)
    _, err = driver.communicate(timeout=60)
    assert driver.returncode == 1
    assert time.monotonic() - started < 30
    assert "timed out after 2 s waiting for http://127.0.0.1:" in err and "/readyz: HTTP 503" in err
