"""Auth providers: where the headers for each compute request come from."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["AuthProvider", "NoAuthProvider"]


@runtime_checkable
class AuthProvider(Protocol):
    """Supplies the headers for each request, and may refresh a token first."""

    async def get_headers(self) -> dict[str, str]:
        """Headers to put on the next request (may refresh a token before answering)."""
        ...

    async def handle_unauthorized(self) -> bool:
        """Called after a 401. Return True if a retry may now succeed (for example after a refresh)."""
        ...


class NoAuthProvider:
    """No authentication (guest mode): no headers, nothing to refresh."""

    async def get_headers(self) -> dict[str, str]:
        return {}

    async def handle_unauthorized(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "NoAuthProvider()"
