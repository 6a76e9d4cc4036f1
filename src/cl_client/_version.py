"""The installed distribution's version, read from its metadata (pyproject.toml is the source)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__", "package_version"]


def package_version(distribution: str) -> str:
    """The version of an installed distribution, or ``0+unknown`` when it is not installed
    (for example when ``src/`` is put on ``sys.path`` by hand)."""
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "0+unknown"


__version__ = package_version("cl-client")
