"""The local auth service itself and the shared serving helper (the testing kit's own contract)."""

from __future__ import annotations

import socket

import httpx
import pytest

from cl_client.testing import LocalAuthService
from cl_client.testing._serve import serve_asgi
from cl_client.testing.auth._app import create_auth_app


async def test_lifecycle_and_helpers() -> None:
    service = LocalAuthService(admin_username="boss", admin_password="pw", token_lifetime=42)
    assert repr(service) == "LocalAuthService(not running, users=1)"
    assert service.public_key_pem.startswith("-----BEGIN PUBLIC KEY-----")
    assert service.token_lifetime == 42
    with pytest.raises(RuntimeError, match="not running"):
        _ = service.url
    with pytest.raises(KeyError):
        service.issue_token("nobody")
    async with service:
        assert service.url.startswith("http://127.0.0.1:")
        assert repr(service) == f"LocalAuthService({service.url}, users=1)"
        with pytest.raises(RuntimeError, match="already been entered"):
            await service.__aenter__()
        async with httpx.AsyncClient(base_url=service.url) as raw:
            root = await raw.get("/")
        assert root.json() == {"message": "authentication service is running"}
        [request] = service.requests
        assert repr(request) == "RecordedRequest(GET / -> 200)"
    with pytest.raises(RuntimeError):
        _ = service.url
    with pytest.raises(RuntimeError, match="not been entered"):
        await service.__aexit__(None, None, None)  # anyio.AsyncContextManagerMixin's rule
    async with service:  # it may be entered again once it has exited
        assert service.url.startswith("http://127.0.0.1:")
    assert repr(service.state.users[1]) == "StoredUser(id=1, username='boss', is_admin=True)"


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ('["a", "b"]', ["a", "b"]),  # a JSON array
        ("[a, b]", ["a", "b"]),  # Dart's List.toString()
        ("[]", []),
        ("a, b ,", ["a", "b"]),  # comma-separated
        ('"solo"', ["solo"]),
    ],
)
@pytest.mark.slow
async def test_create_user_parses_permissions_like_the_real_service(
    sent: str, stored: list[str]
) -> None:
    async with LocalAuthService() as auth, httpx.AsyncClient(base_url=auth.url) as raw:
        response = await raw.post(
            "/users/",
            data={"username": "x", "password": "pw", "permissions": sent},
            headers={"Authorization": f"Bearer {auth.issue_token('admin')}"},
        )
    assert response.status_code == 201
    assert response.json()["permissions"] == stored


async def test_missing_slash_redirects_and_json_is_refused() -> None:
    async with LocalAuthService() as auth, httpx.AsyncClient(base_url=auth.url) as raw:
        token = auth.issue_token("admin")
        redirect = await raw.post(
            "/users", data={"username": "x", "password": "y"}, headers={"Authorization": token}
        )
        json_login = await raw.post("/auth/token", json={"username": "admin", "password": "admin"})
        no_header = await raw.post("/auth/token/refresh")
    assert redirect.status_code == 307
    assert json_login.status_code == 422
    assert no_header.status_code == 401
    assert no_header.json() == {"detail": "Not authenticated"}
    assert no_header.headers["www-authenticate"] == "Bearer"


async def test_serve_asgi_reraises_the_callers_error_unwrapped() -> None:
    app = create_auth_app(LocalAuthService().state)
    with pytest.raises(ValueError, match="from the body"):  # not an ExceptionGroup, on trio too
        async with serve_asgi(app) as url:
            assert url.startswith("http://127.0.0.1:")
            raise ValueError("from the body")


async def test_serve_asgi_on_a_busy_port_fails_cleanly() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port: int = busy.getsockname()[1]  # pyright: ignore[reportAny]
        app = create_auth_app(LocalAuthService().state)
        with pytest.raises(OSError):
            async with serve_asgi(app, port=port):
                pass  # pragma: no cover - never reached
