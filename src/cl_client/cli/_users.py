"""``cl-client user ...``: user administration on the auth service (admin only).

Every call goes through the command's session (the saved ``cl-client login`` or
``--username``); the server's answer decides: a non-admin gets its 403 message and exit code 3.
Tables for people, one JSON object per user with ``--json``.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import AsyncGenerator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, TextIO, cast

import asyncclick as click

from ._command import AliasGroup, CliError, ExitCode, defer

if TYPE_CHECKING:
    from cl_client.auth import AuthClient, User

    from ._context import App

__all__ = ["group", "user_fields"]

group = AliasGroup(
    "user",
    help="User administration on the auth service (admin only).",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _interactive() -> bool:
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):  # pragma: no cover - a closed stdin
        return False


def _new_password(app: App, username: str) -> str:  # pragma: no cover - needs a terminal
    if not _interactive():
        raise CliError("the new user's password is needed: pass --password", ExitCode.USAGE)
    err = cast(TextIO, app.invocation.err)
    first = getpass.getpass(f"Password for the new user {username}: ", stream=err)
    second = getpass.getpass("Repeat it: ", stream=err)
    if first != second:
        raise CliError("the passwords differ", ExitCode.USAGE)
    return first


@asynccontextmanager
async def _admin(app: App) -> AsyncGenerator[AuthClient]:
    """The auth client of the command's session (exit 3 when there is none)."""
    async with AsyncExitStack() as stack:
        found = await app.session(stack)
        if found is None:
            raise CliError(
                f"user administration needs a login to {app.settings.auth_url}: run "
                "'cl-client login' (as an admin) or pass --username",
                ExitCode.UNAVAILABLE,
            )
        yield found[0].auth_client


def user_fields(user: User) -> dict[str, object]:
    """A user as a JSON object (``--json`` of ``user`` commands, ``login`` and ``whoami``)."""
    return {
        "id": user.id,
        "username": user.username,
        "is_admin": user.is_admin,
        "is_active": user.is_active,
        "permissions": list(user.permissions),
        "created_at": user.created_at.isoformat() if user.created_at is not None else None,
    }


def _show(app: App, users: Sequence[User]) -> None:
    out = app.output
    if out.json:
        for user in users:
            out.json_line(user_fields(user))
        return
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False)
    for column in ("id", "username", "admin", "active", "permissions", "created"):
        table.add_column(column, overflow="fold")
    for user in users:
        table.add_row(
            str(user.id),
            user.username,
            "yes" if user.is_admin else "no",
            "yes" if user.is_active else "no",
            ", ".join(user.permissions) or "-",
            f"{user.created_at:%Y-%m-%d %H:%M}" if user.created_at is not None else "-",
        )
    out.console.print(table)


@group.command("create")
@click.argument("username")
@click.option("--password", help="The new user's password (prompted for, hidden, if missing).")
@click.option("--admin", is_flag=True, help="Make the user an admin.")
@click.option("--inactive", is_flag=True, help="Create the user disabled.")
@click.option(
    "-p",
    "--permission",
    "permissions",
    multiple=True,
    metavar="P",
    help="A permission (repeatable).",
)
@click.pass_context
async def create(
    ctx: click.Context,
    username: str,
    password: str | None,
    admin: bool,
    inactive: bool,
    permissions: tuple[str, ...],
) -> None:
    """Create the user USERNAME."""

    async def work(app: App) -> ExitCode:
        secret = password if password is not None else _new_password(app, username)
        async with _admin(app) as auth:
            user = await auth.create_user(
                username,
                secret,
                permissions=permissions,
                is_admin=admin,
                is_active=not inactive,
            )
        _show(app, [user])
        return ExitCode.OK

    defer(ctx, work)


@group.command("list")
@click.option("--skip", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.pass_context
async def list_users(ctx: click.Context, skip: int, limit: int) -> None:
    """List the users (--skip/--limit page through them)."""

    async def work(app: App) -> ExitCode:
        async with _admin(app) as auth:
            users = await auth.list_users(skip=skip, limit=limit)
        _show(app, users)
        return ExitCode.OK

    defer(ctx, work)


@group.command("get")
@click.argument("user_id", type=int, metavar="ID")
@click.pass_context
async def get(ctx: click.Context, user_id: int) -> None:
    """Show the user ID."""

    async def work(app: App) -> ExitCode:
        async with _admin(app) as auth:
            user = await auth.get_user(user_id)
        _show(app, [user])
        return ExitCode.OK

    defer(ctx, work)


@group.command("update")
@click.argument("user_id", type=int, metavar="ID")
@click.option("--password", help="A new password.")
@click.option(
    "-p",
    "--permission",
    "permissions",
    multiple=True,
    metavar="P",
    help="Replace the permissions with these (repeatable).",
)
@click.option("--clear-permissions", is_flag=True, help="Remove every permission.")
@click.option("--admin/--no-admin", default=None, help="Grant or revoke admin.")
@click.option("--active/--inactive", default=None, help="Enable or disable the user.")
@click.pass_context
async def update(
    ctx: click.Context,
    user_id: int,
    password: str | None,
    permissions: tuple[str, ...],
    clear_permissions: bool,
    admin: bool | None,
    active: bool | None,
) -> None:
    """Change the user ID: only what is given changes."""
    if permissions and clear_permissions:
        raise click.UsageError("--permission and --clear-permissions contradict each other")
    new_permissions: list[str] | None = (
        [] if clear_permissions else list(permissions) if permissions else None
    )
    if password is None and new_permissions is None and admin is None and active is None:
        raise click.UsageError(
            "nothing to change: give --password, --permission, --clear-permissions, "
            "--admin/--no-admin or --active/--inactive"
        )

    async def work(app: App) -> ExitCode:
        async with _admin(app) as auth:
            user = await auth.update_user(
                user_id,
                password=password,
                permissions=new_permissions,
                is_admin=admin,
                is_active=active,
            )
        _show(app, [user])
        return ExitCode.OK

    defer(ctx, work)


@group.command("delete")
@click.argument("user_id", type=int, metavar="ID")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
async def delete(ctx: click.Context, user_id: int, yes: bool) -> None:
    """Delete the user ID (asks first, unless --yes)."""

    async def work(app: App) -> ExitCode:
        if not yes and not _interactive():
            raise CliError(f"deleting user {user_id} needs --yes (no terminal to ask on)")
        async with _admin(app) as auth:
            if not yes:  # pragma: no cover - needs a terminal
                user = await auth.get_user(user_id)
                err = app.invocation.err
                err.write(f"Delete user {user.id} ({user.username})? [y/N] ")
                err.flush()
                if sys.stdin.readline().strip().lower() not in ("y", "yes"):
                    app.output.info("not deleted")
                    return ExitCode.FAILED
            await auth.delete_user(user_id)
        if app.output.json:
            app.output.json_line({"deleted": user_id})
        else:
            app.output.line(f"deleted user {user_id}")
        return ExitCode.OK

    defer(ctx, work)
