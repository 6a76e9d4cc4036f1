"""``AuthClient``: the nine endpoints of the auth service (docs/auth.md#the-auth-service).

Encodings are the ones the real server accepts: form fields (never JSON), booleans as
``true``/``false``, permissions as a comma-separated list (the one format both ``POST /users/``
and ``PUT /users/{id}`` parse; ``","`` clears them on update, because FastAPI reads an empty form
value as absent), and ``/users/`` with its trailing slash. Error replies become the library's
ApiError subclasses with the server's ``detail``.

Authorised calls take ``token=`` explicitly, or else the client's ``auth`` provider (a
SessionManager gives its own, which refreshes as needed and retries an idempotent call once
after a 401).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from .._core.closing import AsyncClosing
from .._core.errors import ParameterError, ProtocolError, error_from_response
from .._core.payloads import decode_body, decode_json
from .._core.settings import redact_url
from .._transports.exchange import exchange, mapped_errors
from .._transports.retry import send_with_retry
from ._models import PublicKey, Token, User
from ._providers import AuthProvider
from ._settings import SessionSettings

__all__ = ["AuthClient"]

_M = TypeVar("_M", bound=BaseModel)
_USERS = TypeAdapter(list[User])
_MAX_BODY = 4 * 1024 * 1024


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _encode_permissions(permissions: Iterable[str]) -> str:
    """``["a", "b"]`` -> ``"a,b"``, refusing names the server would split or strip."""
    if isinstance(permissions, str):
        raise ParameterError("permissions must be a list of names, not a single string")
    names = list(permissions)
    for name in names:
        if not name or "," in name or name != name.strip():
            raise ParameterError(
                f"invalid permission name {name!r}: it must be non-empty, without commas "
                "or surrounding spaces"
            )
    return ",".join(names)


class AuthClient(AsyncClosing):
    """Async client of the CL Server auth service.

    ::

        async with AuthClient("http://localhost:8000") as auth:
            token = await auth.login("admin", "admin")
            me = await auth.get_current_user(token=token)

    The constructor does no I/O. ``url`` overrides ``settings.auth_url``.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        settings: SessionSettings | None = None,
        auth: AuthProvider | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        base = settings or SessionSettings()
        if url is not None:
            base = SessionSettings.from_values({**base.model_dump(), "auth_url": url})
        self.settings: SessionSettings = base
        self.auth: AuthProvider | None = auth
        self._http = httpx.AsyncClient(
            base_url=base.auth_url,
            timeout=httpx.Timeout(base.http_timeout),
            transport=transport,
        )

    @property
    def url(self) -> str:
        return self.settings.auth_url

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._http.aclose()

    def __repr__(self) -> str:
        return f"AuthClient({redact_url(self.url)!r}, auth={self.auth!r})"

    # -- plumbing ---------------------------------------------------------------------------
    async def _send(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        data: Mapping[str, str] | None,
        params: Mapping[str, str | int] | None,
    ) -> tuple[httpx.Response, bytes]:
        shown = f"{method} {redact_url(self.url)}{path}"
        with mapped_errors(shown):
            request = self._http.build_request(
                method, path, headers=headers, data=data, params=params
            )
        return await exchange(
            self._http, request, timeout=self.settings.http_timeout, max_size=_MAX_BODY
        )

    async def _request(
        self,
        method: str,
        path: str,
        *,
        token: str | Token | None = None,
        authorized: bool = False,
        data: Mapping[str, str] | None = None,
        params: Mapping[str, str | int] | None = None,
    ) -> bytes:
        fixed: dict[str, str] = {}
        if token is not None:
            value = token.access_token if isinstance(token, Token) else token
            fixed["Authorization"] = f"Bearer {value}"
        provider = self.auth if authorized and token is None else None

        async def attempt(headers: Mapping[str, str]) -> tuple[httpx.Response, bytes]:
            return await self._send(method, path, {**fixed, **headers}, data, params)

        response, body = await send_with_retry(
            method, provider, attempt, lambda r: r[0].status_code
        )
        if response.is_error:
            raise error_from_response(response, body)
        return body

    def _parse(self, model: type[_M], body: bytes, method: str, path: str) -> _M:
        what = f"reply to {method} {path} ({model.__name__}) from {redact_url(self.url)}"
        return decode_body(model, body, what, max_size=_MAX_BODY)

    # -- tokens -----------------------------------------------------------------------------
    async def login(self, username: str, password: str) -> Token:
        """``POST /auth/token`` with the OAuth2 password form.

        Raises AuthenticationError (401 ``Incorrect username or password``) on bad credentials.
        """
        form = {"grant_type": "password", "username": username, "password": password}
        response = await self._request("POST", self.settings.token_path, data=form)
        return self._parse(Token, response, "POST", self.settings.token_path)

    async def refresh_token(self, token: str | Token) -> Token:
        """``POST /auth/token/refresh``: a new token with a full lifetime.

        Only works while ``token`` is still valid; afterwards the server answers 401
        ``Could not validate credentials`` (AuthenticationError) and a new login is needed.
        """
        response = await self._request("POST", self.settings.refresh_path, token=token)
        return self._parse(Token, response, "POST", self.settings.refresh_path)

    async def get_public_key(self) -> PublicKey:
        """``GET /auth/public-key``: the PEM that verifies tokens (no authentication)."""
        response = await self._request("GET", self.settings.public_key_path)
        return self._parse(PublicKey, response, "GET", self.settings.public_key_path)

    # -- users ------------------------------------------------------------------------------
    async def get_current_user(self, *, token: str | Token | None = None) -> User:
        """``GET /users/me``: the user the token belongs to."""
        response = await self._request(
            "GET", self.settings.current_user_path, token=token, authorized=True
        )
        return self._parse(User, response, "GET", self.settings.current_user_path)

    async def create_user(
        self,
        username: str,
        password: str,
        *,
        permissions: Iterable[str] = (),
        is_admin: bool = False,
        is_active: bool = True,
        token: str | Token | None = None,
    ) -> User:
        """``POST /users/`` (admin): create a user. 400 ``Username already registered``."""
        form = {
            "username": username,
            "password": password,
            "is_admin": _bool(is_admin),
            "is_active": _bool(is_active),
        }
        encoded = _encode_permissions(permissions)
        if encoded:
            form["permissions"] = encoded
        response = await self._request(
            "POST", self.settings.users_path, token=token, authorized=True, data=form
        )
        return self._parse(User, response, "POST", self.settings.users_path)

    async def list_users(
        self, *, skip: int = 0, limit: int = 100, token: str | Token | None = None
    ) -> list[User]:
        """``GET /users/?skip=&limit=`` (admin): users ordered by the server."""
        response = await self._request(
            "GET",
            self.settings.users_path,
            token=token,
            authorized=True,
            params={"skip": skip, "limit": limit},
        )
        what = f"reply to GET {self.settings.users_path} from {redact_url(self.url)}"
        value = decode_json(response, what, max_size=_MAX_BODY)
        try:
            return _USERS.validate_python(value)
        except ValidationError as exc:
            raise ProtocolError(f"unexpected {what}: {exc.error_count()} invalid fields") from None

    def _user_path(self, user_id: int) -> str:
        if isinstance(user_id, bool) or not isinstance(user_id, int):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ParameterError(f"user_id must be an int, got {type(user_id).__name__}")
        return self.settings.user_path.format(user_id=user_id)

    async def get_user(self, user_id: int, *, token: str | Token | None = None) -> User:
        """``GET /users/{user_id}`` (admin). 404 ``User not found`` -> NotFoundError."""
        response = await self._request(
            "GET", self._user_path(user_id), token=token, authorized=True
        )
        return self._parse(User, response, "GET", self._user_path(user_id))

    async def update_user(
        self,
        user_id: int,
        *,
        password: str | None = None,
        permissions: Iterable[str] | None = None,
        is_active: bool | None = None,
        is_admin: bool | None = None,
        token: str | Token | None = None,
    ) -> User:
        """``PUT /users/{user_id}`` (admin): change only the fields given.

        ``permissions=[]`` clears the user's permissions; ``None`` leaves them alone.
        """
        form: dict[str, str] = {}
        if password is not None:
            form["password"] = password
        if permissions is not None:
            # FastAPI turns an empty form value into "absent" (no change), so clearing sends
            # ",": the server splits it into no names and stores an empty list.
            form["permissions"] = _encode_permissions(permissions) or ","
        if is_active is not None:
            form["is_active"] = _bool(is_active)
        if is_admin is not None:
            form["is_admin"] = _bool(is_admin)
        response = await self._request(
            "PUT", self._user_path(user_id), token=token, authorized=True, data=form
        )
        return self._parse(User, response, "PUT", self._user_path(user_id))

    async def delete_user(self, user_id: int, *, token: str | Token | None = None) -> None:
        """``DELETE /users/{user_id}`` (admin): 204 on success, NotFoundError if unknown."""
        await self._request("DELETE", self._user_path(user_id), token=token, authorized=True)
