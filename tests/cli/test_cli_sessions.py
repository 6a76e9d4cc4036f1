"""``cl-client login/logout/whoami``, the saved token, profiles and ``config show``, against the
local auth service and a local compute service in auth mode (real HTTP, a real broker)."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import cast

import anyio
import pytest

from cl_client.cli import ExitCode
from cl_client.testing import LocalAuthService, LocalComputeService
from tests.cli_util import CliResult, cli, cli_process, service_args
from tests.media import make_jpeg

ADMIN_PW = "admin-Pa55word"
ALICE_PW = "alice-Sup3r-secret"


@pytest.fixture
async def auth() -> AsyncIterator[LocalAuthService]:
    async with LocalAuthService(admin_username="admin", admin_password=ADMIN_PW) as service:
        service.add_user("alice", ALICE_PW, permissions=["ai_inference_support"])
        yield service


@pytest.fixture
async def compute(
    local_compute_factory: Callable[..., LocalComputeService], auth: LocalAuthService
) -> AsyncIterator[LocalComputeService]:
    async with local_compute_factory(
        guest_mode=False, public_key_pem=auth.public_key_pem
    ) as service:
        yield service


def _config_dir() -> Path:
    return Path(os.environ["CL_CLIENT_CONFIG_DIR"])


def _token_file(profile: str = "default") -> Path:
    return _config_dir() / "sessions" / f"{profile}.json"


def _saved(profile: str = "default") -> dict[str, str]:
    return cast(dict[str, str], json.loads(_token_file(profile).read_text()))


def _base(compute: LocalComputeService, auth: LocalAuthService) -> list[str]:
    return [*service_args(compute), "--auth-url", auth.url]


@pytest.mark.slow
async def test_login_whoami_logout(
    compute: LocalComputeService, auth: LocalAuthService, tmp_path: Path
) -> None:
    base = _base(compute, auth)
    image = make_jpeg(tmp_path / "a.jpg", (40, 30))
    anonymous = await cli(*base, "hash", "compute", image)
    assert anonymous.code == ExitCode.UNAVAILABLE, anonymous
    assert "cl-client login" in anonymous.stderr
    not_yet = await cli(*base, "whoami")
    assert not_yet.code == ExitCode.UNAVAILABLE and "cl-client login" in not_yet.stderr

    login = await cli(*base, "-v", "login", "-u", "alice", "--password", ALICE_PW)
    assert login.code == 0, login
    assert "logged in" in login.stdout and "alice" in login.stdout
    assert ALICE_PW not in login.stdout + login.stderr  # not even with --verbose
    (sent,) = auth.requests_to("/auth/token", "POST")
    assert sent.form["username"] == "alice"

    path = _token_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert ALICE_PW not in text
    saved = _saved()
    assert saved["username"] == "alice" and saved["auth_url"] == auth.url
    assert [p.name for p in path.parent.iterdir()] == ["default.json"]  # no temp file left

    who = await cli(*base, "--json", "whoami")
    assert who.code == 0, who
    record = who.record()
    user = record["user"]
    assert isinstance(user, dict)
    assert user["username"] == "alice" and user["is_admin"] is False
    assert user["permissions"] == ["ai_inference_support"]
    assert record["compute_url"] == compute.compute_url and record["auth_url"] == auth.url
    assert str(record["expires_at"]).endswith("UTC")
    people = await cli(*base, "whoami")
    assert "alice" in people.stdout and "ai_inference_support" in people.stdout

    # the saved token is what later commands send
    hashed = await cli(*base, "--json", "-v", "hash", "compute", image)
    assert hashed.code == 0, hashed
    assert hashed.record()["status"] == "completed"
    assert saved["access_token"] not in hashed.stdout + hashed.stderr

    out = await cli(*base, "logout")
    assert out.code == 0 and "logged out" in out.stdout
    assert not path.exists()
    again = await cli(*base, "--json", "logout")
    assert again.record() == {"logged_out": False}
    refused = await cli(*base, "hash", "compute", image)
    assert refused.code == ExitCode.UNAVAILABLE


async def test_login_errors(compute: LocalComputeService, auth: LocalAuthService) -> None:
    base = _base(compute, auth)
    wrong = await cli(*base, "login", "-u", "alice", "--password", "nope")
    assert wrong.code == ExitCode.UNAVAILABLE, wrong
    assert "Incorrect username or password" in wrong.stderr
    assert not _token_file().exists()
    no_password = await cli(*base, "login", "-u", "alice")  # stdin is not a terminal
    assert no_password.code == ExitCode.USAGE and "CL_PASSWORD" in no_password.stderr
    no_user = await cli(*base, "login")
    assert no_user.code == ExitCode.USAGE and "CL_USERNAME" in no_user.stderr
    local = await cli("--local", "login", "-u", "alice", "--password", "x")
    assert local.code == ExitCode.USAGE


async def test_login_from_the_environment(
    compute: LocalComputeService, auth: LocalAuthService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CL_USERNAME", "alice")
    monkeypatch.setenv("CL_PASSWORD", ALICE_PW)
    result = await cli(*_base(compute, auth), "--json", "login")
    assert result.code == 0, result
    user = result.record()["user"]
    assert isinstance(user, dict) and user["username"] == "alice"
    assert ALICE_PW not in _token_file().read_text()


@pytest.mark.slow
async def test_the_token_is_refreshed_across_a_long_command(
    compute: LocalComputeService, auth: LocalAuthService, tmp_path: Path
) -> None:
    base = _base(compute, auth)
    auth.token_lifetime = 2.0
    assert (await cli(*base, "login", "-u", "alice", "--password", ALICE_PW)).code == 0
    first = _saved()["access_token"]
    image = make_jpeg(tmp_path / "a.jpg", (40, 30))
    rule = compute.faults.block_jobs()

    async def release() -> None:
        await anyio.sleep(3.5)  # well past the first token's expiry
        rule.open()

    results: list[CliResult] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(release)
        results.append(await cli(*base, "--json", "hash", "compute", image))
    (result,) = results
    assert result.code == 0, result
    assert result.record()["status"] == "completed"
    assert auth.requests_to("/auth/token/refresh", "POST")
    assert len(auth.requests_to("/auth/token", "POST")) == 1  # no password was needed again
    latest = _saved()["access_token"]
    assert latest != first  # the renewed token was saved for the next command
    who = await cli(*base, "whoami")
    assert who.code == 0, who


async def test_an_expired_login_says_to_log_in_again(
    compute: LocalComputeService, auth: LocalAuthService, tmp_path: Path
) -> None:
    base = _base(compute, auth)
    assert (await cli(*base, "login", "-u", "alice", "--password", ALICE_PW)).code == 0
    path = _token_file()
    saved = _saved()
    saved["access_token"] = auth.issue_token("alice", lifetime=-5)
    path.write_text(json.dumps(saved))
    image = make_jpeg(tmp_path / "a.jpg", (40, 30))
    for args in (["hash", "compute", image], ["whoami"]):
        result = await cli(*base, *args)
        assert result.code == ExitCode.UNAVAILABLE, result
        assert "run 'cl-client login' again" in result.stderr
        assert "Traceback" not in result.stderr
    assert not compute.state.jobs


async def test_profiles_and_config_show(
    compute: LocalComputeService,
    auth: LocalAuthService,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (_config_dir() / "config.toml").write_text(
        "[profiles.lab]\n"
        f'compute_url = "{compute.compute_url}"\n'
        f'mqtt_url = "{compute.mqtt_url}"\n'
        f'auth_url = "{auth.url}/"\n'
        "[profiles.default]\n"
        'compute_url = "http://127.0.0.1:9"\n'
    )
    monkeypatch.setenv("CL_PASSWORD", ALICE_PW)
    shown = await cli("--profile", "lab", "--json", "config", "show")
    assert shown.code == 0, shown
    record = shown.record()
    assert record["compute_url"] == {"value": compute.compute_url, "source": "profile lab"}
    assert record["auth_url"] == {"value": auth.url, "source": "profile lab"}
    assert record["password"] == {"value": "(hidden)", "source": "env CL_PASSWORD"}
    assert record["profile"] == {"value": "lab", "source": "flag"}
    assert ALICE_PW not in shown.stdout + shown.stderr
    default = await cli("config", "show")
    assert "http://127.0.0.1:9  [profile default]" in default.stdout
    assert "mqtt_url" in default.stdout and "[default]" in default.stdout

    # the environment beats the profile, a flag beats both
    monkeypatch.setenv("CL_PROFILE", "lab")
    monkeypatch.setenv("COMPUTE_URL", "http://127.0.0.1:10")
    env = (await cli("--json", "config", "show")).record()
    assert env["compute_url"] == {"value": "http://127.0.0.1:10", "source": "env COMPUTE_URL"}
    flag = (await cli("--compute-url", "http://127.0.0.1:11", "--json", "config", "show")).record()
    assert flag["compute_url"] == {"value": "http://127.0.0.1:11", "source": "flag"}
    monkeypatch.delenv("COMPUTE_URL")

    # a login is saved per profile, and used only with it
    login = await cli("login", "-u", "alice")
    assert login.code == 0, login
    assert _token_file("lab").exists() and not _token_file().exists()
    assert "alice (token hidden)" in (await cli("config", "show")).stdout
    image = make_jpeg(tmp_path / "a.jpg", (40, 30))
    assert (await cli("hash", "compute", image)).code == 0
    monkeypatch.delenv("CL_PROFILE")
    record = (await cli("--json", "config", "show")).record()
    assert record["saved login"] == {"value": "(none)", "source": "-"}

    unknown = await cli("--profile", "nope", "config", "show")
    assert unknown.code == ExitCode.USAGE and "no profile 'nope'" in unknown.stderr
    (_config_dir() / "config.toml").write_text("[profiles.lab]\npassword = 'x'\n")
    secret = await cli("--profile", "lab", "config", "show")
    assert secret.code == ExitCode.USAGE and "may set" in secret.stderr
    (_config_dir() / "config.toml").write_text("not = [toml")
    broken = await cli("config", "show")
    assert broken.code == ExitCode.USAGE and "not valid TOML" in broken.stderr


async def test_guest_mode_needs_no_login(
    local_compute: LocalComputeService, tmp_path: Path
) -> None:
    image = make_jpeg(tmp_path / "a.jpg", (40, 30))
    result = await cli(*service_args(local_compute), "--json", "hash", "compute", image)
    assert result.code == 0, result


@pytest.mark.slow
async def test_login_and_whoami_as_processes(
    compute: LocalComputeService, auth: LocalAuthService, anyio_backend: str
) -> None:
    base = _base(compute, auth)
    env = {"CL_CLIENT_CONFIG_DIR": str(_config_dir()), "CL_PASSWORD": ADMIN_PW}
    login = await cli_process(*base, "-vv", "login", "-u", "admin", env=env, backend=anyio_backend)
    assert login.code == 0, login
    assert ADMIN_PW not in login.stdout + login.stderr
    who = await cli_process(*base, "--json", "whoami", env=env, backend=anyio_backend)
    assert who.code == 0, who
    user = who.record()["user"]
    assert isinstance(user, dict) and user["is_admin"] is True


# ----------------------------------------------------------------------- user administration


async def _login_admin(base: list[str]) -> None:
    login = await cli(*base, "login", "-u", "admin", "--password", ADMIN_PW)
    assert login.code == 0, login


@pytest.mark.slow
async def test_user_commands_send_what_they_say(
    compute: LocalComputeService, auth: LocalAuthService
) -> None:
    base = _base(compute, auth)
    await _login_admin(base)
    new_pw = "Carol-pw-123"
    created = await cli(
        *base,
        "--json",
        "user",
        "create",
        "carol",
        "--password",
        new_pw,
        "-p",
        "ai_inference_support",
        "-p",
        "media_store_read",
    )
    assert created.code == 0, created
    record = created.record()
    assert record["username"] == "carol" and record["is_admin"] is False
    (sent,) = auth.requests_to("/users/", "POST")
    assert sent.form == {
        "username": "carol",
        "password": new_pw,
        "is_admin": "false",
        "is_active": "true",
        "permissions": "ai_inference_support,media_store_read",
    }
    assert sent.headers["authorization"].startswith("Bearer ")
    carol_id = record["id"]
    assert isinstance(carol_id, int)

    listed = await cli(*base, "--json", "user", "list", "--skip", "1", "--limit", "5")
    assert listed.code == 0, listed
    assert "carol" in {r["username"] for r in listed.records()}
    (query,) = auth.requests_to("/users/", "GET")
    assert query.query == {"skip": "1", "limit": "5"}
    table = await cli(*base, "user", "list")
    assert "carol" in table.stdout and "media_store_read" in table.stdout

    got = await cli(*base, "--json", "user", "get", str(carol_id))
    assert got.record()["username"] == "carol"
    assert auth.requests_to(f"/users/{carol_id}", "GET")

    updated = await cli(
        *base, "--json", "user", "update", str(carol_id), "--admin", "--inactive",
        "--password", "Other-pw-1",
    )  # fmt: skip
    assert updated.code == 0, updated
    assert updated.record()["is_admin"] is True and updated.record()["is_active"] is False
    cleared = await cli(*base, "--json", "user", "update", str(carol_id), "--clear-permissions")
    assert cleared.record()["permissions"] == []
    replaced = await cli(
        *base, "--json", "user", "update", str(carol_id), "-p", "x", "--no-admin", "--active"
    )
    assert replaced.record()["permissions"] == ["x"] and replaced.record()["is_admin"] is False
    forms = [r.form for r in auth.requests_to(f"/users/{carol_id}", "PUT")]
    assert forms == [
        {"password": "Other-pw-1", "is_active": "false", "is_admin": "true"},
        {"permissions": ","},
        {"permissions": "x", "is_active": "true", "is_admin": "false"},
    ]

    refused = await cli(*base, "user", "delete", str(carol_id))  # no terminal to confirm on
    assert refused.code == ExitCode.FAILED and "--yes" in refused.stderr
    assert not auth.requests_to(f"/users/{carol_id}", "DELETE")
    deleted = await cli(*base, "user", "delete", str(carol_id), "--yes")
    assert deleted.code == 0 and f"deleted user {carol_id}" in deleted.stdout
    assert len(auth.requests_to(f"/users/{carol_id}", "DELETE")) == 1
    gone = await cli(*base, "user", "get", str(carol_id))
    assert gone.code == ExitCode.FAILED and "User not found" in gone.stderr
    duplicate = await cli(*base, "user", "create", "alice", "--password", "x")
    assert duplicate.code != 0 and "Username already registered" in duplicate.stderr


@pytest.mark.slow
async def test_user_commands_need_an_admin(
    compute: LocalComputeService, auth: LocalAuthService
) -> None:
    base = _base(compute, auth)
    nobody = await cli(*base, "user", "list")
    assert nobody.code == ExitCode.UNAVAILABLE and "cl-client login" in nobody.stderr
    assert (await cli(*base, "login", "-u", "alice", "--password", ALICE_PW)).code == 0
    for args in (["user", "list"], ["user", "create", "eve", "--password", "pw"]):
        result = await cli(*base, *args)
        assert result.code == ExitCode.UNAVAILABLE, result
        assert "The user doesn't have enough privileges" in result.stderr
    # --username logs in for one command, the saved login stays alice's
    as_admin = await cli(*base, "-u", "admin", "--password", ADMIN_PW, "--json", "user", "get", "1")
    assert as_admin.code == 0, as_admin
    assert _saved()["username"] == "alice"


async def test_user_usage_errors() -> None:
    both = await cli("user", "update", "3", "-p", "a", "--clear-permissions")
    assert both.code == ExitCode.USAGE and "contradict" in both.stderr
    nothing = await cli("user", "update", "3")
    assert nothing.code == ExitCode.USAGE and "nothing to change" in nothing.stderr
    no_password = await cli("user", "create", "dave")
    assert no_password.code == ExitCode.USAGE and "--password" in no_password.stderr


@pytest.mark.slow
async def test_server_guest_mode_uses_the_saved_login(
    compute: LocalComputeService, auth: LocalAuthService
) -> None:
    base = _base(compute, auth)
    assert (await cli(*base, "login", "-u", "alice", "--password", ALICE_PW)).code == 0
    refused = await cli(*base, "server", "guest-mode", "on")
    assert refused.code == ExitCode.UNAVAILABLE, refused
    assert not compute.guest_mode
    await _login_admin(base)
    switched = await cli(*base, "server", "guest-mode", "on")
    assert switched.code == 0, switched
    assert compute.guest_mode
