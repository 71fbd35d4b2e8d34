"""The worker image's dependency set covers everything the worker imports.

The full proof installs exactly that set into a fresh virtualenv and runs a fallback forecast
(``deploy/check_image_deps.py``, about three minutes, too slow for every CI run; its last report is
``results/hardening/image_deps.json``). This cheaper check walks the import graph from ``workers/``
(lazy imports included) and requires every third-party distribution it reaches to be a core
dependency, as ``deploy/project_requirements.py`` prints it for the images.
"""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "deploy"))
from project_requirements import project_requirements, requirement_name  # noqa: E402

from tests.test_imports import _graph, _modules, _third_party

ROOT = Path(__file__).resolve().parents[2]
FIRST_PARTY = {"model", "workers", "service", "cli", "stack", "benchmarks", "deploy", "tests"}


def _reached_from(package: str) -> set[str]:
    graph = _graph()
    pending = [name for name in graph if name.split(".")[0] == package]
    reached: set[str] = set()
    while pending:
        name = pending.pop()
        if name not in reached:
            reached.add(name)
            pending.extend(graph[name])
    return reached


def _distributions(module: str) -> set[str]:
    return {requirement_name(d) for d in importlib.metadata.packages_distributions().get(module, [])}


def test_everything_the_worker_imports_is_a_core_dependency() -> None:
    modules = _modules()
    imported = set().union(*(_third_party(modules[name]) for name in _reached_from("workers")))
    third_party = sorted(m for m in imported - FIRST_PARTY if m not in sys.stdlib_module_names)
    core = {requirement_name(r) for r in project_requirements(ROOT / "pyproject.toml")}
    # celery[redis] brings kombu; what a core distribution installs counts as installed.
    provided = set(core)
    for name in core:
        for requirement in importlib.metadata.requires(name) or []:
            if "extra ==" not in requirement or "redis" in requirement:
                provided.add(requirement_name(requirement))
    missing = {m: sorted(_distributions(m)) for m in third_party if not _distributions(m) & provided}
    assert "pysteps" in third_party and "cv2" not in missing  # the fallback's own imports are seen
    assert missing == {}


def test_the_baselines_extra_is_kept_and_empty() -> None:
    import tomllib

    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert data["project"]["optional-dependencies"]["baselines"] == []
    core = {requirement_name(r) for r in data["project"]["dependencies"]}
    assert {"pysteps", "opencv-python-headless", "pyproj"} <= core
