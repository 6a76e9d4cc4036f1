"""The one 401-retry loop every authorised request goes through (compute's and the auth service's),
and the AuthProvider protocol it asks for headers.

Headers, send, and after a 401 on an idempotent method ask the provider whether a retry may
succeed (a session-backed provider renews its token) and retry at most once. The providers
themselves live in ``cl_client.auth``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol, TypeVar, runtime_checkable

__all__ = ["IDEMPOTENT_METHODS", "AuthProvider", "send_with_retry"]

_R = TypeVar("_R")

IDEMPOTENT_METHODS: frozenset[str] = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
"""The methods retried after a 401: the idempotent ones of RFC 9110 §9.2.2 that we send (never
POST: a refused submission is reported, not repeated)."""


@runtime_checkable
class AuthProvider(Protocol):
    """Supplies the headers for each request, and may refresh a token first."""

    async def get_headers(self) -> dict[str, str]:
        """Headers to put on the next request (may refresh a token before answering)."""
        ...

    async def handle_unauthorized(self) -> bool:
        """Called after a 401. True if a retry may now succeed (for example after a refresh)."""
        ...


async def send_with_retry(
    method: str,
    provider: AuthProvider | None,
    send: Callable[[Mapping[str, str]], Awaitable[_R]],
    status: Callable[[_R], int],
) -> _R:
    """``send(headers)`` with the provider's headers; after a 401 to an idempotent method, if
    ``provider.handle_unauthorized()`` says a retry may succeed, once more with fresh headers.

    Without a provider, ``send({})`` once. ``status`` reads the status code of what ``send``
    returns; the caller maps error statuses (including a second 401) to errors.
    """
    if provider is None:
        return await send({})
    result = await send(await provider.get_headers())
    if (
        status(result) == 401
        and method in IDEMPOTENT_METHODS
        and await provider.handle_unauthorized()
    ):
        result = await send(await provider.get_headers())
    return result
