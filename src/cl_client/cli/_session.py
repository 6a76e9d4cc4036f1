"""``cl-client login``, ``logout``, ``whoami`` and ``config show``.

``login`` asks the auth service for a token and saves the *token* (never the password) for
the profile (:mod:`._config`); later commands send it, and the library's session refreshes it
(the renewed token is saved again). Once it can no longer be refreshed, commands fail with exit
code 3 and say to log in again.
"""

from __future__ import annotations

import getpass
import sys
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, TextIO, cast

import asyncclick as click

from ._command import AliasGroup, CliError, ExitCode, defer
from ._users import user_fields

if TYPE_CHECKING:
    from cl_client.auth import Token

    from ._context import App

__all__ = ["config_group", "login", "logout", "whoami"]


def _interactive() -> bool:
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):  # pragma: no cover - a closed stdin
        return False


def _ask(app: App, what: str, *, hidden: bool) -> str:
    if not _interactive():
        option = "--username / CL_USERNAME" if what == "Username" else "--password / CL_PASSWORD"
        raise CliError(f"{what.lower()} needed: pass {option}", ExitCode.USAGE)
    err = app.invocation.err
    if hidden:
        return getpass.getpass(f"{what}: ", stream=cast(TextIO, err))
    err.write(f"{what}: ")  # pragma: no cover - needs a terminal
    err.flush()  # pragma: no cover
    return sys.stdin.readline().strip()  # pragma: no cover


def _expiry(token: Token) -> str:
    when = token.expires_at
    return "never" if when is None else f"{when:%Y-%m-%d %H:%M:%S} UTC"


# ------------------------------------------------------------------------------------ login


@click.command("login")
@click.option("-u", "--username", help="The user (else the root --username / CL_USERNAME).")
@click.option(
    "--password", help="The password (else CL_PASSWORD; prompted for, hidden, if missing)."
)
@click.pass_context
async def login(ctx: click.Context, username: str | None, password: str | None) -> None:
    """Log in and save the token (never the password) for later commands of this profile."""

    async def work(app: App) -> ExitCode:
        from cl_client.auth import SessionManager

        from ._config import StoredSession, save_session

        settings = app.settings
        if settings.local:
            raise CliError("--local needs no login", ExitCode.USAGE)
        user = username or settings.username or _ask(app, "Username", hidden=False)
        secret = password if password is not None else settings.password
        if secret is None:
            secret = _ask(app, "Password", hidden=True)
        async with SessionManager(
            auth_url=settings.auth_url,
            compute_url=settings.compute_url,
            mqtt_url=settings.mqtt_url,
        ) as session:
            token = await session.login(user, secret, remember=False)
            me = await session.get_current_user()
        stored = StoredSession(
            access_token=token.access_token,
            username=user,
            auth_url=settings.auth_url,
            compute_url=settings.compute_url,
            mqtt_url=settings.mqtt_url,
        )
        path = save_session(settings.profile, stored)
        if app.output.json:
            app.output.json_line(
                {"user": user_fields(me), "expires_at": _expiry(token), "saved_to": str(path)}
            )
        else:
            admin = " (admin)" if me.is_admin else ""
            app.output.line(
                f"logged in to {settings.auth_url} as {me.username}{admin}; "
                f"the token expires {_expiry(token)}"
            )
            app.output.info(f"token saved to {path}")
        return ExitCode.OK

    defer(ctx, work, needs_server=False)


@click.command("logout")
@click.pass_context
async def logout(ctx: click.Context) -> None:
    """Forget the saved login of this profile (the server keeps no session to end)."""

    async def work(app: App) -> ExitCode:
        from ._config import delete_session

        removed = delete_session(app.settings.profile)
        if app.output.json:
            app.output.json_line({"logged_out": removed})
        else:
            app.output.line("logged out" if removed else "not logged in")
        return ExitCode.OK

    defer(ctx, work, needs_server=False)


@click.command("whoami")
@click.pass_context
async def whoami(ctx: click.Context) -> None:
    """Who the commands run as: user, permissions, admin flag, token expiry, servers."""

    async def work(app: App) -> ExitCode:
        settings = app.settings
        async with AsyncExitStack() as stack:
            found = await app.session(stack)
            if found is None:
                raise CliError(
                    f"not logged in to {settings.auth_url}: run 'cl-client login'",
                    ExitCode.UNAVAILABLE,
                )
            session, _ = found
            me = await session.get_current_user()
            token = session.token
        assert token is not None
        record: dict[str, object] = {
            "user": user_fields(me),
            "expires_at": _expiry(token),
            "auth_url": settings.auth_url,
            "compute_url": settings.compute_url,
            "mqtt_url": settings.mqtt_url,
            "profile": settings.profile or "default",
        }
        if app.output.json:
            app.output.json_line(record)
            return ExitCode.OK
        out = app.output
        out.line(f"user:        {me.username} (id {me.id})")
        out.line(f"admin:       {'yes' if me.is_admin else 'no'}")
        out.line(f"permissions: {', '.join(me.permissions) or '(none)'}")
        out.line(f"token:       expires {_expiry(token)}")
        out.line(f"auth:        {settings.auth_url}")
        out.line(f"compute:     {settings.compute_url}")
        out.line(f"mqtt:        {settings.mqtt_url}")
        out.line(f"profile:     {settings.profile or 'default'}")
        return ExitCode.OK

    defer(ctx, work)


# ----------------------------------------------------------------------------------- config

config_group = AliasGroup(
    "config",
    help="The settings in effect and where they come from.",
    context_settings={"help_option_names": ["-h", "--help"]},
)


@config_group.command("show")
@click.pass_context
async def config_show(ctx: click.Context) -> None:
    """Print the effective settings and where each came from (secrets hidden)."""

    async def work(app: App) -> ExitCode:
        from ._config import config_dir, config_file

        settings = app.settings
        rows: list[tuple[str, str, str]] = []
        for name in ("compute_url", "mqtt_url", "auth_url", "username", "backend"):
            value = cast(str | None, getattr(settings, name))
            rows.append((name, value if value is not None else "(none)", settings.source(name)))
        password = "(hidden)" if settings.password is not None else "(none)"
        rows.append(("password", password, settings.source("password")))
        rows.append(("profile", settings.profile or "default", settings.source("profile")))
        stored = app.stored_session()
        login = f"{stored.username} (token hidden)" if stored is not None else "(none)"
        rows.append(("saved login", login, "config dir" if stored is not None else "-"))
        rows.append(("config dir", str(config_dir()), "CL_CLIENT_CONFIG_DIR or platform"))
        rows.append(("config file", str(config_file()), "-"))
        if app.output.json:
            app.output.json_line(
                {name: {"value": value, "source": source} for name, value, source in rows}
            )
            return ExitCode.OK
        width = max(len(name) for name, _, _ in rows)
        for name, value, source in rows:
            app.output.line(f"{name:<{width}}  {value}  [{source}]")
        return ExitCode.OK

    defer(ctx, work, needs_server=False)
