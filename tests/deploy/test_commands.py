"""Every command the compose file, the Dockerfile and the launcher run exists in the project.

Module paths are imported, console scripts found, CLI options checked against the programs' own
``--help``, queues against the Celery routes, and the Redis config file is loaded by a real
redis-server. The api image carries no torch, so beat and the API are imported with torch blocked.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from stack import launcher
from tests.deploy.test_dockerfile import DOCKERFILE, effective, parse_dockerfile

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def all_commands(services: dict[str, dict[str, Any]]) -> list[list[str]]:
    """Each service's command and exec-form health check, and the Dockerfile's CMDs."""
    commands = [service["command"] for service in services.values() if service["command"][0] != "redis-server"]
    for service in services.values():
        test = service["healthcheck"]["test"]
        if test[0] == "CMD":
            commands.append(test[1:])
        elif "celery" in test[1]:
            commands.append(test[1].split())
    _, stages = parse_dockerfile(DOCKERFILE.read_text())
    for name in ("api", "worker"):
        commands.append(json.loads(effective(stages, name, "CMD") or "[]"))
    return commands


def option_value(command: list[str], option: str) -> str:
    return command[command.index(option) + 1]


@functools.cache
def help_text(*argv: str) -> str:
    result = subprocess.run(
        [str(VENV_BIN / argv[0]), *argv[1:], "--help"], capture_output=True, text=True, timeout=120, check=True
    )
    return result.stdout


def test_console_scripts_exist(services: dict[str, dict[str, Any]]) -> None:
    programs = {command[0] for command in all_commands(services)}
    assert programs == {"celery", "uvicorn", "nowcast-healthcheck"}
    for program in ("celery", "uvicorn"):
        assert (VENV_BIN / program).is_file(), f"{program} is not installed by the project's dependencies"
    # nowcast-healthcheck is the deploy script the images copy into /usr/local/bin.
    assert (ROOT / "deploy" / "healthcheck.py").is_file()


def test_celery_app_path_resolves(services: dict[str, dict[str, Any]]) -> None:
    from celery import Celery

    paths = {option_value(c, "-A") for c in all_commands(services) if c[0] == "celery"}
    assert paths == {"workers.celery_app:app"} == {launcher.CELERY_APP}
    module, attribute = launcher.CELERY_APP.split(":")
    assert isinstance(getattr(importlib.import_module(module), attribute), Celery)


def test_api_factory_resolves(services: dict[str, dict[str, Any]]) -> None:
    paths = {c[1] for c in all_commands(services) if c[0] == "uvicorn"}
    assert paths == {"service.main:create_app"} == {launcher.API_FACTORY}
    module, attribute = launcher.API_FACTORY.split(":")
    factory = getattr(importlib.import_module(module), attribute)
    # uvicorn --factory calls it with no arguments: every parameter needs a default.
    assert all(p.default is not inspect.Parameter.empty for p in inspect.signature(factory).parameters.values())


def test_worker_queues_match_the_task_routes(services: dict[str, dict[str, Any]]) -> None:
    from workers.celery_app import TASK_ROUTES

    routed = {route["queue"] for route in TASK_ROUTES.values()}
    compose_queues = set(option_value(services["worker-cpu"]["command"], "-Q").split(","))
    launcher_spec = next(
        s
        for s in launcher.stack_specs(launcher.StackOptions(), {"NOWCAST_FEED_DIR": "/f"}, node_name="n@h")
        if s.name == "worker"
    )
    assert compose_queues == routed == set(option_value(launcher_spec.argv, "-Q").split(","))


@pytest.mark.parametrize(
    ("subcommand", "options"),
    [
        ("worker", ["-P", "-c", "--prefetch-multiplier", "-Q", "-n", "--loglevel"]),
        ("beat", ["-s", "--loglevel", "--pidfile"]),
        ("inspect", ["-d", "--timeout"]),
    ],
)
def test_celery_options_exist(subcommand: str, options: list[str]) -> None:
    text = help_text("celery", "-A", "workers.celery_app:app", subcommand)
    for option in options:
        assert f" {option}" in text or f"{option}," in text, f"celery {subcommand} has no {option}"


def test_uvicorn_options_exist(services: dict[str, dict[str, Any]]) -> None:
    text = help_text("uvicorn")
    used = {part for c in all_commands(services) if c[0] == "uvicorn" for part in c if part.startswith("--")}
    api_spec = next(
        s
        for s in launcher.stack_specs(launcher.StackOptions(), {"NOWCAST_FEED_DIR": "/f"}, node_name="n@h")
        if s.name == "api"
    )
    used |= {part for part in api_spec.argv if part.startswith("--")}
    assert used == {"--factory", "--host", "--port", "--proxy-headers", "--log-level", "--no-access-log"}
    for option in used:
        assert option in text, f"uvicorn has no {option}"


def test_healthcheck_subcommands_exist(services: dict[str, dict[str, Any]]) -> None:
    sys.path.insert(0, str(ROOT / "deploy"))
    try:
        import healthcheck
    finally:
        sys.path.remove(str(ROOT / "deploy"))
    for command in all_commands(services):
        if command[0] == "nowcast-healthcheck":
            with pytest.raises(SystemExit) as parsed:  # --help parses the whole command line first
                healthcheck.main([*command[1:], "--help"])
            assert parsed.value.code == 0, command


def test_redis_conf_loads_in_a_real_server(tmp_path: Path) -> None:
    import redis

    binary = shutil.which("redis-server")
    assert binary, "redis-server is needed (the test suite's Redis fixture needs it too)"
    port = launcher.free_port()
    # The compose command line, with the container's /data (the volume) and port swapped for local ones.
    conf = (ROOT / "deploy" / "redis.conf").read_text()
    assert "\ndir /data\n" in conf
    local_conf = tmp_path / "redis.conf"
    local_conf.write_text(conf.replace("\ndir /data\n", f'\ndir "{tmp_path}"\n'))
    process = subprocess.Popen(
        [binary, str(local_conf), "--port", str(port), "--bind", "127.0.0.1", "--requirepass", "s3cret"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(port=port, password="s3cret")
        launcher.Supervisor(log_dir=tmp_path).wait_until(
            lambda: launcher.redis_ping("127.0.0.1", port, "s3cret"), timeout=10, what="redis"
        )
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert client.config_get("save") == {"save": ""}
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port).ping()
    finally:
        process.terminate()
        process.wait(timeout=10)


NO_TORCH = """
    import importlib.abc, sys

    class BlockTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError(f"{name} is not in the api image")
            return None

    sys.meta_path.insert(0, BlockTorch())
"""


def test_beat_and_api_run_without_torch(tmp_path: Path) -> None:
    """The api image (no torch) runs the API and beat: both must import and configure without it."""
    code = textwrap.dedent(NO_TORCH) + textwrap.dedent("""
        from workers.celery_app import app
        app.loader.import_default_modules()  # what `celery beat` and `inspect` import
        assert app.conf.beat_schedule, "beat has nothing to schedule"
        from service.main import create_app
        create_app()
        assert "torch" not in sys.modules
        print("ok")
    """)
    env = {
        "PATH": "/usr/bin:/bin",
        "NOWCAST_API_KEYS": "a-key-long-enough-for-production",
        "NOWCAST_DATA_DIR": str(tmp_path),
        "PYTHONPATH": str(ROOT),
    }
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")
