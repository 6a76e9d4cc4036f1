"""Authentication end to end: SessionManager -> ComputeClient -> the local compute in auth mode.

Real HTTP over loopback to the local auth and compute services (and a real MQTT broker),
parametrized over the four ways to meet compute: guest mode, a user with
``ai_inference_support``, a user without it, and an admin.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from cl_client import AuthenticationError, ComputeClient, PermissionDeniedError, SessionExpiredError
from cl_client.auth import NoAuthProvider, SessionManager, Token
from cl_client.testing import LocalAuthService, LocalComputeService, generic_task
from tests.util import wait_until

Factory = Callable[..., LocalComputeService]

ADMIN_PW = "admin-pw-e2e"
CREDENTIALS = {
    "admin": ("admin", ADMIN_PW),
    "user_with_permission": ("alice", "alice-pw"),
    "user_without_permission": ("bob", "bob-pw"),
}
ROLES = ["guest", "user_with_permission", "user_without_permission", "admin"]
NEEDS_PERMISSION = "Insufficient permissions. Required: ai_inference_support"
NEEDS_ADMIN = "Insufficient permissions. Admin access required"


@pytest.fixture
async def auth() -> AsyncIterator[LocalAuthService]:
    async with LocalAuthService(admin_username="admin", admin_password=ADMIN_PW) as service:
        service.add_user("alice", "alice-pw", permissions=["ai_inference_support"])
        # "*" is what the admin has, but it grants nothing to a non-admin
        service.add_user("bob", "bob-pw", permissions=["*", "media_store_read"])
        yield service


@pytest.fixture
async def compute(
    local_compute_factory: Factory, auth: LocalAuthService
) -> AsyncIterator[LocalComputeService]:
    async with local_compute_factory(
        tasks={"generic": generic_task}, guest_mode=False, public_key_pem=auth.public_key_pem
    ) as service:
        yield service


@pytest.fixture
def upload(tmp_path: Path) -> Path:
    path = tmp_path / "input.txt"
    path.write_text("bytes to hash")
    return path


def session_for(auth: LocalAuthService, compute: LocalComputeService) -> SessionManager:
    return SessionManager(
        auth_url=auth.url, compute_url=compute.compute_url, mqtt_url=compute.mqtt_url
    )


@asynccontextmanager
async def client_as(
    role: str, auth: LocalAuthService, compute: LocalComputeService
) -> AsyncGenerator[ComputeClient]:
    """A ComputeClient as ``role``: guest mode with no token, or a logged-in session's."""
    if role == "guest":
        compute.guest_mode = True
        async with ComputeClient(compute.settings()) as client:
            yield client
        return
    username, password = CREDENTIALS[role]
    async with session_for(auth, compute) as session:
        await session.login(username, password)
        async with session.create_compute_client() as client:
            yield client


# -- the four roles -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("role", ROLES)
async def test_jobs_by_role(
    role: str, auth: LocalAuthService, compute: LocalComputeService, upload: Path
) -> None:
    async with client_as(role, auth, compute) as client:
        info = await client.server_info()
        assert info.guest_mode == ("on" if role == "guest" else "off")
        assert info.auth_required is (role != "guest")
        assert client.server is not None
        assert client.server.auth_required is info.auth_required
        assert (await client.get_capabilities()).num_workers == 1  # never needs auth

        if role == "user_without_permission":
            with pytest.raises(PermissionDeniedError) as info_submit:
                await client.submit("generic", upload)
            assert info_submit.value.status_code == 403
            assert info_submit.value.detail == NEEDS_PERMISSION
            assert NEEDS_PERMISSION in str(info_submit.value)
            assert compute.state.jobs == {}
            with pytest.raises(PermissionDeniedError, match="ai_inference_support"):
                await client.get_job("00000000-0000-0000-0000-000000000000")
            return

        created = await client.submit("generic", upload)
        with anyio.fail_after(10):
            job = await client.wait(created.job_id)
        assert job.status == "completed"
        assert (await client.get_job(created.job_id)).task_output == job.task_output
        # compute stored the caller's JWT id (none in guest mode, where tokens are ignored)
        owner = {"guest": None, "user_with_permission": "2", "admin": "1"}[role]
        assert compute.job(created.job_id).created_by == owner
        await client.delete_job(created.job_id)
    assert compute.state.jobs == {}


@pytest.mark.slow
@pytest.mark.parametrize("role", ROLES)
async def test_admin_routes_by_role(
    role: str, auth: LocalAuthService, compute: LocalComputeService
) -> None:
    async with client_as(role, auth, compute) as client:
        if role in ("user_with_permission", "user_without_permission"):
            for call in (client.storage_info, client.get_config, lambda: client.cleanup(30)):
                with pytest.raises(PermissionDeniedError) as info:
                    await call()
                assert info.value.detail == NEEDS_ADMIN
            with pytest.raises(PermissionDeniedError, match="Admin access required"):
                await client.set_guest_mode(True)
            assert compute.guest_mode is False
            return

        # guest mode leaves the admin routes open to everyone (as on the real server)
        storage = await client.storage_info()
        assert storage.job_count == 0
        assert (await client.cleanup(30)).deleted_count == 0
        config = await client.get_config()
        assert config.guest_mode is (role == "guest")
        if role == "admin":
            updated = await client.set_guest_mode(True)
            assert updated.guest_mode is True
            assert compute.guest_mode is True
            assert (await client.get_config()).updated_by == "1"  # the admin's JWT id


async def test_no_token_in_auth_mode_is_an_authentication_error(
    compute: LocalComputeService, upload: Path
) -> None:
    async with ComputeClient(compute.settings(), auth=NoAuthProvider()) as client:
        assert client.server is not None and client.server.auth_required
        with pytest.raises(AuthenticationError) as info:
            await client.submit("generic", upload)
        assert info.value.detail == "Authentication required"
        with pytest.raises(AuthenticationError, match="Authentication required"):
            await client.get_job("00000000-0000-0000-0000-000000000000")


# -- refresh in a real workflow -------------------------------------------------------------


@pytest.mark.slow
async def test_short_lived_token_is_refreshed_during_a_compute_workflow(
    auth: LocalAuthService, compute: LocalComputeService, upload: Path
) -> None:
    auth.token_lifetime = 3.0
    async with session_for(auth, compute) as session:
        await session.login("alice", "alice-pw")
        async with session.create_compute_client() as client:
            deadline = anyio.current_time() + 5.0  # well beyond the 3 s lifetime
            jobs = 0
            with anyio.fail_after(30):
                while anyio.current_time() < deadline:
                    created = await client.submit("generic", upload)
                    job = await client.wait(created.job_id)
                    assert job.status == "completed"
                    jobs += 1
                    await anyio.sleep(0.2)
    assert jobs >= 5
    assert len(auth.requests_to("/auth/token")) == 1  # never had to log in again
    refreshes = auth.requests_to("/auth/token/refresh")
    assert len(refreshes) >= 2
    assert all(r.status_code == 200 for r in refreshes)


@pytest.mark.slow
async def test_fifty_concurrent_compute_calls_at_refresh_time_cause_one_refresh(
    auth: LocalAuthService, compute: LocalComputeService, upload: Path
) -> None:
    auth.token_lifetime = 3.0
    async with session_for(auth, compute) as session:
        token = await session.login("alice", "alice-pw")
        async with session.create_compute_client() as client:
            created = await client.submit("generic", upload)
            with anyio.fail_after(10):
                await client.wait(created.job_id)
                await wait_until(lambda: token.needs_refresh(session.settings.refresh_margin))
            assert auth.requests_to("/auth/token/refresh") == []
            statuses: list[str] = []

            async def fetch() -> None:
                statuses.append((await client.get_job(created.job_id)).status)

            async with anyio.create_task_group() as tg:
                for _ in range(50):
                    tg.start_soon(fetch)
    assert statuses == ["completed"] * 50
    assert len(auth.requests_to("/auth/token/refresh")) == 1


@pytest.mark.slow
async def test_expired_session_without_credentials_tells_the_user_to_log_in(
    auth: LocalAuthService, compute: LocalComputeService, upload: Path
) -> None:
    auth.token_lifetime = 1.0
    async with session_for(auth, compute) as session:
        token = await session.login("alice", "alice-pw", remember=False)
        async with session.create_compute_client() as client:
            with anyio.fail_after(10):
                await wait_until(token.is_expired)
            with pytest.raises(SessionExpiredError, match=r"login\(\) again") as info:
                await client.submit("generic", upload)
            assert token.access_token not in str(info.value)
            with pytest.raises(SessionExpiredError):
                await client.get_job("00000000-0000-0000-0000-000000000000")
    assert compute.state.jobs == {}


async def test_token_refused_by_compute_is_renewed_once_for_idempotent_calls(
    auth: LocalAuthService, compute: LocalComputeService, upload: Path
) -> None:
    async with session_for(auth, compute) as session:
        await session.login("alice", "alice-pw")
        async with session.create_compute_client() as client:
            created = await client.submit("generic", upload)
            with anyio.fail_after(10):
                await client.wait(created.job_id)
            # a token compute cannot verify (signed by another key, not expired)
            forged = Token(access_token=LocalAuthService().sign({"id": "2", "exp": 4102444800}))
            session._token = forged
            job = await client.get_job(created.job_id)  # 401, renewed, retried once
            assert job.status == "completed"
            assert session.token is not forged
            # a POST is not retried: it fails with the server's message
            session._token = forged
            with pytest.raises(AuthenticationError) as info:
                await client.submit("generic", upload)
            assert info.value.detail == "Could not validate credentials"
    # renewal: the refresh of the forged token is refused, so the session logged in again
    assert [r.status_code for r in auth.requests_to("/auth/token/refresh")] == [401]
    assert len(auth.requests_to("/auth/token")) == 2
