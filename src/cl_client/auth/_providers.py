"""Auth providers: where the headers for each compute request come from.

* ``NoAuthProvider``: guest mode, no headers.
* ``JWTAuthProvider(token)``: a fixed bearer token, never refreshed.
* ``JWTAuthProvider(session=...)``: a token kept valid by a token source (a SessionManager):
  refreshed before it expires, one refresh shared by all concurrent requests, and renewed once
  after a 401 on an idempotent request.

The AuthProvider protocol and the one 401-retry loop every authorised request goes through
(compute's and the auth service's) live with the HTTP transport, ``cl_client._transports.retry``.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Protocol, runtime_checkable

from .._core.errors import SessionExpiredError
from .._transports.retry import AuthProvider
from ._models import Token

__all__ = [
    "AuthProvider",
    "JWTAuthProvider",
    "NoAuthProvider",
    "TokenSource",
]


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
