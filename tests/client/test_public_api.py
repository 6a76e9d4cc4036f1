"""The public surface, as httpx and anyio keep theirs:

* every public module's ``__all__`` is sorted and importable, and lists every public name the
  module binds (a class or function of ours bound under a public name but left out fails);
* every exported class and function says it lives in its public module (``repr`` shows
  ``cl_client.NotFoundError``, not ``cl_client._core.errors.NotFoundError``);
* every annotation in a public signature (functions, methods, properties, fields) names only
  exported types of ours, so a user can import every type they meet;
* ``ComputeClient``'s keyword overrides are exactly ClientSettings' fields.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
import types
import typing
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import cast

import pytest

import cl_client
from cl_client._public import DEFINED_IN

PUBLIC_MODULES = ["cl_client", "cl_client.auth", "cl_client.plugins", "cl_client.testing"]

# Made by the library, never by users (their constructors take internal state): a watch comes
# from client.watch() / client.watch_workers(), a LocalWorker from svc.add_worker(), the
# ComputeState from LocalComputeService (svc.state).
MADE_BY_THE_LIBRARY = {
    "cl_client.JobWatch",
    "cl_client.WorkerWatch",
    "cl_client.testing.ComputeState",
    "cl_client.testing.LocalWorker",
}


def listed(module: types.ModuleType) -> list[str]:
    names: object = getattr(module, "__all__", [])
    assert isinstance(names, list)
    return [str(name) for name in cast(list[object], names)]


def public_objects(module_name: str) -> dict[str, object]:
    """The module's ``__all__``, name -> object."""
    module = importlib.import_module(module_name)
    return {name: cast(object, getattr(module, name)) for name in listed(module)}


def exported() -> dict[int, str]:
    """id(object) -> its public name, over every public module."""
    found: dict[int, str] = {}
    for module_name in PUBLIC_MODULES:
        for name, value in public_objects(module_name).items():
            found.setdefault(id(value), f"{module_name}.{name}")
    return found


def is_ours(module: str) -> bool:
    return module == "cl_client" or module.startswith("cl_client.")


def is_private(module: str) -> bool:
    return any(part.startswith("_") for part in module.split("."))


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_all_is_sorted_importable_and_complete(module_name: str) -> None:
    module = importlib.import_module(module_name)
    names = listed(module)
    assert names, f"{module_name} has no __all__"
    assert names == sorted(names)
    assert len(set(names)) == len(names)
    for name in names:
        assert not name.startswith("_")
        assert hasattr(module, name), f"{module_name}.{name} is listed but missing"
    aliases = alias_names()
    for name, value in cast(dict[str, object], vars(module)).items():
        if name.startswith("_") or name in names or isinstance(value, types.ModuleType):
            continue
        ours = isinstance(value, type | types.FunctionType) and is_ours(value.__module__)
        assert not ours and id(value) not in aliases, (
            f"{module_name}.{name} is public but missing from __all__ (export it, or import "
            "it under a private name)"
        )


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_public_names_live_in_their_public_module(module_name: str) -> None:
    for name, value in public_objects(module_name).items():
        if isinstance(value, type | types.FunctionType):
            assert value.__module__ in PUBLIC_MODULES, (name, value.__module__)
    assert repr(cl_client.NotFoundError) == "<class 'cl_client.NotFoundError'>"
    assert repr(cl_client.AuthClient) == "<class 'cl_client.auth.AuthClient'>"
    assert cl_client.ComputeClientError is cl_client.ClClientError


# ------------------------------------------------------------------ names used in signatures


def cl_modules() -> Iterator[types.ModuleType]:
    """Every module of the package, imported (so the result does not depend on test order)."""
    for info in pkgutil.walk_packages(cl_client.__path__, "cl_client."):
        if not info.name.endswith(".__main__"):  # running it would start the command line
            importlib.import_module(info.name)
    for name, module in list(sys.modules.items()):
        if is_ours(name):
            yield module


@cache
def module_tree(module_name: str) -> ast.Module | None:
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None)
    if not isinstance(path, str) or not path.endswith(".py"):
        return None
    return ast.parse(Path(path).read_text(encoding="utf-8"))


def type_checking_blocks(tree: ast.Module) -> list[ast.If]:
    return [
        node
        for node in tree.body
        if isinstance(node, ast.If)
        and isinstance(node.test, ast.Name)
        and node.test.id == "TYPE_CHECKING"
    ]


@cache
def namespace(module_name: str) -> dict[str, object]:
    """The module's globals plus what its ``if TYPE_CHECKING:`` block imports and defines."""
    module = sys.modules[module_name]
    names: dict[str, object] = dict(vars(module))
    tree = module_tree(module_name)
    for block in type_checking_blocks(tree) if tree is not None else []:
        scope: dict[str, object] = {
            "__name__": module_name,
            "__package__": module.__package__,
            "__builtins__": builtins,
        }
        scope.update(names)
        for statement in block.body:
            code = compile(ast.Module(body=[statement], type_ignores=[]), module_name, "exec")
            try:
                exec(code, scope)
            except ImportError:
                continue  # a name only the type stubs have (e.g. paho's SocketLike)
        names.update(scope)
    return names


def is_alias(value: object) -> bool:
    """A type alias value: ``X | Y``, ``Callable[...]``, ``Literal[...]``, ``Mapping[...]``."""
    return isinstance(value, types.UnionType) or typing.get_origin(value) is not None


@cache
def alias_names() -> dict[int, str]:
    """id(alias value) -> where it is defined, for every type alias assigned in our modules
    (also the ones assigned under TYPE_CHECKING)."""
    found: dict[int, str] = {}
    for module in cl_modules():
        tree = module_tree(module.__name__)
        if tree is None:
            continue
        assigned: set[str] = set()
        for node in [*tree.body, *(n for b in type_checking_blocks(tree) for n in b.body)]:
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                assigned.add(node.target.id)
            elif isinstance(node, ast.Assign):
                assigned.update(t.id for t in node.targets if isinstance(t, ast.Name))
        names = namespace(module.__name__)
        for name in assigned:
            value = names.get(name)
            if value is not None and is_alias(value):
                found.setdefault(id(value), f"{module.__name__}.{name}")
    return found


def annotation_names(annotation: object) -> set[str]:
    """The (dotted) names an annotation string mentions (not the values inside Literal[...])."""
    if not isinstance(annotation, str):
        return set()
    found: set[str] = set()
    pending: list[ast.AST] = [ast.parse(annotation, mode="eval")]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Subscript) and ast.unparse(node.value) in (
            "Literal",
            "typing.Literal",
        ):
            pending.append(node.value)
            continue
        if isinstance(node, ast.Name):
            found.add(node.id)
        elif isinstance(node, ast.Attribute):
            found.add(ast.unparse(node))
            continue
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found |= annotation_names(node.value)  # a quoted forward reference
        pending.extend(ast.iter_child_nodes(node))
    return found


def resolve(dotted: str, names: dict[str, object]) -> object:
    head, *rest = dotted.split(".")
    if head not in names:
        return getattr(builtins, head, None)
    value = names[head]
    for part in rest:
        value = getattr(value, part, None)
    return value


def unexported_in(annotations: dict[str, object], module_name: str, where: str) -> list[str]:
    """``where: name`` for every name in ``annotations`` that is ours but not exported."""
    public = exported()
    aliases = alias_names()
    names = namespace(module_name)
    problems: list[str] = []
    for annotation in annotations.values():
        for dotted in annotation_names(annotation):
            value = resolve(dotted, names)
            assert value is not None, f"{where}: cannot resolve {dotted!r} in {module_name}"
            if id(value) in public:
                continue
            ours = (isinstance(value, type) and is_ours(value.__module__)) or id(value) in aliases
            if ours:
                problems.append(f"{where}: {dotted}")
    return problems


def defined_in(cls: type) -> str:
    return DEFINED_IN.get(f"{cls.__module__}.{cls.__qualname__}", cls.__module__)


def function_problems(function: Callable[..., object], where: str) -> list[str]:
    function = cast(Callable[..., object], inspect.unwrap(function))
    annotations = cast(dict[str, object], getattr(function, "__annotations__", {}))
    code_globals = cast(dict[str, object], getattr(function, "__globals__", {}))
    module_name = code_globals.get("__name__")
    if not isinstance(module_name, str) or not is_ours(module_name):
        return []  # generated (dataclass, pydantic) or inherited from a library
    return unexported_in(annotations, module_name, where)


def class_problems(cls: type, public_name: str) -> list[str]:
    problems: list[str] = []
    for klass in cls.__mro__:
        if not is_ours(klass.__module__):
            continue
        module_name = defined_in(klass)
        own = cast(dict[str, object], inspect.get_annotations(klass))
        fields = {k: v for k, v in own.items() if not k.startswith("_")}
        problems += unexported_in(fields, module_name, f"{public_name} fields")
        for name, member in cast(dict[str, object], vars(klass)).items():
            if name.startswith("_") and name != "__init__":
                continue
            if name == "__init__" and public_name in MADE_BY_THE_LIBRARY:
                continue
            where = f"{public_name}.{name}"
            if isinstance(member, staticmethod | classmethod):
                member = cast(object, member.__func__)
            if isinstance(member, property):
                member = member.fget
            if isinstance(member, types.FunctionType):
                problems += function_problems(member, where)
    return problems


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_public_signatures_use_only_exported_types(module_name: str) -> None:
    problems: list[str] = []
    for name, value in public_objects(module_name).items():
        public_name = f"{module_name}.{name}"
        if isinstance(value, type):
            problems += class_problems(value, public_name)
        elif isinstance(value, types.FunctionType):
            problems += function_problems(value, public_name)
    assert not problems, "public signatures use types that are not exported:\n" + "\n".join(
        sorted(set(problems))
    )


def test_the_exports_check_catches_an_unexported_type() -> None:
    """The check above is not vacuous: a private class or a private alias is found, in any
    position of an annotation; exported names and third-party types pass."""
    assert unexported_in({"x": "HubStats | None"}, "cl_client._core.hub", "f") == ["f: HubStats"]
    assert (
        unexported_in(
            {"x": "Mapping[str, FormValue]", "y": "httpx.AsyncClient", "z": "BinaryIO"},
            "cl_client._transports.http",
            "h",
        )
        == []
    )
    assert unexported_in({"x": "Literal['mqtt', 'Faults']"}, "cl_client._client", "k") == []
    assert unexported_in({"x": "'Outcome[T, R]'"}, "cl_client.plugins._parallel", "i") == []
    assert unexported_in({"x": "Vector"}, "cl_client.plugins._results", "j") == ["j: Vector"]


def test_client_keyword_overrides_are_the_settings_fields() -> None:
    settings_fields = set(cl_client.ClientSettings.model_fields)
    assert set(cl_client.SettingsOverrides.__annotations__) == settings_fields


README = Path(__file__).resolve().parents[2] / "README.md"


def readme_section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def test_readme_api_section_matches_the_surface_exactly() -> None:
    """Every exported name is in README's "API at a glance", and every name there is exported."""
    section = readme_section("API at a glance")
    mentioned = set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", section))
    names = {name for module in PUBLIC_MODULES for name in public_objects(module)}
    modules = {module.rsplit(".", 1)[-1] for module in PUBLIC_MODULES}
    assert names - mentioned == set(), "exported but not in README"
    words = {"str", "__all__", "local"}  # plain Python and the extra named in the prose
    assert mentioned - names - modules - words == set(), "in README but not exported"


def test_readme_uses_no_removed_name() -> None:
    text = README.read_text(encoding="utf-8")
    removed = [
        "submit_with_files",
        "submit_job",
        "ClientStats",
        "client.stats",
        "JobCreated",
        "wait_completed",
        "completed_job",
        " format=",
        "(format=",
        "poll_interval=0.0",  # the local service's old knob (now worker_poll_interval)
    ]
    assert [name for name in removed if name in text] == []


def test_version_comes_from_the_package_metadata() -> None:
    from importlib.metadata import version

    from cl_client._version import package_version

    assert cl_client.__version__ == version("cl-client")
    assert cl_client.__version__.count(".") >= 2
    assert package_version("cl-client-no-such-distribution") == "0+unknown"


def test_building_a_client_loads_neither_httpx_nor_plugins_nor_the_auth_client() -> None:
    # What a script pays before it enters the client (benchmarks/import_time.py times it).
    probe = (
        "import sys\n"
        "from cl_client import ComputeClient\n"
        "client = ComputeClient(compute_url='http://127.0.0.1:1')\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", probe], check=True, capture_output=True, text=True
        ).stdout.split()
    )
    unwanted = {
        "httpx",
        "cl_client._transports.http",
        "cl_client.plugins._hash",
        "cl_client.plugins._results",
        "cl_client.auth._client",
        "cl_client.auth._session",
        "cl_client.testing",
        "paho",
        "aiomqtt",
    }
    assert loaded & unwanted == set()
    assert "cl_client._client" in loaded
