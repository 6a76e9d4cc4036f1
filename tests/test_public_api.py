"""The public surface: everything in __all__ exists, is sorted, and nothing private leaks."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize(
    "module_name", ["cl_client", "cl_client.auth", "cl_client.plugins", "cl_client.testing"]
)
def test_all_is_sorted_and_importable(module_name: str) -> None:
    module = importlib.import_module(module_name)
    exported: list[str] = list(getattr(module, "__all__", []))
    assert exported, f"{module_name} has no __all__"
    assert exported == sorted(exported)
    for name in exported:
        assert not name.startswith("_")
        assert hasattr(module, name), f"{module_name}.{name} is listed but missing"
