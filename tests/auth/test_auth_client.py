"""AuthClient against the local auth service: every endpoint, checked on both sides of the wire.

Each endpoint test asserts what the server received (method, path with its trailing slash,
form encoding, headers), not only what came back.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from datetime import datetime

import httpx
import pytest

from cl_client import (
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    ParameterError,
    PermissionDeniedError,
    ProtocolError,
    RequestValidationError,
    TransportError,
)
from cl_client.auth import AuthClient, JWTAuthProvider, PublicKey, SessionSettings, Token, User
from cl_client.testing import LocalAuthService

FORM = "application/x-www-form-urlencoded"


@pytest.fixture
async def auth() -> AsyncIterator[LocalAuthService]:
    async with LocalAuthService(admin_username="root", admin_password="r00t-pw") as service:
        yield service


@pytest.fixture
async def client(auth: LocalAuthService) -> AsyncIterator[AuthClient]:
    async with AuthClient(auth.url) as c:
        yield c


@pytest.fixture
async def admin_token(auth: LocalAuthService) -> str:
    return auth.issue_token("root")


# -- tokens ---------------------------------------------------------------------------------


async def test_login_sends_the_oauth2_password_form(
    auth: LocalAuthService, client: AuthClient
) -> None:
    token = await client.login("root", "r00t-pw")

    [request] = auth.requests_to("/auth/token")
    assert request.method == "POST"
    assert request.content_type.startswith(FORM)
    assert request.form == {"grant_type": "password", "username": "root", "password": "r00t-pw"}
    assert request.bearer_token is None
    assert isinstance(token, Token)
    assert token.token_type == "bearer"
    assert token.claims.id == "1"
    assert token.claims.is_admin is True
    assert token.claims.permissions == ["*"]
    remaining = token.expires_in()
    assert remaining is not None
    assert 1790 < remaining <= 1800


async def test_login_with_bad_credentials_raises_authentication_error(
    auth: LocalAuthService, client: AuthClient
) -> None:
    with pytest.raises(AuthenticationError) as info:
        await client.login("root", "wrong-password-123")
    assert info.value.status_code == 401
    assert info.value.detail == "Incorrect username or password"
    assert "wrong-password-123" not in str(info.value)
    assert auth.requests_to("/auth/token")[-1].status_code == 401


async def test_refresh_sends_the_old_token_as_bearer_and_no_body(
    auth: LocalAuthService, client: AuthClient, admin_token: str
) -> None:
    new = await client.refresh_token(admin_token)

    [request] = auth.requests_to("/auth/token/refresh")
    assert request.method == "POST"
    assert request.bearer_token == admin_token
    assert request.body == b""
    assert new.access_token != admin_token
    assert new.claims.id == "1"


async def test_refresh_accepts_a_token_object(
    auth: LocalAuthService, client: AuthClient, admin_token: str
) -> None:
    await client.refresh_token(Token(access_token=admin_token))
    assert auth.requests_to("/auth/token/refresh")[0].bearer_token == admin_token


async def test_refresh_of_an_expired_token_is_refused(
    auth: LocalAuthService, client: AuthClient
) -> None:
    expired = auth.issue_token("root", lifetime=-5)
    with pytest.raises(AuthenticationError) as info:
        await client.refresh_token(expired)
    assert info.value.detail == "Could not validate credentials"


async def test_public_key_needs_no_auth(auth: LocalAuthService, client: AuthClient) -> None:
    key = await client.get_public_key()

    [request] = auth.requests_to("/auth/public-key")
    assert request.method == "GET"
    assert request.bearer_token is None
    assert isinstance(key, PublicKey)
    assert key.algorithm == "ES256"
    assert key.public_key == auth.public_key_pem
    assert key.public_key.startswith("-----BEGIN PUBLIC KEY-----")


# -- users ----------------------------------------------------------------------------------


async def test_current_user_sends_the_bearer_token(
    auth: LocalAuthService, client: AuthClient, admin_token: str
) -> None:
    me = await client.get_current_user(token=admin_token)

    [request] = auth.requests_to("/users/me")
    assert request.method == "GET"
    assert request.bearer_token == admin_token
    assert isinstance(me, User)
    assert (me.id, me.username, me.is_admin, me.is_active) == (1, "root", True, True)
    assert me.permissions == ["*"]
    assert isinstance(me.created_at, datetime)
    assert me.created_at.tzinfo is None  # the server sends naive ISO-8601


async def test_current_user_without_a_token_is_not_authenticated(client: AuthClient) -> None:
    with pytest.raises(AuthenticationError) as info:
        await client.get_current_user()
    assert info.value.detail == "Not authenticated"


async def test_create_user_posts_a_form_to_the_trailing_slash_path(
    auth: LocalAuthService, client: AuthClient, admin_token: str
) -> None:
    user = await client.create_user(
        "alice",
        "alice-pw",
        permissions=["ai_inference_support", "media_store_read"],
        is_admin=False,
        is_active=True,
        token=admin_token,
    )

    [request] = auth.requests_to("/users/", "POST")
    assert request.status_code == 201  # not a 307 from a missing slash
    assert request.content_type.startswith(FORM)
    assert request.bearer_token == admin_token
    assert request.form == {
        "username": "alice",
        "password": "alice-pw",
        "is_admin": "false",
        "is_active": "true",
        "permissions": "ai_inference_support,media_store_read",
    }
    assert user.username == "alice"
    assert user.permissions == ["ai_inference_support", "media_store_read"]
    stored = auth.state.users[user.id]
    assert stored.permissions == ["ai_inference_support", "media_store_read"]
    assert auth.state.authenticate("alice", "alice-pw") is stored


async def test_create_user_without_permissions_leaves_the_field_out(
    auth: LocalAuthService, client: AuthClient, admin_token: str
) -> None:
    user = await client.create_user("bob", "pw", is_admin=True, is_active=False, token=admin_token)
    form = auth.requests_to("/users/", "POST")[0].form
    assert "permissions" not in form
    assert form["is_admin"] == "true"
    assert form["is_active"] == "false"
    assert (user.is_admin, user.is_active, user.permissions) == (True, False, [])


async def test_create_user_errors_carry_the_server_message(
    auth: LocalAuthService, client: AuthClient, admin_token: str
) -> None:
    await client.create_user("carol", "pw", token=admin_token)
    with pytest.raises(BadRequestError) as dup:
        await client.create_user("carol", "pw", token=admin_token)
    assert dup.value.detail == "Username already registered"

    auth.add_user("dave", "pw", permissions=["ai_inference_support"])
    with pytest.raises(PermissionDeniedError) as denied:
        await client.create_user("eve", "pw", token=auth.issue_token("dave"))
    assert denied.value.status_code == 403
    assert denied.value.detail == "The user doesn't have enough privileges"
    assert auth.state.find_user("eve") is None


async def test_list_users_sends_skip_and_limit(
    auth: LocalAuthService, client: AuthClient, admin_token: str
) -> None:
    for name in ("u1", "u2", "u3"):
        auth.add_user(name, "pw")

    users = await client.list_users(skip=1, limit=2, token=admin_token)

    [request] = auth.requests_to("/users/", "GET")
    assert request.query == {"skip": "1", "limit": "2"}
    assert request.bearer_token == admin_token
    assert [u.username for u in users] == ["u1", "u2"]
    assert all(isinstance(u, User) for u in users)


async def test_list_users_defaults(
    auth: LocalAuthService, client: AuthClient, admin_token: str
) -> None:
    users = await client.list_users(token=admin_token)
    assert auth.requests_to("/users/", "GET")[0].query == {"skip": "0", "limit": "100"}
    assert [u.username for u in users] == ["root"]


async def test_get_user_by_id(auth: LocalAuthService, client: AuthClient, admin_token: str) -> None:
    alice = auth.add_user("alice", "pw", permissions=["x"])
    user = await client.get_user(alice.id, token=admin_token)

    [request] = auth.requests_to(f"/users/{alice.id}")
    assert request.method == "GET"
    assert request.bearer_token == admin_token
    assert (user.id, user.username, user.permissions) == (alice.id, "alice", ["x"])

    with pytest.raises(NotFoundError) as info:
        await client.get_user(999, token=admin_token)
    assert info.value.detail == "User not found"


async def test_update_user_sends_only_the_given_fields(
    auth: LocalAuthService, client: AuthClient, admin_token: str
) -> None:
    alice = auth.add_user("alice", "old-pw", permissions=["a", "b"])

    user = await client.update_user(alice.id, is_admin=True, token=admin_token)
    request = auth.requests_to(f"/users/{alice.id}", "PUT")[-1]
    assert request.content_type.startswith(FORM)
    assert request.form == {"is_admin": "true"}
    assert user.is_admin is True
    assert user.permissions == ["a", "b"]

    user = await client.update_user(
        alice.id,
        password="new-pw",
        permissions=["ai_inference_support", "c"],
        is_active=False,
        token=admin_token,
    )
    assert auth.requests_to(f"/users/{alice.id}", "PUT")[-1].form == {
        "password": "new-pw",
        "permissions": "ai_inference_support,c",
        "is_active": "false",
    }
    assert (user.permissions, user.is_active) == (["ai_inference_support", "c"], False)
    assert auth.state.authenticate("alice", "new-pw") is not None


async def test_update_user_with_empty_permissions_clears_them(
    auth: LocalAuthService, client: AuthClient, admin_token: str
) -> None:
    alice = auth.add_user("alice", "pw", permissions=["a"])
    user = await client.update_user(alice.id, permissions=[], token=admin_token)
    # FastAPI reads an empty form value as "absent" (no change): "," is what clears
    assert auth.requests_to(f"/users/{alice.id}", "PUT")[-1].form == {"permissions": ","}
    assert user.permissions == []
    assert auth.state.users[alice.id].permissions == []


async def test_an_empty_permissions_form_value_changes_nothing(
    auth: LocalAuthService, admin_token: str
) -> None:
    """The server-side quirk the client works around (FastAPI, as on the real server)."""
    alice = auth.add_user("alice", "pw", permissions=["a"])
    async with httpx.AsyncClient(base_url=auth.url) as raw:
        response = await raw.put(
            f"/users/{alice.id}",
            data={"permissions": ""},
            headers={"Authorization": f"Bearer {admin_token}"},
        )
    assert response.status_code == 200
    assert auth.state.users[alice.id].permissions == ["a"]


async def test_update_unknown_user(client: AuthClient, admin_token: str) -> None:
    with pytest.raises(NotFoundError):
        await client.update_user(42, is_active=True, token=admin_token)


async def test_delete_user(auth: LocalAuthService, client: AuthClient, admin_token: str) -> None:
    alice = auth.add_user("alice", "pw")
    await client.delete_user(alice.id, token=admin_token)

    [request] = auth.requests_to(f"/users/{alice.id}")
    assert request.method == "DELETE"
    assert request.bearer_token == admin_token
    assert request.status_code == 204
    assert alice.id not in auth.state.users

    with pytest.raises(NotFoundError) as info:
        await client.delete_user(alice.id, token=admin_token)
    assert info.value.detail == "User not found"


# -- client-side checks ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "permissions",
    ["ai_inference_support", ["a,b"], [""], [" padded"]],
    ids=["string", "comma", "empty", "spaces"],
)
async def test_bad_permission_names_are_refused_before_sending(
    auth: LocalAuthService, client: AuthClient, admin_token: str, permissions: list[str]
) -> None:
    with pytest.raises(ParameterError):
        await client.create_user("x", "pw", permissions=permissions, token=admin_token)
    with pytest.raises(ParameterError):
        await client.update_user(1, permissions=permissions, token=admin_token)
    assert auth.requests == []


async def test_user_id_must_be_an_int(client: AuthClient, admin_token: str) -> None:
    with pytest.raises(ParameterError):
        await client.get_user("1", token=admin_token)  # pyright: ignore[reportArgumentType]
    with pytest.raises(ParameterError):
        await client.delete_user(True, token=admin_token)


async def test_server_validation_errors_map_to_request_validation_error(
    auth: LocalAuthService, admin_token: str
) -> None:
    # endpoint paths are settings: a path whose id is not an int makes the server answer 422
    settings = SessionSettings(auth_url=auth.url, user_path="/users/id-{user_id}")
    async with AuthClient(settings=settings) as client:
        with pytest.raises(RequestValidationError) as info:
            await client.get_user(1, token=admin_token)
    assert auth.requests_to("/users/id-1")[0].status_code == 422
    assert info.value.errors


# -- providers, transport and protocol errors -----------------------------------------------


async def test_calls_without_token_use_the_auth_provider(
    auth: LocalAuthService, admin_token: str
) -> None:
    async with AuthClient(auth.url, auth=JWTAuthProvider(admin_token)) as client:
        me = await client.get_current_user()
        users = await client.list_users()
        # an explicit token wins over the provider
        alice = auth.add_user("alice", "pw")
        me_as_alice = await client.get_current_user(token=auth.issue_token("alice"))
    assert me.username == "root"
    assert [u.username for u in users] == ["root"]
    assert me_as_alice.id == alice.id
    assert auth.requests_to("/users/me")[0].bearer_token == admin_token


class _SwitchingProvider:
    """First a refused token, then (after handle_unauthorized) a good one."""

    def __init__(self, bad: str, good: str) -> None:
        self.token = bad
        self.good = good
        self.unauthorized_calls = 0

    async def get_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def handle_unauthorized(self) -> bool:
        self.unauthorized_calls += 1
        self.token = self.good
        return True


async def test_idempotent_call_is_retried_once_after_401(
    auth: LocalAuthService, admin_token: str
) -> None:
    provider = _SwitchingProvider("not-a-token", admin_token)
    async with AuthClient(auth.url, auth=provider) as client:
        me = await client.get_current_user()
    assert me.username == "root"
    assert provider.unauthorized_calls == 1
    assert [r.status_code for r in auth.requests_to("/users/me")] == [401, 200]


async def test_post_is_not_retried_after_401(auth: LocalAuthService, admin_token: str) -> None:
    provider = _SwitchingProvider("not-a-token", admin_token)
    async with AuthClient(auth.url, auth=provider) as client:
        with pytest.raises(AuthenticationError):
            await client.create_user("x", "pw")
    assert provider.unauthorized_calls == 0
    assert len(auth.requests_to("/users/", "POST")) == 1


async def test_retry_happens_only_once(auth: LocalAuthService) -> None:
    provider = _SwitchingProvider("bad-1", "bad-2")
    async with AuthClient(auth.url, auth=provider) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.get_current_user()
    assert info.value.detail == "Could not validate credentials"
    assert provider.unauthorized_calls == 1
    assert len(auth.requests_to("/users/me")) == 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]  # pyright: ignore[reportAny]
    return port


async def test_unreachable_service_raises_transport_error() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    async with AuthClient(url) as client:
        with pytest.raises(TransportError) as info:
            await client.login("root", "secret-password-xyz")
    assert url in str(info.value)
    assert "secret-password-xyz" not in str(info.value)


def _mock(body: bytes, status: int = 200) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers={"content-type": "application/json"})

    return httpx.MockTransport(handler)


@pytest.mark.parametrize(
    "body",
    [b"not json", b'{"token_type": "bearer"}', b'{"access_token": 12345678}'],
    ids=["not-json", "missing-field", "wrong-type"],
)
async def test_malformed_token_reply_raises_protocol_error(body: bytes) -> None:
    async with AuthClient("http://auth.invalid", transport=_mock(body)) as client:
        with pytest.raises(ProtocolError) as info:
            await client.login("u", "pw-not-shown")
    assert "/auth/token" in str(info.value)
    assert "12345678" not in str(info.value)  # pydantic input is hidden
    assert "pw-not-shown" not in str(info.value)


@pytest.mark.parametrize("body", [b"not json", b'[{"id": "x"}]'], ids=["not-json", "bad-user"])
async def test_malformed_user_list_raises_protocol_error(body: bytes) -> None:
    async with AuthClient("http://auth.invalid", transport=_mock(body)) as client:
        with pytest.raises(ProtocolError, match="/users/"):
            await client.list_users(token="t")


async def test_constructor_does_no_io_and_url_overrides_settings() -> None:
    settings = SessionSettings(auth_url="http://elsewhere:8000", http_timeout=5)
    client = AuthClient("http://127.0.0.1:9/", settings=settings)
    assert client.url == "http://127.0.0.1:9"
    assert client.settings.http_timeout == 5
    assert repr(client) == "AuthClient('http://127.0.0.1:9', auth=None)"
    await client.aclose()


async def test_reprs_hide_the_token(admin_token: str) -> None:
    provider = JWTAuthProvider(admin_token)
    client = AuthClient("http://127.0.0.1:9", auth=provider)
    assert admin_token not in repr(client)
    assert admin_token not in str(Token(access_token=admin_token))
    await client.aclose()
