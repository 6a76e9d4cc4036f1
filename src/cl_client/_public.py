"""Give public names the public module they are documented under (as httpx does).

``repr(cl_client.NotFoundError)`` then shows ``cl_client.NotFoundError``, not the private module
that defines it, and so do tracebacks, ``help()`` and pickles.
"""

from __future__ import annotations

import importlib
import types
from collections.abc import Iterable, Mapping, MutableMapping
from typing import cast

__all__ = ["DEFINED_IN", "load_lazy", "set_public_module"]

DEFINED_IN: dict[str, str] = {}
"""``"cl_client.NotFoundError"`` -> ``"cl_client._core.errors"``: where each renamed name is defined
(the exports test reads it to resolve the names in annotations)."""


def _is_private(module: str) -> bool:
    return any(part.startswith("_") for part in module.split("."))


def set_public_module(namespace: Mapping[str, object], names: Iterable[str], module: str) -> None:
    """Set ``__module__`` of the classes and functions ``names`` in ``namespace`` to ``module``.

    Only names still owned by a private module change, so a name re-exported by a second public
    module keeps its first home (``cl_client.AuthClient`` stays ``cl_client.auth.AuthClient``).
    """
    for name in names:
        obj = namespace.get(name)  # None while its module is still being imported
        if isinstance(obj, type | types.FunctionType) and _is_private(obj.__module__):
            DEFINED_IN[f"{module}.{obj.__qualname__}"] = obj.__module__
            obj.__module__ = module


def load_lazy(
    namespace: MutableMapping[str, object], package: str, lazy: Mapping[str, str], name: str
) -> object:
    """A package's PEP 562 ``__getattr__``: import ``name`` from its private module (``lazy``
    maps public names to relative module names), give it ``package`` as its public module and
    keep it in ``namespace`` so the next access is a plain module attribute."""
    module = lazy.get(name)
    if module is None:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    value = cast(object, getattr(importlib.import_module(module, package), name))
    set_public_module({name: value}, [name], package)
    namespace[name] = value
    return value
