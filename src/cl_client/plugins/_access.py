"""Lazily created plugin clients on ComputeClient (``client.hash``, ``client.exif``, ...)."""

from __future__ import annotations

__all__ = ["PluginAccess"]


class PluginAccess:
    """Mixin of ComputeClient: one lazily created typed client per plugin."""
