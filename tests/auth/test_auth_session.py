"""SessionManager against the local auth service: login, refresh, expiry, single-flight, secrets."""

from __future__ import annotations

import logging
import traceback
from collections.abc import AsyncIterator, Callable

import anyio
import httpx
import pytest

from cl_client import (
    AuthenticationError,
    ClientSettings,
    ParameterError,
    SessionExpiredError,
    TransportError,
)
from cl_client.auth import JWTAuthProvider, SessionManager, SessionSettings, Token
from cl_client.testing import LocalAuthService
from tests.util import wait_until

PASSWORD = "s3cret-admin-pw"


@pytest.fixture
async def auth() -> AsyncIterator[LocalAuthService]:
    async with LocalAuthService(admin_username="admin", admin_password=PASSWORD) as service:
        yield service


@pytest.fixture
async def session(auth: LocalAuthService) -> AsyncIterator[SessionManager]:
    async with SessionManager(auth_url=auth.url) as s:
        yield s


def _count(auth: LocalAuthService, path: str) -> int:
    return len(auth.requests_to(path))


# -- login, logout, state -------------------------------------------------------------------


async def test_login_then_current_user(auth: LocalAuthService, session: SessionManager) -> None:
    assert not session.is_authenticated()
    token = await session.login("admin", PASSWORD)

    assert session.is_authenticated()
    assert session.token is token
    assert session.username == "admin"
    me = await session.get_current_user()
    assert (me.id, me.username, me.is_admin) == (1, "admin", True)
    assert auth.requests_to("/users/me")[0].bearer_token == token.access_token
    assert await session.get_valid_token() == token.access_token
    assert _count(auth, "/auth/token/refresh") == 0


async def test_bad_credentials_raise_authentication_error(
    auth: LocalAuthService, session: SessionManager
) -> None:
    wrong = "not-the-" + "password"  # so the test's own source line does not contain it
    with pytest.raises(AuthenticationError) as info:
        await session.login("admin", wrong)
    assert not isinstance(info.value, SessionExpiredError)
    assert info.value.detail == "Incorrect username or password"
    assert not session.is_authenticated()
    assert session.username is None
    text = "".join(traceback.format_exception(info.value))
    assert wrong not in text


async def test_logout_forgets_token_and_credentials(session: SessionManager) -> None:
    await session.login("admin", PASSWORD)
    await session.logout()
    assert not session.is_authenticated()
    assert session.token is None
    assert session.username is None
    with pytest.raises(AuthenticationError, match="not logged in"):
        await session.get_valid_token()
    with pytest.raises(AuthenticationError, match="not logged in"):
        await session.get_current_user()
    with pytest.raises(AuthenticationError, match="not logged in"):
        await session.refresh()
    assert await session.replace_rejected_token("anything") is False


async def test_explicit_refresh(auth: LocalAuthService, session: SessionManager) -> None:
    first = await session.login("admin", PASSWORD)
    second = await session.refresh()
    assert second is session.token
    assert second.access_token != first.access_token
    [request] = auth.requests_to("/auth/token/refresh")
    assert request.bearer_token == first.access_token


# -- refresh before expiry ------------------------------------------------------------------


@pytest.mark.slow
async def test_short_lived_token_is_refreshed_during_a_longer_workflow(
    auth: LocalAuthService,
) -> None:
    auth.token_lifetime = 3.0
    async with SessionManager(auth_url=auth.url) as session:
        await session.login("admin", PASSWORD)
        with anyio.fail_after(20):
            deadline = anyio.current_time() + 6.5  # more than twice the lifetime
            while anyio.current_time() < deadline:
                me = await session.get_current_user()  # the caller never sees a refresh
                assert me.username == "admin"
                await anyio.sleep(0.1)

    assert all(r.status_code == 200 for r in auth.requests_to("/users/me"))
    assert _count(auth, "/auth/token") == 1  # refreshed, never logged in again
    refreshes = auth.requests_to("/auth/token/refresh")
    assert 2 <= len(refreshes) <= 12  # about once per half-life, not on every request
    assert all(r.status_code == 200 for r in refreshes)


async def test_refresh_margin_is_configurable(auth: LocalAuthService) -> None:
    async with SessionManager(auth_url=auth.url, refresh_margin=0) as session:
        await session.login("admin", PASSWORD)
        for _ in range(3):
            await session.get_valid_token()
    assert _count(auth, "/auth/token/refresh") == 0


@pytest.mark.slow
async def test_fifty_concurrent_calls_at_refresh_time_share_one_refresh(
    auth: LocalAuthService,
) -> None:
    auth.token_lifetime = 2.0
    async with SessionManager(auth_url=auth.url) as session:
        old = await session.login("admin", PASSWORD)
        await wait_until(lambda: old.needs_refresh(session.settings.refresh_margin))
        tokens: list[str] = []

        async def call() -> None:
            tokens.append(await session.get_valid_token())

        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(call)
        new = session.token

    [refresh] = auth.requests_to("/auth/token/refresh")
    assert refresh.bearer_token == old.access_token
    assert new is not None
    assert tokens == [new.access_token] * 50
    assert new.access_token != old.access_token


@pytest.mark.slow
async def test_fifty_concurrent_calls_after_expiry_share_one_login(
    auth: LocalAuthService,
) -> None:
    auth.token_lifetime = 1.0
    async with SessionManager(auth_url=auth.url) as session:
        old = await session.login("admin", PASSWORD)
        await wait_until(old.is_expired)
        auth.token_lifetime = 1800
        results: list[str] = []

        async def call() -> None:
            results.append(await session.get_valid_token())

        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(call)

    assert _count(auth, "/auth/token") == 2
    assert _count(auth, "/auth/token/refresh") == 0  # an expired token cannot be refreshed
    assert len(set(results)) == 1


# -- expiry ---------------------------------------------------------------------------------


@pytest.mark.slow
async def test_expired_token_with_credentials_logs_in_again(auth: LocalAuthService) -> None:
    auth.token_lifetime = 1.0
    async with SessionManager(auth_url=auth.url) as session:
        old = await session.login("admin", PASSWORD)
        await wait_until(old.is_expired)
        assert session.is_authenticated()  # credentials are held
        me = await session.get_current_user()
    assert me.username == "admin"
    logins = auth.requests_to("/auth/token")
    assert len(logins) == 2
    assert logins[1].form["password"] == PASSWORD


@pytest.mark.slow
async def test_expired_token_without_credentials_raises_session_expired(
    auth: LocalAuthService,
) -> None:
    auth.token_lifetime = 1.0
    async with SessionManager(auth_url=auth.url) as session:
        old = await session.login("admin", PASSWORD, remember=False)
        assert session.username is None
        await wait_until(old.is_expired)
        assert not session.is_authenticated()
        with pytest.raises(SessionExpiredError) as info:
            await session.get_valid_token()
        with pytest.raises(SessionExpiredError):
            await session.get_current_user()
    message = str(info.value)
    assert "expired" in message
    assert "login()" in message
    assert info.value.status_code == 401
    assert old.access_token not in message
    assert _count(auth, "/auth/token/refresh") == 0  # known to be expired: not even tried
    assert _count(auth, "/auth/token") == 1


async def test_set_token_adopts_a_token_without_credentials(auth: LocalAuthService) -> None:
    async with SessionManager(auth_url=auth.url) as session:
        session.set_token(auth.issue_token("admin", lifetime=-1))
        assert not session.is_authenticated()
        with pytest.raises(SessionExpiredError):
            await session.get_valid_token()

        fresh = auth.issue_token("admin")
        session.set_token(Token(access_token=fresh))
        assert session.is_authenticated()
        assert await session.get_valid_token() == fresh


class _HookTransport(httpx.AsyncBaseTransport):
    """A real transport that runs a callback as each request goes out."""

    def __init__(self, on_request: Callable[[httpx.Request], None]) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._on_request = on_request

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._on_request(request)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def test_set_token_during_a_refresh_wins(auth: LocalAuthService) -> None:
    chosen = auth.issue_token("admin", lifetime=600)
    holder: list[SessionManager] = []

    def on_request(request: httpx.Request) -> None:
        if request.url.path == "/auth/token/refresh":
            holder[0].set_token(chosen)  # while the refresh is on the wire

    async with SessionManager(auth_url=auth.url, transport=_HookTransport(on_request)) as session:
        holder.append(session)
        await session.login("admin", PASSWORD)
        assert (await session.refresh()).access_token == chosen
        assert session.token is not None
        assert session.token.access_token == chosen
        assert await session.get_valid_token() == chosen
    assert auth.requests_to("/auth/token/refresh")[0].status_code == 200


async def test_refresh_refused_while_valid_without_credentials(auth: LocalAuthService) -> None:
    auth.add_user("bob", "bob-pw", permissions=["ai_inference_support"])
    async with SessionManager(auth_url=auth.url) as session:
        await session.login("bob", "bob-pw", remember=False)
        user = auth.state.find_user("bob")
        assert user is not None
        del auth.state.users[user.id]  # the server now refuses the (unexpired) token
        with pytest.raises(SessionExpiredError) as info:
            await session.refresh()
    assert info.value.detail == "Could not validate credentials"
    assert "login()" in str(info.value)


async def test_refresh_refused_with_credentials_logs_in_again(auth: LocalAuthService) -> None:
    async with SessionManager(auth_url=auth.url) as session:
        await session.login("admin", PASSWORD)
        old_admin = auth.state.users.pop(1)
        new_admin = auth.state.add_user("admin", PASSWORD, is_admin=True)
        # /users/me refuses the old token (unknown user id): the session renews it and the
        # idempotent GET is retried once, transparently
        me = await session.get_current_user()
    assert old_admin.id != new_admin.id
    assert me.id == new_admin.id
    assert [r.status_code for r in auth.requests_to("/users/me")] == [401, 200]
    assert [r.status_code for r in auth.requests_to("/auth/token/refresh")] == [401]
    assert _count(auth, "/auth/token") == 2


@pytest.mark.slow
async def test_relogin_with_changed_password_raises_authentication_error(
    auth: LocalAuthService,
) -> None:
    auth.token_lifetime = 1.0
    async with SessionManager(auth_url=auth.url) as session:
        old = await session.login("admin", PASSWORD)
        auth.state.set_password(auth.state.users[1], "changed")
        await wait_until(old.is_expired)
        with pytest.raises(AuthenticationError) as info:
            await session.get_valid_token()
    assert info.value.detail == "Incorrect username or password"


async def test_rejected_token_is_renewed_once_for_many_requests(auth: LocalAuthService) -> None:
    async with SessionManager(auth_url=auth.url) as session:
        first = await session.login("admin", PASSWORD)
        results: list[bool] = []

        async def rejected() -> None:
            results.append(await session.replace_rejected_token(first.access_token))

        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(rejected)
        # a stale rejection (of a token already replaced) needs no new refresh
        assert await session.replace_rejected_token(first.access_token) is True
        # an unknown rejected token forces one
        assert await session.replace_rejected_token(None) is True
    assert results == [True] * 20
    assert _count(auth, "/auth/token/refresh") == 2


async def test_auth_service_down_during_refresh_raises_transport_error(
    auth: LocalAuthService,
) -> None:
    async with SessionManager(auth_url=auth.url) as session:
        await session.login("admin", PASSWORD)
    async with SessionManager(auth_url="http://127.0.0.1:9") as other:
        other.set_token(auth.issue_token("admin"))
        with pytest.raises(TransportError):
            await other.refresh()


# -- admin through the session ---------------------------------------------------------------


async def test_session_auth_client_carries_the_session_token(
    auth: LocalAuthService, session: SessionManager
) -> None:
    token = await session.login("admin", PASSWORD)
    created = await session.auth_client.create_user(
        "carol", "carol-pw", permissions=["ai_inference_support"]
    )
    users = await session.auth_client.list_users()
    await session.auth_client.delete_user(created.id)
    assert [u.username for u in users] == ["admin", "carol"]
    assert {r.bearer_token for r in auth.requests if r.path.startswith("/users")} == {
        token.access_token
    }


# -- settings -------------------------------------------------------------------------------


async def test_from_env_reads_the_three_urls(auth: LocalAuthService) -> None:
    env = {
        "AUTH_URL": auth.url + "/",
        "COMPUTE_URL": "http://127.0.0.1:8102",
        "MQTT_URL": "mqtt://127.0.0.1:1999",
        "UNRELATED": "x",
    }
    settings = SessionSettings.from_env(env)
    assert (settings.auth_url, settings.compute_url, settings.mqtt_url) == (
        auth.url,
        "http://127.0.0.1:8102",
        "mqtt://127.0.0.1:1999",
    )
    assert SessionSettings.from_env({}, refresh_margin=5) == SessionSettings(refresh_margin=5)
    compute = settings.compute_settings(http_timeout=3)
    assert (compute.compute_url, compute.mqtt_url, compute.http_timeout) == (
        "http://127.0.0.1:8102",
        "mqtt://127.0.0.1:1999",
        3,
    )
    async with SessionManager.from_env(env) as session:
        assert session.settings == settings
        await session.login("admin", PASSWORD)
    async with SessionManager(settings, refresh_margin=1) as tuned:
        assert tuned.settings.refresh_margin == 1
        assert tuned.settings.auth_url == auth.url


async def test_create_compute_client_shares_the_session_auth() -> None:
    async with SessionManager(
        compute_url="http://127.0.0.1:8102", mqtt_url="mqtt://127.0.0.1:1999"
    ) as session:
        client = session.create_compute_client(http_timeout=3)
        assert client.auth is session.auth_provider
        assert (client.settings.compute_url, client.settings.mqtt_url) == (
            "http://127.0.0.1:8102",
            "mqtt://127.0.0.1:1999",
        )
        assert client.settings.http_timeout == 3
        given = ClientSettings(compute_url="http://127.0.0.1:9102")
        other = session.create_compute_client(given, poll_interval=2)
        assert other.settings.compute_url == "http://127.0.0.1:9102"
        assert other.settings.poll_interval == 2
        assert other.auth is session.auth_provider
        assert session.create_compute_client(given).settings is given


def test_settings_repr_hides_broker_credentials() -> None:
    settings = SessionSettings(mqtt_url="mqtt://user:broker-pw@127.0.0.1:1883")
    assert "broker-pw" not in repr(settings)
    assert "broker-pw" not in str(settings)
    assert "mqtt_url='mqtt://***@127.0.0.1:1883'" in repr(settings)
    assert settings.mqtt_url == "mqtt://user:broker-pw@127.0.0.1:1883"
    assert "mqtt_url='mqtt://localhost:1883'" in repr(SessionSettings())


def test_settings_reject_bad_urls() -> None:
    with pytest.raises(ParameterError, match="auth_url: the URL must be http"):
        SessionSettings(auth_url="localhost:8000")
    with pytest.raises(ParameterError, match="mqtt_url: unsupported MQTT URL scheme"):
        SessionSettings(mqtt_url="http://broker")
    with pytest.raises(ParameterError, match="refresh_margin"):
        SessionSettings(refresh_margin=-1)


# -- secrets --------------------------------------------------------------------------------


@pytest.mark.slow
async def test_no_secret_in_logs_reprs_or_errors(
    auth: LocalAuthService, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    auth.token_lifetime = 1.0
    seen_tokens: list[str] = []
    async with SessionManager(auth_url=auth.url) as session:
        token = await session.login("admin", PASSWORD)
        seen_tokens.append(token.access_token)
        texts = [repr(session), str(session.token), repr(session.token), repr(session._credentials)]
        texts += [repr(session.auth_provider), repr(session.auth_client)]
        await wait_until(token.is_expired)
        seen_tokens.append(await session.get_valid_token())  # logs in again
        seen_tokens.append((await session.refresh()).access_token)  # refreshes
        await session.logout()
        try:
            await session.login("admin", "wrong-" + PASSWORD)
        except AuthenticationError as exc:
            texts.append("".join(traceback.format_exception(exc)))
        session.set_token(seen_tokens[0])
        try:
            await session.get_valid_token()
        except SessionExpiredError as exc:
            texts.append("".join(traceback.format_exception(exc)))
        texts.append(repr(session))
    texts.append(caplog.text)
    provider = JWTAuthProvider(seen_tokens[-1])
    texts += [repr(provider), str(provider)]
    assert "logging in again" in caplog.text
    everything = "\n".join(texts)
    assert PASSWORD not in everything
    for value in seen_tokens:
        assert value not in everything
        assert value.split(".")[2] not in everything  # not even the signature
    assert "admin" in repr(texts[0])
