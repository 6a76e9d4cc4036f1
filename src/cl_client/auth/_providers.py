"""Auth providers: where the headers for each compute request come from.

* ``NoAuthProvider``: guest mode, no headers.
* ``JWTAuthProvider(token)``: a fixed bearer token, never refreshed.
* ``JWTAuthProvider(session=...)``: a token kept valid by a token source (a SessionManager):
  refreshed before it expires, one refresh shared by all concurrent requests, and renewed once
  after a 401 on an idempotent request.

``send_with_retry`` is the one loop every authorised request goes through (compute's and the
auth service's): headers, send, and after a 401 on an idempotent method ask the provider and
retry at most once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from typing import Protocol, TypeVar, runtime_checkable

from .._core.errors import SessionExpiredError
from ._models import Token

__all__ = [
    "IDEMPOTENT_METHODS",
    "AuthProvider",
    "JWTAuthProvider",
    "NoAuthProvider",
    "TokenSource",
    "send_with_retry",
]

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


@runtime_checkable
class TokenSource(Protocol):
    """Keeps a token valid (SessionManager is one): what a session-backed provider needs."""

    async def get_valid_token(self) -> str:
        """A token that does not expire within the refresh margin (refreshing if needed)."""
        ...

    async def replace_rejected_token(self, token: str | None) -> bool:
        """The server refused ``token``: get another one, unless that already happened.

        True if a different token is now available. ``None``: the rejected token is unknown.
        """
        ...


class NoAuthProvider:
    """No authentication (guest mode): no headers, nothing to refresh."""

    async def get_headers(self) -> dict[str, str]:
        return {}

    async def handle_unauthorized(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "NoAuthProvider()"


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


# The token the current task last sent, per provider: handle_unauthorized() runs in the task
# that made the refused request, so it knows which token the server refused. A refresh done
# meanwhile by another request is then reused instead of being repeated.
_LAST_SENT: ContextVar[tuple[int, str] | None] = ContextVar("cl_client_last_token", default=None)


class JWTAuthProvider:
    """Bearer-token authentication for compute (and authorised auth-service) requests.

    ``JWTAuthProvider("eyJ...")`` sends a fixed token and never refreshes it.
    ``JWTAuthProvider(session=session_manager)`` asks the session for a valid token before
    each request (it refreshes when less than the margin remains, all concurrent callers sharing
    one refresh) and, after a 401, has it renewed once so the request can be retried once.
    The repr never shows the token.
    """

    def __init__(self, token: str | Token | None = None, *, session: TokenSource | None = None):
        if (token is None) == (session is None):
            raise TypeError("JWTAuthProvider needs exactly one of a token or session=")
        self._token: Token | None = (
            None
            if token is None
            else token
            if isinstance(token, Token)
            else Token(access_token=token)
        )
        self._session: TokenSource | None = session

    @property
    def session(self) -> TokenSource | None:
        return self._session

    async def get_token(self) -> str:
        """The token the next request will carry."""
        if self._session is not None:
            return await self._session.get_valid_token()
        assert self._token is not None
        return self._token.access_token

    async def get_headers(self) -> dict[str, str]:
        token = await self.get_token()
        _LAST_SENT.set((id(self), token))
        return {"Authorization": f"Bearer {token}"}

    async def handle_unauthorized(self) -> bool:
        if self._session is None:
            assert self._token is not None
            if self._token.is_expired():
                expired = self._token.expires_at
                raise SessionExpiredError(
                    f"the access token expired at {expired:%Y-%m-%d %H:%M:%S} UTC and this "
                    "provider cannot renew it: log in again for a new token",
                    status_code=401,
                )
            return False
        last = _LAST_SENT.get()
        rejected = last[1] if last is not None and last[0] == id(self) else None
        return await self._session.replace_rejected_token(rejected)

    def __repr__(self) -> str:
        if self._session is not None:
            return f"JWTAuthProvider(session={self._session!r})"
        return f"JWTAuthProvider(token={self._token!r})"
