"""``cl-client server info|config|guest-mode|storage|cleanup``: the compute service itself.

The admin commands (all but ``info``) need an admin login when guest mode is off; the server's
answer decides (a refusal is exit code 3 with the server's message).
"""

from __future__ import annotations

import functools
import sys
from datetime import datetime
from typing import TYPE_CHECKING

import asyncclick as click

from ._command import AliasGroup, CliError, ExitCode, defer

if TYPE_CHECKING:
    from ._context import App

__all__ = ["group"]

group = AliasGroup("server", help="Server health, auth mode, storage and cleanup.")


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"  # pragma: no cover - the loop always returns


def _pairs(app: App, values: dict[str, object], rows: list[tuple[str, str]]) -> None:
    """``--json``: ``values`` as one object; people: ``rows`` as aligned key/value lines."""
    out = app.output
    if out.json:
        out.json_line(values)
        return
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        out.line(f"{key:<{width}}  {value}")


@group.command("info")
@click.pass_context
async def info(ctx: click.Context) -> None:
    """Health, version and auth mode (GET /)."""
    defer(ctx, _info)


async def _info(app: App) -> ExitCode:
    async with app.open_client(mqtt=False, login_required=False) as client:
        server = await client.server_info()
        url = client.settings.compute_url
    _pairs(
        app,
        {**server.model_dump(mode="json", by_alias=True), "auth_required": server.auth_required},
        [
            ("url", url),
            ("status", server.status or "-"),
            ("service", server.service or "-"),
            ("version", server.version or "-"),
            ("guest mode", server.guest_mode or "-"),
            ("auth required", "yes" if server.auth_required else "no"),
        ],
    )
    return ExitCode.OK


@group.command("config")
@click.pass_context
async def config(ctx: click.Context) -> None:
    """The compute service's configuration (admin)."""
    defer(ctx, _config)


def _config_rows(
    guest_mode: bool, updated_at: int | None, updated_by: str | None
) -> list[tuple[str, str]]:
    when = (
        datetime.fromtimestamp(updated_at / 1000).isoformat(sep=" ", timespec="seconds")
        if updated_at is not None
        else "-"
    )
    return [
        ("guest mode", "on" if guest_mode else "off"),
        ("updated", when),
        ("updated by", updated_by or "-"),
    ]


async def _config(app: App) -> ExitCode:
    async with app.open_client(mqtt=False) as client:
        current = await client.get_config()
    _pairs(
        app,
        current.model_dump(mode="json"),
        _config_rows(current.guest_mode, current.updated_at, current.updated_by),
    )
    return ExitCode.OK


@group.command("guest-mode")
@click.argument("state", required=False, type=click.Choice(["on", "off"], case_sensitive=False))
@click.pass_context
async def guest_mode(ctx: click.Context, state: str | None) -> None:
    """Show guest mode, or switch it on (no token needed) or off (tokens required) (admin)."""
    defer(ctx, functools.partial(_guest_mode, None if state is None else state.lower() == "on"))


async def _guest_mode(enabled: bool | None, app: App) -> ExitCode:
    async with app.open_client(mqtt=False) as client:
        if enabled is None:
            current = await client.get_config()
        else:
            current = await client.set_guest_mode(enabled)
    _pairs(
        app,
        current.model_dump(mode="json"),
        _config_rows(current.guest_mode, current.updated_at, current.updated_by),
    )
    return ExitCode.OK


@group.command("storage")
@click.pass_context
async def storage(ctx: click.Context) -> None:
    """How much the stored jobs take (admin)."""
    defer(ctx, _storage)


async def _storage(app: App) -> ExitCode:
    async with app.open_client(mqtt=False) as client:
        used = await client.storage_info()
    _pairs(
        app,
        used.model_dump(mode="json"),
        [
            ("jobs", str(used.job_count)),
            ("size", f"{_size(used.total_size)} ({used.total_size} B)"),
        ],
    )
    return ExitCode.OK


@group.command("cleanup")
@click.option(
    "--days",
    type=click.IntRange(min=0),
    required=True,
    help="Delete the jobs older than this many days.",
)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
async def cleanup(ctx: click.Context, days: int, yes: bool) -> None:
    """Delete the jobs older than --days days, with their files (admin).

    Asks for confirmation on a terminal; elsewhere --yes is needed.
    """
    if not yes:
        if not sys.stdin.isatty():
            raise click.UsageError("cleanup deletes jobs: confirm with --yes", ctx=ctx)
        if not click.confirm(f"Delete every job older than {days} day(s)?", err=True):
            raise click.Abort
    defer(ctx, functools.partial(_cleanup, days))


async def _cleanup(days: int, app: App) -> ExitCode:
    async with app.open_client(mqtt=False) as client:
        done = await client.cleanup(days=days)
    if done.deleted_count < 0:  # pragma: no cover - a server bug
        raise CliError("the server reported a negative count")
    _pairs(
        app,
        done.model_dump(mode="json"),
        [("deleted", f"{done.deleted_count} job(s)"), ("freed", _size(done.freed_space))],
    )
    return ExitCode.OK
