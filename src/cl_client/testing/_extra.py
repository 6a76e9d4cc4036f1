"""The check behind ``cl_client.testing.compute`` and ``cl_client.testing.auth``: they need the
``local`` extra, and say so instead of failing on the first missing third-party import."""

from __future__ import annotations

import importlib.util

__all__ = ["require_local_extra"]

# The import names of the 'local' extra's packages that these services import at module level.
_LOCAL_MODULES = ("fastapi", "hypercorn", "python_multipart", "PIL", "jwt")


def _missing(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is None
    except (ImportError, ValueError):  # ValueError: blocked with sys.modules[name] = None
        return True


def require_local_extra(what: str) -> None:
    """Raise ModuleNotFoundError naming ``what``, the missing package and the install command."""
    for name in _LOCAL_MODULES:
        if _missing(name):
            raise ModuleNotFoundError(
                f"{what} needs the 'local' extra ({name} is not installed): "
                "pip install 'cl-client[local]' (or: uv add 'cl-client[local]')",
                name=name,
            )
