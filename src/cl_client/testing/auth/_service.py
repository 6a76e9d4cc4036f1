"""``LocalAuthService``: the local auth service, served over real HTTP on loopback.

::

    async with LocalAuthService(admin_username="admin", admin_password="admin") as auth:
        auth.url              # "http://127.0.0.1:<port>"
        auth.public_key_pem   # give it to the local compute service to turn on auth mode
        auth.requests         # every request received, for tests to inspect
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Self

import anyio

from .._serve import serve_asgi
from ._app import AuthServiceState, RecordedRequest, StoredUser, create_auth_app

__all__ = ["LocalAuthService"]


class LocalAuthService(anyio.AsyncContextManagerMixin):
    """An in-memory auth service speaking the real protocol (docs/auth.md#the-auth-service).

    ES256 keys are made when the service object is created; the admin user (``is_admin``,
    permissions ``["*"]``) exists from the start. ``token_lifetime`` is in seconds (the real
    default is 30 minutes) and may be changed while the service runs. ``port`` 0 (the default)
    picks a free port.
    """

    def __init__(
        self,
        *,
        admin_username: str = "admin",
        admin_password: str = "admin",
        token_lifetime: float = 1800.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.state: AuthServiceState = AuthServiceState(
            admin_username=admin_username,
            admin_password=admin_password,
            token_lifetime=token_lifetime,
        )
        self.admin_username = admin_username
        self._host = host
        self._port = port
        self._url: str | None = None

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:54321`` (only while running)."""
        if self._url is None:
            raise RuntimeError("LocalAuthService is not running: use 'async with'")
        return self._url

    @property
    def public_key_pem(self) -> str:
        """The PEM of the ES256 public key that verifies this service's tokens."""
        return self.state.public_key_pem

    @property
    def token_lifetime(self) -> float:
        return self.state.token_lifetime

    @token_lifetime.setter
    def token_lifetime(self, seconds: float) -> None:
        self.state.token_lifetime = seconds

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, oldest first."""
        return self.state.requests

    def requests_to(self, path: str, method: str | None = None) -> list[RecordedRequest]:
        """The recorded requests for one path (and method, if given)."""
        return [
            r
            for r in self.state.requests
            if r.path == path and (method is None or r.method == method.upper())
        ]

    def add_user(
        self,
        username: str,
        password: str,
        *,
        permissions: list[str] | None = None,
        is_admin: bool = False,
        is_active: bool = True,
    ) -> StoredUser:
        """Create a user directly (no HTTP request), for test setup."""
        return self.state.add_user(
            username, password, permissions=permissions, is_admin=is_admin, is_active=is_active
        )

    def issue_token(self, username: str, *, lifetime: float | None = None) -> str:
        """A token for an existing user, as ``POST /auth/token`` would issue it."""
        user = self.state.find_user(username)
        if user is None:
            raise KeyError(username)
        return self.state.issue_token(user, lifetime)

    def sign(self, claims: dict[str, object]) -> str:
        """Sign arbitrary claims with the service's key (for forged or odd tokens in tests)."""
        return self.state.sign(claims)

    @asynccontextmanager
    async def __asynccontextmanager__(self) -> AsyncGenerator[Self]:
        app = create_auth_app(self.state)
        async with serve_asgi(app, host=self._host, port=self._port) as url:
            self._url = url
            try:
                yield self
            finally:
                self._url = None

    def __repr__(self) -> str:
        where = self._url or "not running"
        return f"LocalAuthService({where}, users={len(self.state.users)})"
