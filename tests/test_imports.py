"""The packages' import graph, read with ``ast`` (nothing is imported): no cycles, the library never
imports the command line, and the HTTP API never imports torch."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("model", "workers", "service", "cli", "stack", "benchmarks")
LIBRARY = ("model", "workers", "service")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every module of ``known`` that ``path`` imports, at any depth (lazy imports count too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            candidates = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for candidate in candidates:
            # the deepest known module the name refers to ("model.io.netcdf.read_scans" -> "model.io.netcdf")
            while candidate and candidate not in known:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name:
                targets.add(candidate)
    return targets


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def _third_party(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_graph_sees_every_package():
    graph = _graph()
    assert {name.split(".")[0] for name in graph} == set(PACKAGES)
    assert "model.io.units" in graph["model.io.netcdf"]


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target):], target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_the_library_never_imports_the_command_line():
    graph = _graph()
    offenders = {name: sorted(t for t in targets if t.split(".")[0] == "cli")
                 for name, targets in graph.items() if name.split(".")[0] in LIBRARY}
    assert {name: targets for name, targets in offenders.items() if targets} == {}


def test_the_api_never_imports_torch_or_the_network():
    modules = _modules()
    graph = _graph()
    api = [name for name in modules if name.split(".")[0] == "service"]
    reached: set[str] = set()
    pending = list(api)
    while pending:  # everything service/ imports, transitively
        name = pending.pop()
        if name not in reached:
            reached.add(name)
            pending.extend(graph[name])
    with_torch = sorted(name for name in reached if "torch" in _third_party(modules[name])
                        and not _only_lazy_or_typing(modules[name]))
    assert with_torch == []
    assert sorted(name for name in api if "torch" in _third_party(modules[name])) == []


def _only_lazy_or_typing(path: Path) -> bool:
    """True when every torch import sits inside a function or an ``if TYPE_CHECKING`` block."""
    tree = ast.parse(path.read_text(), str(path))
    for node in tree.body:
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "torch" for a in node.names):
            return False
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "torch" and not node.level:
            return False
    return True
