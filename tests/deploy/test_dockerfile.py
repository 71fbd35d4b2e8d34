"""deploy/Dockerfile: stages, torch variants, non-root user, and that what it copies exists."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / "deploy" / "Dockerfile.dockerignore"


@dataclass
class Stage:
    name: str
    parent: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse_dockerfile(text: str) -> tuple[list[str], dict[str, Stage]]:
    """Global ARG lines and the stages by name; continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "Dockerfile ends inside a continuation"
    global_args: list[str] = []
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", args.strip(), flags=re.IGNORECASE)
            assert match, f"every stage is named: FROM {args}"
            current = stages[match.group(2)] = Stage(match.group(2), match.group(1))
        elif current is None:
            assert keyword == "ARG", f"only ARG may precede FROM, got {keyword}"
            global_args.append(args)
        else:
            current.instructions.append((keyword, args.strip()))
    return global_args, stages


@pytest.fixture(scope="module")
def stages() -> dict[str, Stage]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))[1]


def lineage(stages: dict[str, Stage], name: str) -> list[Stage]:
    """A stage and its ancestors, nearest first."""
    chain = [stages[name]]
    while chain[-1].parent in stages:
        chain.append(stages[chain[-1].parent])
    return chain


def effective(stages: dict[str, Stage], name: str, keyword: str) -> str | None:
    """The last ``keyword`` instruction that applies to a stage (USER, CMD, HEALTHCHECK...)."""
    for stage in lineage(stages, name):
        values = stage.all(keyword)
        if values:
            return values[-1]
    return None


def test_multi_stage_with_api_and_worker_targets(stages: dict[str, Stage]) -> None:
    assert {"base", "api-build", "worker-build", "runtime", "api", "worker"} <= set(stages)
    assert stages["api"].parent == "runtime" and stages["worker"].parent == "runtime"
    global_args, _ = parse_dockerfile(DOCKERFILE.read_text())
    assert global_args == ["PYTHON_IMAGE=python:3.11-slim-bookworm"]  # the project's Python (3.11)
    assert stages["base"].parent == "${PYTHON_IMAGE}"


def test_runtime_images_run_as_non_root(stages: dict[str, Stage]) -> None:
    for name in ("api", "worker"):
        assert effective(stages, name, "USER") == "nowcast", name
    assert any("--uid 10001" in run for run in stages["base"].all("RUN"))


def test_api_image_has_no_torch(stages: dict[str, Stage]) -> None:
    api_build = " ".join(stages["api-build"].all("RUN"))
    assert "--exclude torch" in api_build
    assert "pip install --no-deps ." in api_build
    assert '! python -c "import torch"' in api_build  # the build fails if torch slipped in
    copies = stages["api"].all("COPY")
    assert copies == ["--from=api-build /opt/venv /opt/venv"]


def test_worker_torch_variant_is_a_build_argument(stages: dict[str, Stage]) -> None:
    worker_build = stages["worker-build"]
    assert "TORCH_VARIANT=cpu" in worker_build.all("ARG")
    install = " ".join(worker_build.all("RUN"))
    assert "--only torch" in install
    assert 'cpu)  pip install --index-url "$TORCH_CPU_INDEX"' in install
    assert 'cuda) pip install "$torch_requirement"' in install
    assert "TORCH_VARIANT must be cpu or cuda" in install
    assert stages["worker"].all("COPY") == ["--from=worker-build /opt/venv /opt/venv"]
    assert "PYTORCH_NVML_BASED_CUDA_CHECK=1" in stages["worker"].all("ENV")


def test_commands_match_the_compose_file(stages: dict[str, Stage]) -> None:
    import yaml

    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    api_cmd = json.loads(effective(stages, "api", "CMD") or "null")
    worker_cmd = json.loads(effective(stages, "worker", "CMD") or "null")
    # Compose adds only --proxy-headers (it sits behind whatever proxy publishes the port).
    assert [part for part in services["api"]["command"] if part != "--proxy-headers"] == api_cmd
    assert services["worker-cpu"]["command"] == worker_cmd
    healthcheck = effective(stages, "api", "HEALTHCHECK") or ""
    assert json.loads(healthcheck.split("CMD", 1)[1]) == services["api"]["healthcheck"]["test"][1:]


def test_copied_sources_exist(stages: dict[str, Stage]) -> None:
    for stage in stages.values():
        for copy in stage.all("COPY"):
            parts = [p for p in copy.split() if not p.startswith("--")]
            if any(p.startswith("--from=") for p in copy.split()):
                continue
            for source in parts[:-1]:
                if source == "model/checkpoints/radar_lagrangian.pt":
                    continue  # test_default_checkpoint_is_baked_in says what is missing
                assert (ROOT / source).exists(), f"{stage.name}: COPY {source} does not exist"


def test_default_checkpoint_is_baked_in(stages: dict[str, Stage]) -> None:
    assert "model/checkpoints/radar_lagrangian.pt /models/radar_lagrangian.pt" in stages["runtime"].all("COPY")
    assert "NOWCAST_CHECKPOINT=/models/radar_lagrangian.pt" in " ".join(stages["runtime"].all("ENV"))
    assert (ROOT / "model" / "checkpoints" / "radar_lagrangian.pt").is_file(), (
        "the shipped checkpoint model/checkpoints/radar_lagrangian.pt is missing: the images cannot build"
    )


def test_healthcheck_script_is_installed(stages: dict[str, Stage]) -> None:
    assert "deploy/healthcheck.py /usr/local/bin/nowcast-healthcheck" in stages["runtime"].all("COPY")
    assert (ROOT / "deploy" / "healthcheck.py").read_text().startswith("#!/usr/bin/env python3\n")


def test_dockerignore_keeps_the_context_small() -> None:
    lines = [line for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert lines[0] == "**"  # everything out, then only what the COPY lines need
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    _, stages = parse_dockerfile(DOCKERFILE.read_text())
    for stage in stages.values():
        for copy in stage.all("COPY"):
            if "--from=" in copy:
                continue
            for source in copy.split()[:-1]:
                assert any(source == a or source.startswith(a + "/") for a in allowed), source


def test_requirements_script_splits_torch_off() -> None:
    script = ROOT / "deploy" / "project_requirements.py"
    without = subprocess.run(
        [sys.executable, str(script), "--exclude", "torch"], capture_output=True, text=True, check=True
    ).stdout.split()
    only = subprocess.run(
        [sys.executable, str(script), "--only", "torch"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert only == ["torch==2.13.0"]
    assert not any(line.lower().startswith("torch") for line in without)
    assert "fastapi>=0.115" in without and "celery[redis]>=5.4" in without
