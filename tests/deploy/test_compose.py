"""docker-compose.yml and .env.example: its invariants, checked without a Docker engine.

PyYAML reads the file (anchors and ``<<`` merges resolved as Compose resolves them); where the
``docker-compose`` binary exists (Debian package docker-compose, installed by ``make setup``), it
validates the file against the Compose schema too.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
REDIS_CONF = ROOT / "deploy" / "redis.conf"

SERVICES = {"api", "worker-gpu", "worker-cpu", "beat", "redis"}
WORKERS = ("worker-gpu", "worker-cpu")
PYTHON_SERVICES = ("api", "worker-gpu", "worker-cpu", "beat")
PASSWORD = "${REDIS_PASSWORD:?set REDIS_PASSWORD in .env}"
_VARIABLE = re.compile(r"\$\{([A-Z0-9_]+)(?:(:?[-?])([^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def env_example() -> dict[str, str]:
    """KEY=value lines of .env.example (comments and blanks skipped)."""
    pairs = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def duration_seconds(text: str) -> float:
    """A Compose duration (``4m``, ``1m30s``, ``90s``) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"not a duration: {text!r}"
    return sum(float(n) * units[u] for n, u in parts)


def env_default(value: str) -> str:
    """The default of ``${NAME:-default}``, or the literal value."""
    match = _VARIABLE.fullmatch(value)
    return match.group(3) if match and match.group(2) == ":-" else value


def test_exactly_the_four_roles(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == SERVICES


def test_workers_are_one_definition_in_two_profiles(services: dict[str, dict[str, Any]]) -> None:
    gpu, cpu = services["worker-gpu"], services["worker-cpu"]
    assert gpu["profiles"] == ["gpu"]
    assert cpu["profiles"] == ["cpu"]
    # Same image, command, environment, volumes, health check: only profile and GPU differ.
    shared = set(gpu) - {"profiles", "deploy"}
    assert shared == set(cpu) - {"profiles"}
    assert all(gpu[key] == cpu[key] for key in shared)
    assert gpu["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    ]
    assert "deploy" not in cpu
    for name in SERVICES - set(WORKERS):
        assert "profiles" not in services[name], f"{name} must start in every profile"


def test_worker_command_is_prefork_one_process(services: dict[str, dict[str, Any]]) -> None:
    command = services["worker-cpu"]["command"]
    assert command[:4] == ["celery", "-A", "workers.celery_app:app", "worker"]
    assert command[command.index("-P") + 1] == "prefork"
    assert command[command.index("-c") + 1] == "1"
    assert command[command.index("--prefetch-multiplier") + 1] == "1"
    assert command[command.index("-Q") + 1].split(",") == ["gpu", "cpu"]
    assert "-B" not in command and "--beat" not in command  # beat runs once, in its own service
    env = services["worker-cpu"]["environment"]
    assert env["PYTORCH_NVML_BASED_CUDA_CHECK"] == "1"


def test_commands_are_exec_form(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        command = service["command"]
        assert isinstance(command, list) and all(isinstance(part, str) for part in command), name
        assert command[0] not in ("sh", "bash", "/bin/sh"), f"{name}: a shell would swallow SIGTERM"


def test_api_is_one_uvicorn_process_on_8000(services: dict[str, dict[str, Any]]) -> None:
    api = services["api"]
    command = api["command"]
    assert command[:3] == ["uvicorn", "service.main:create_app", "--factory"]
    assert command[command.index("--port") + 1] == "8000"
    assert "--workers" not in command and "--reload" not in command
    assert api["ports"] == ["${NOWCAST_API_PORT:-8000}:8000"]


def test_exactly_one_beat(services: dict[str, dict[str, Any]]) -> None:
    beats = [name for name, s in services.items() if "beat" in s["command"]]
    assert beats == ["beat"]
    beat = services["beat"]
    assert beat["command"][:4] == ["celery", "-A", "workers.celery_app:app", "beat"]
    assert beat.get("deploy", {}).get("replicas", 1) == 1
    schedule = beat["command"][beat["command"].index("-s") + 1]
    assert schedule == "/beat/celerybeat-schedule"
    assert "beat-state:/beat" in beat["volumes"]
    # The health check watches the schedule file beat writes.
    assert beat["healthcheck"]["test"][:4] == ["CMD", "nowcast-healthcheck", "file-age", schedule]


def test_redis_persistent_private_and_password_protected(services: dict[str, dict[str, Any]]) -> None:
    redis = services["redis"]
    assert "ports" not in redis and "expose" not in redis
    command = redis["command"]
    assert command[:2] == ["redis-server", "/usr/local/etc/redis/redis.conf"]
    assert command[command.index("--requirepass") + 1] == PASSWORD
    assert "./deploy/redis.conf:/usr/local/etc/redis/redis.conf:ro" in redis["volumes"]
    assert "redis-data:/data" in redis["volumes"]
    conf = dict(line.split(None, 1) for line in REDIS_CONF.read_text().splitlines() if line.strip() and line[0] != "#")
    assert conf["appendonly"] == "yes"
    assert conf["appendfsync"] == "everysec"
    assert conf["maxmemory-policy"] == "noeviction"
    assert conf["dir"] == "/data"
    assert "requirepass" not in conf  # the secret comes from .env, never from the repository
    # The health check authenticates through REDISCLI_AUTH, set from the same variable.
    assert redis["environment"]["REDISCLI_AUTH"] == PASSWORD


def test_every_service_has_a_health_check(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        check = service["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        for field in ("interval", "timeout", "retries", "start_period"):
            assert field in check, f"{name}.healthcheck.{field}"
        assert duration_seconds(check["timeout"]) < duration_seconds(check["interval"]), name


def test_dependencies_wait_for_health(services: dict[str, dict[str, Any]]) -> None:
    for name in PYTHON_SERVICES:
        depends_on = services[name]["depends_on"]
        assert isinstance(depends_on, dict), f"{name}: long depends_on syntax needed for conditions"
        assert depends_on == {"redis": {"condition": "service_healthy"}}, name


def test_grace_period_outlasts_the_task_hard_limit(services: dict[str, dict[str, Any]]) -> None:
    for name in WORKERS:
        service = services[name]
        hard_limit = float(env_default(service["environment"]["NOWCAST_TASK_TIME_LIMIT_S"]))
        assert float(env_example()["NOWCAST_TASK_TIME_LIMIT_S"]) == hard_limit
        assert duration_seconds(service["stop_grace_period"]) > hard_limit
    for name in SERVICES:
        assert "stop_grace_period" in services[name], name


def test_named_volumes(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    assert set(compose["volumes"]) == {"models", "products", "feed", "beat-state", "redis-data"}
    for name in WORKERS:
        assert {"models:/models:ro", "products:/data", "feed:/feed"} <= set(services[name]["volumes"])
    assert {"models:/models:ro", "products:/data"} <= set(services["api"]["volumes"])
    # Every named volume a service mounts is declared (bind mounts start with ./).
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith("./") or source in compose["volumes"], f"{name}: {volume}"


def nowcast_env(service: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in service["environment"].items() if k.startswith("NOWCAST_")}


def test_python_services_share_the_settings(services: dict[str, dict[str, Any]]) -> None:
    shared = nowcast_env(services["beat"])
    assert shared["NOWCAST_REDIS_URL"] == f"redis://:{PASSWORD}@redis:6379/0"
    assert shared["NOWCAST_DATA_DIR"] == "/data"
    assert shared["NOWCAST_FEED_DIR"] == "/feed"
    assert env_default(shared["NOWCAST_CHECKPOINT"]) == "/models/radar_lagrangian.pt"
    for name in WORKERS:
        assert nowcast_env(services[name]) == shared, name
    api = nowcast_env(services["api"])
    assert {k: v for k, v in api.items() if k in shared} == shared
    # Only the API holds the API keys.
    assert api["NOWCAST_API_KEYS"] == "${NOWCAST_API_KEYS:?set NOWCAST_API_KEYS in .env}"
    assert "NOWCAST_API_KEYS" not in shared


def settings_fields(cls: type) -> dict[str, str]:
    """NOWCAST_ variable -> the default as the environment would spell it ("" when required)."""
    fields = {}
    for name, info in cls.model_fields.items():
        default = info.default
        text = "" if info.is_required() or default is None else str(default).lower() if isinstance(
            default, bool) else str(default)
        fields[f"NOWCAST_{name.upper()}"] = text
    return fields


def test_every_setting_is_configurable_with_its_default(services: dict[str, dict[str, Any]]) -> None:
    from service.settings import ApiSettings
    from workers.settings import WorkerSettings

    fixed_by_compose = {"NOWCAST_REDIS_URL", "NOWCAST_DATA_DIR", "NOWCAST_FEED_DIR", "NOWCAST_CHECKPOINT"}
    worker_fields = settings_fields(WorkerSettings)
    api_fields = {k: v for k, v in settings_fields(ApiSettings).items() if k not in worker_fields}
    shared, api = nowcast_env(services["beat"]), nowcast_env(services["api"])
    assert set(shared) == set(worker_fields)
    assert set(api) == set(worker_fields) | set(api_fields)
    example = env_example()
    for name, default in {**worker_fields, **api_fields}.items():
        if name in fixed_by_compose:
            continue
        assert name in example, f"{name} missing from .env.example"
        if name == "NOWCAST_API_KEYS":
            continue  # required: no default, a refused placeholder in .env.example
        assert env_default(api[name]) == default, f"{name}: compose default differs from the settings'"
        assert example[name] == default, f"{name}: .env.example differs from the settings' default"


def test_settings_refuse_the_example_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from service.settings import ApiSettings

    for name, value in env_example().items():
        if name.startswith("NOWCAST_"):
            monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match="placeholders or shorter than 16 characters"):
        ApiSettings()


def test_env_example_defines_every_variable_the_compose_file_reads() -> None:
    example = env_example()
    assert example["COMPOSE_PROFILES"] in ("cpu", "gpu")
    assert example["TORCH_VARIANT"] in ("cpu", "cuda")
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    used = {match.group(1): match for match in _VARIABLE.finditer(text)}
    assert set(used) <= set(example), f"missing from .env.example: {sorted(set(used) - set(example))}"
    for name, match in used.items():
        if match.group(2) == ":-":  # the compose default and the documented value agree
            assert example[name] == match.group(3), name


def test_env_example_has_no_usable_secret() -> None:
    example = env_example()
    assert example["REDIS_PASSWORD"].startswith("change-me")
    assert example["NOWCAST_API_KEYS"] == "changethis"  # a placeholder the API refuses outside development


def _docker_compose() -> str:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (`make setup` installs Debian's package)")
    return binary


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_docker_compose_config_validates(profile: str, tmp_path: Path) -> None:
    binary = _docker_compose()
    env = {"PATH": "/usr/bin:/bin", "COMPOSE_PROFILES": profile}
    result = subprocess.run(
        [binary, "--project-directory", str(ROOT), "-f", str(COMPOSE_FILE), "--env-file", str(ENV_EXAMPLE), "config"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert set(resolved["services"]) == SERVICES
    assert resolved["services"]["api"]["environment"]["NOWCAST_REDIS_URL"] == (
        f"redis://:{env_example()['REDIS_PASSWORD']}@redis:6379/0"
    )
    assert "ports" not in resolved["services"]["redis"]


def test_docker_compose_refuses_a_missing_redis_password(tmp_path: Path) -> None:
    binary = _docker_compose()
    empty_env = tmp_path / "empty.env"
    empty_env.write_text("COMPOSE_PROFILES=cpu\n")
    result = subprocess.run(
        [binary, "--project-directory", str(ROOT), "-f", str(COMPOSE_FILE), "--env-file", str(empty_env), "config"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "set REDIS_PASSWORD in .env" in result.stderr
