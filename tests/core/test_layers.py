"""The package's layers, as INTERNALS.md draws them, checked on the import statements.

Only imports that run when a module is imported count: those at module level, outside
``if TYPE_CHECKING:``. Imports inside functions (the lazy ones) are allowed anywhere.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

# layer -> the layers it may import at module level (besides itself)
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "transports": {"core"},
    "auth": {"core", "transports", "public"},
    "engine": {"core", "transports"},
    "front": {"core", "transports", "engine", "auth", "public", "plugins", "front"},
    "plugins": {"core", "transports", "front", "public"},
    "cli": {"core", "transports", "engine", "auth", "front", "plugins", "public"},
    "testing": {"core", "transports", "public"},
    "public": set(),
}


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "front"  # cl_client/__init__.py: re-exports, lazily
    top = parts[1]
    return {
        "_core": "core",
        "_transports": "transports",
        "_engine": "engine",
        "auth": "auth",
        "plugins": "plugins",
        "cli": "cli",
        "testing": "testing",
        "_public": "public",
        "_version": "public",
        "__main__": "cli",
    }.get(top, "front")


def _modules() -> dict[str, tuple[Path, bool]]:
    found: dict[str, tuple[Path, bool]] = {}
    for path in (SRC / "cl_client").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        package = parts[-1] == "__init__"
        if package:
            parts = parts[:-1]
        found[".".join(parts)] = (path, package)
    return found


MODULES = _modules()


def _resolve(module: str, package: bool, level: int, name: str | None) -> str:
    base = module.split(".") if package else module.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def import_time_deps(module: str) -> set[str]:
    """The cl_client modules ``module`` imports when it is imported."""
    path, package = MODULES[module]
    deps: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        statements = node.body if isinstance(node, ast.Try) else [node]
        for statement in statements:
            if isinstance(statement, ast.ImportFrom):
                target = (
                    _resolve(module, package, statement.level, statement.module)
                    if statement.level
                    else statement.module or ""
                )
                for alias in statement.names:
                    sub = f"{target}.{alias.name}"
                    deps.add(sub if sub in MODULES else target)
            elif isinstance(statement, ast.Import):
                deps.update(alias.name for alias in statement.names)
    return {dep for dep in deps if dep in MODULES and dep != module}


GRAPH = {module: import_time_deps(module) for module in MODULES}


def test_the_checker_sees_the_package() -> None:
    assert len(MODULES) > 80
    assert "cl_client._core.hub" in GRAPH["cl_client._engine"]
    assert "cl_client._transports.retry" in GRAPH["cl_client._transports.http"]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_follow_the_layers(module: str) -> None:
    own = layer(module)
    wrong = sorted(
        dep
        for dep in GRAPH[module]
        if layer(dep) != own
        and layer(dep) not in ALLOWED[own]
        and not module.startswith(dep + ".")  # a module's own parent packages
    )
    assert not wrong, f"{module} ({own}) imports {wrong} at import time"


def test_no_import_cycles_outside_type_checking() -> None:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for dep in GRAPH[node]:
            if node.startswith(dep + "."):
                continue  # importing a submodule imports its package first; not a cycle
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    assert cycles == []
