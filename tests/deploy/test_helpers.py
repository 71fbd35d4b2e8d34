"""The image helpers in deploy/: the health-check script and the requirements splitter."""

from __future__ import annotations

import http.server
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "deploy"))

import healthcheck  # noqa: E402
import project_requirements  # noqa: E402


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        self.send_response(200 if self.path == "/healthz" else 503)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_check(server_url: str) -> None:
    healthz, readyz = f"{server_url}/healthz", f"{server_url}/readyz"
    assert healthcheck.check_http(healthz, timeout=5) == (True, f"{healthz}: HTTP 200")
    assert healthcheck.check_http(readyz, timeout=5) == (False, f"{readyz}: HTTP 503")
    healthy, reason = healthcheck.check_http("http://127.0.0.1:9/healthz", timeout=1)
    assert not healthy and reason.startswith("http://127.0.0.1:9/healthz: ")


def test_http_check_exit_status(server_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert healthcheck.main(["http", f"{server_url}/healthz"]) == 0
    assert healthcheck.main(["http", f"{server_url}/nope"]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"healthy: {server_url}/healthz: HTTP 200",
        f"unhealthy: {server_url}/nope: HTTP 503",
    ]


def test_file_age_check(tmp_path: Path) -> None:
    schedule = tmp_path / "celerybeat-schedule"
    assert healthcheck.check_file_age(schedule, max_age=60) == (False, f"{schedule}: missing")
    # A dbm backend may write schedule.db / schedule.dat instead of the bare name.
    (tmp_path / "celerybeat-schedule.db").write_bytes(b"x")
    os.utime(tmp_path / "celerybeat-schedule.db", (1000.0, 1000.0))
    assert healthcheck.check_file_age(schedule, max_age=60, now=1030.0) == (
        True,
        f"{schedule}: modified 30 s ago (limit 60 s)",
    )
    assert healthcheck.check_file_age(schedule, max_age=60, now=1061.0) == (
        False,
        f"{schedule}: modified 61 s ago (limit 60 s)",
    )
    schedule.write_bytes(b"y")
    os.utime(schedule, (1050.0, 1050.0))  # the newest of the candidates counts
    assert healthcheck.check_file_age(schedule, max_age=60, now=1061.0)[0] is True


def test_requirement_names() -> None:
    assert project_requirements.requirement_name("celery[redis]>=5.4") == "celery"
    assert project_requirements.requirement_name("Pydantic_Settings>=2") == "pydantic-settings"
    with pytest.raises(ValueError, match="not a PEP 508 requirement"):
        project_requirements.requirement_name(">=1")


def test_select_requirements() -> None:
    requirements = ["torch==2.13.0", "numpy>=1.26", "celery[redis]>=5.4"]
    assert project_requirements.select(requirements, exclude=["torch"], only=None) == [
        "numpy>=1.26",
        "celery[redis]>=5.4",
    ]
    assert project_requirements.select(requirements, exclude=[], only="Torch") == ["torch==2.13.0"]
    with pytest.raises(LookupError, match="not a project dependency: tensorflow"):
        project_requirements.select(requirements, exclude=["tensorflow"], only=None)


def test_requirements_script_names_a_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "pyproject.toml"
    bad.write_text("[tool.x]\n")
    assert project_requirements.main(["--pyproject", str(bad)]) == 2
    assert capsys.readouterr().err == f"project_requirements: {bad}: no [project] dependencies\n"
