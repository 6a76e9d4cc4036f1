"""``SessionManager``: log in once, keep a valid token, hand it to compute clients.

::

    async with SessionManager.from_env() as session:     # AUTH_URL, COMPUTE_URL, MQTT_URL
        await session.login("alice", "secret")
        async with session.create_compute_client() as client:
            ...                                          # every request carries a valid token

Refresh policy: before each request the token is checked locally (``exp``, read without
verifying the signature). When less than ``refresh_margin`` (60 s) remains it is refreshed with
``POST /auth/token/refresh``; concurrent callers wait for that one refresh instead of starting
their own. A token that has already expired cannot be refreshed (the server refuses it): the
session then logs in again with the credentials it was given, held in memory only, or raises
SessionExpiredError if it holds none. Nothing about credentials is ever written to disk or
logged, and reprs never show a token or password.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal, Unpack

import anyio
import httpx

from .._core.closing import AsyncClosing
from .._core.errors import AuthenticationError, SessionExpiredError
from .._core.settings import ClientSettings, SettingsOverrides, with_overrides
from ._client import AuthClient
from ._models import Token, User
from ._providers import JWTAuthProvider
from ._settings import SessionSettings

if TYPE_CHECKING:
    from .._client import ComputeClient

__all__ = ["SessionManager"]

logger = logging.getLogger("cl_client.auth")

_NOT_LOGGED_IN = "not logged in: call SessionManager.login() first"


class _Credentials:
    """A username and password held in memory for logging in again. Never printed."""

    __slots__ = ("password", "username")

    def __init__(self, username: str, password: str) -> None:
        self.username = username
        self.password = password

    def __repr__(self) -> str:
        return f"_Credentials(username={self.username!r}, password=<hidden>)"


class SessionManager(AsyncClosing):
    """An authenticated session with the auth service, shared by any number of clients.

    The constructor does no I/O; ``settings`` (or keyword overrides of its fields) say where
    the auth, compute and MQTT services are and how early to refresh.
    """

    def __init__(
        self,
        settings: SessionSettings | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        **overrides: object,
    ) -> None:
        base = settings or SessionSettings()
        if overrides:
            base = SessionSettings.from_values({**base.model_dump(), **overrides})
        self.settings: SessionSettings = base
        self._token: Token | None = None
        self._credentials: _Credentials | None = None
        self._lock = anyio.Lock()
        self._provider = JWTAuthProvider(session=self)
        self._auth_client = AuthClient(settings=base, auth=self._provider, transport=transport)

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        **overrides: object,
    ) -> SessionManager:
        """A session whose URLs come from AUTH_URL, COMPUTE_URL and MQTT_URL."""
        return cls(SessionSettings.from_env(environ, **overrides), transport=transport)

    # -- lifecycle --------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Close the auth service connections. The session's state is kept in memory."""
        await self._auth_client.aclose()

    def __repr__(self) -> str:
        user = self._credentials.username if self._credentials is not None else None
        return (
            f"SessionManager(auth_url={self.settings.auth_url!r}, username={user!r}, "
            f"token={self._token!r})"
        )

    # -- accessors --------------------------------------------------------------------------
    @property
    def auth_client(self) -> AuthClient:
        """An AuthClient whose authorised calls carry this session's token (user admin)."""
        return self._auth_client

    @property
    def auth_provider(self) -> JWTAuthProvider:
        """The provider that gives compute requests this session's valid token."""
        return self._provider

    @property
    def token(self) -> Token | None:
        """The current token (its repr hides the token itself), or None."""
        return self._token

    @property
    def username(self) -> str | None:
        """The username given to ``login()``, while its credentials are held."""
        return self._credentials.username if self._credentials is not None else None

    def is_authenticated(self) -> bool:
        """True while the session can supply a token: one that has not expired, or an expired
        one together with credentials to log in again."""
        if self._token is None:
            return False
        return self._credentials is not None or not self._token.is_expired()

    # -- logging in and out -----------------------------------------------------------------
    async def login(self, username: str, password: str, *, remember: bool = True) -> Token:
        """Log in with ``POST /auth/token``; AuthenticationError if the server refuses.

        With ``remember=True`` (the default) the credentials stay in memory so that the session
        can log in again once the token has expired; with False, an expired token ends the
        session (SessionExpiredError).
        """
        async with self._lock:
            token = await self._auth_client.login(username, password)
            self._token = token
            self._credentials = _Credentials(username, password) if remember else None
        logger.info("logged in as %r (user id %s)", username, token.user_id)
        return token

    def set_token(self, token: str | Token) -> None:
        """Use a token obtained elsewhere. It is refreshed while valid; no credentials are
        held, so once it expires the session raises SessionExpiredError."""
        self._token = token if isinstance(token, Token) else Token(access_token=token)
        self._credentials = None

    async def logout(self) -> None:
        """Forget the token and the credentials (the server keeps no session to end)."""
        async with self._lock:
            self._token = None
            self._credentials = None
        logger.info("logged out")

    # -- tokens -----------------------------------------------------------------------------
    async def get_valid_token(self) -> str:
        """A token with more than the refresh margin left, refreshed (or renewed by logging in
        again) if needed. AuthenticationError if not logged in; SessionExpiredError if the
        token expired and no credentials are held."""
        token = self._token
        if token is None:
            raise AuthenticationError(_NOT_LOGGED_IN)
        if token.needs_refresh(self.settings.refresh_margin):
            token = await self._renew(token)
        return token.access_token

    async def refresh(self) -> Token:
        """Get a new token now (refresh, or log in again with held credentials)."""
        return await self._renew(None)

    async def replace_rejected_token(self, token: str | None) -> bool:
        """Called after a server refused ``token`` (a 401): renew it unless already done."""
        current = self._token
        if current is None:
            return False
        if token is not None and current.access_token != token:
            return True  # another request renewed it meanwhile
        await self._renew(current)
        return True

    async def get_current_user(self) -> User:
        """``GET /users/me`` with the session's token."""
        return await self._auth_client.get_current_user()

    async def _renew(self, stale: Token | None) -> Token:
        """Replace ``stale`` (None: whatever is current) with a new token, once.

        Callers queue on the lock; whoever gets it first does the work, and the others find
        the token already replaced and take the new one. A cancelled renewal changes nothing.
        """
        async with self._lock:
            current = self._token
            if current is None:
                raise AuthenticationError(_NOT_LOGGED_IN)
            if stale is not None and current is not stale:
                return current
            new = await self._obtain(current)
            if self._token is not current:  # set_token() was called meanwhile: it wins
                return self._token or new
            self._token = new
            return new

    async def _obtain(self, current: Token) -> Token:
        refused: str | None = None
        if not current.is_expired():
            try:
                new = await self._auth_client.refresh_token(current)
            except AuthenticationError as exc:
                refused = str(exc.detail)
                logger.info("the auth service refused to refresh the token: %s", refused)
            else:
                logger.debug("token refreshed; it expires at %s", new.expires_at)
                return new
        if self._credentials is not None:
            logger.info("logging in again as %r", self._credentials.username)
            return await self._auth_client.login(
                self._credentials.username, self._credentials.password
            )
        if refused is not None:
            raise SessionExpiredError(
                f"the auth service refused to refresh the session's token ({refused}) and the "
                "session holds no credentials to log in again: call login() again",
                status_code=401,
                detail=refused,
            )
        when = current.expires_at
        at = f" at {when:%Y-%m-%d %H:%M:%S} UTC" if when is not None else ""
        raise SessionExpiredError(
            f"the session's token expired{at} and the session holds no credentials to log in "
            "again: call login() again",
            status_code=401,
        )

    # -- compute ----------------------------------------------------------------------------
    def create_compute_client(
        self,
        settings: ClientSettings | None = None,
        *,
        http_client: httpx.AsyncClient | None = None,
        mqtt_backend: Literal["auto", "aiomqtt", "paho"] = "auto",
        check_server: bool = True,
        **overrides: Unpack[SettingsOverrides],
    ) -> ComputeClient:
        """A ComputeClient whose requests carry this session's token (refreshed as needed).

        Its URLs are the session's ``compute_url`` and ``mqtt_url`` unless ``settings`` are
        given; keyword ``overrides`` of ClientSettings fields apply on top. The other options
        are ComputeClient's. Use the result as ``async with``.
        """
        from .._client import ComputeClient

        if settings is None:
            settings = self.settings.compute_settings(**overrides)
        else:
            settings = with_overrides(settings, overrides)
        return ComputeClient(
            settings,
            auth=self._provider,
            http_client=http_client,
            mqtt_backend=mqtt_backend,
            check_server=check_server,
        )
