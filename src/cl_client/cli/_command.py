"""Command-line plumbing that must stay cheap to import: exit codes, the root options, lazy
groups that accept both ``snake_case`` and ``kebab-case`` names, and deferred commands.

A command's callback does no I/O: it records its *work* (an async function of the
:class:`~cl_client.cli._context.App`) on the :class:`Invocation`. Parsing therefore never
needs an event loop, so ``--help``, ``--version``, shell completion and usage errors cost only
the import of asyncclick, and the work runs afterwards on the backend that ``--backend`` chose.
Nothing here imports httpx, pydantic, rich, anyio or the MQTT stack.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import IO, TYPE_CHECKING, Final, cast
from urllib.parse import urlsplit

import asyncclick as click

if TYPE_CHECKING:
    from ._context import App

__all__ = [
    "BACKENDS",
    "DEFAULTS",
    "ENV_VARS",
    "AliasGroup",
    "CliError",
    "ExitCode",
    "Invocation",
    "LazyGroup",
    "RootOptions",
    "Work",
    "defer",
    "invocation",
]


class ExitCode(IntEnum):
    """The documented exit codes of ``cl-client``."""

    OK = 0
    """Everything succeeded."""
    FAILED = 1
    """Some job failed or timed out (or what was asked for does not exist)."""
    USAGE = 2
    """A bad option or argument, a missing file: nothing was sent."""
    UNAVAILABLE = 3
    """The compute service, the broker or the auth service cannot be reached, or refused the
    credentials."""
    INTERRUPTED = 130
    """Stopped by Ctrl-C (SIGINT)."""


class CliError(Exception):
    """An error for the user: one line on stderr and an exit code (never a traceback)."""

    def __init__(self, message: str, code: ExitCode = ExitCode.FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


Work = Callable[["App"], Awaitable[ExitCode]]
"""What a command does once the arguments are parsed: runs on the chosen backend."""

BACKENDS: Final = ("asyncio", "trio")

DEFAULTS: Final[Mapping[str, str]] = {
    "compute_url": "http://localhost:8002",
    "mqtt_url": "mqtt://localhost:1883",
    "auth_url": "http://localhost:8000",
    "backend": "asyncio",
}
"""Built-in defaults of the root settings (the real CL Server's; checked against the library's
settings by the tests)."""

ENV_VARS: Final[Mapping[str, str]] = {
    "compute_url": "COMPUTE_URL",
    "mqtt_url": "MQTT_URL",
    "auth_url": "AUTH_URL",
    "username": "CL_USERNAME",
    "password": "CL_PASSWORD",
    "backend": "CL_CLIENT_BACKEND",
    "profile": "CL_PROFILE",
}
"""The environment variable of each root setting that has one."""


@dataclass
class RootOptions:
    """The root options as given: ``None`` where neither a flag nor the environment said.

    ``sources`` says where each given value came from (``"flag"`` or ``"env NAME"``). The
    runtime (:class:`~cl_client.cli._context.Settings`) fills the gaps from the defaults.
    """

    compute_url: str | None = None
    mqtt_url: str | None = None
    auth_url: str | None = None
    username: str | None = None
    password: str | None = None
    no_auth: bool = False
    no_mqtt: bool = False
    local: bool = False
    json: bool = False
    backend: str | None = None
    verbose: int = 0
    quiet: bool = False
    profile: str | None = None
    """The configuration profile asked for (``--profile`` / ``CL_PROFILE``)."""
    sources: dict[str, str] = field(default_factory=dict[str, str])


@dataclass
class Invocation:
    """One run of ``cl-client``: what parsing decided, and where output goes."""

    stdout: IO[str] | None = None
    stderr: IO[str] | None = None
    root: RootOptions = field(default_factory=RootOptions)
    work: Work | None = None
    command: str = ""
    """The command path, e.g. ``hash compute``."""
    ends_on_interrupt: bool = False
    """Whether Ctrl-C is this command's normal end (``local serve``, ``workers watch``): it then
    exits 0 instead of 130."""
    needs_server: bool = True
    """Whether the command talks to the server: a password is prompted for if needed, and
    ``--local`` starts the local service first."""

    @property
    def out(self) -> IO[str]:
        return self.stdout if self.stdout is not None else sys.stdout

    @property
    def err(self) -> IO[str]:
        return self.stderr if self.stderr is not None else sys.stderr


def invocation(ctx: click.Context) -> Invocation:
    """The Invocation this context belongs to."""
    found = ctx.find_object(Invocation)
    if found is None:  # pragma: no cover - the entry points always provide one
        raise RuntimeError("cl-client commands must be run through cl_client.cli.run()")
    return found


def defer(
    ctx: click.Context,
    work: Work,
    *,
    ends_on_interrupt: bool = False,
    needs_server: bool = True,
) -> None:
    """Record the command's work; it runs after parsing, on the chosen backend."""
    inv = invocation(ctx)
    inv.work = work
    inv.command = ctx.command_path.partition(" ")[2]
    inv.ends_on_interrupt = ends_on_interrupt
    inv.needs_server = needs_server


# ------------------------------------------------------------------------------------ groups


def _spellings(name: str) -> list[str]:
    return list(dict.fromkeys([name, name.replace("-", "_"), name.replace("_", "-")]))


class AliasGroup(click.Group):
    """A group whose command names may be written with ``_`` or ``-`` (``generate-manifest``,
    ``generate_manifest``); help lists each command once, as it was defined."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        for name in _spellings(cmd_name):
            command = super().get_command(ctx, name)
            if command is not None:
                return command
        return None

    async def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            name, command, rest = await super().resolve_command(ctx, args)
        except click.exceptions.NoSuchCommand as exc:
            # Lazy groups have no ``self.commands`` to suggest from: give the real names.
            raise click.exceptions.NoSuchCommand(
                args[0], possibilities=self.list_commands(ctx), ctx=ctx
            ) from exc
        # The canonical name, so ``ctx.command_path`` reads the same for either spelling.
        return (command.name if command is not None else name), command, rest


@dataclass(frozen=True, slots=True)
class LazyCommand:
    """Where a subcommand lives, and its one-line help (shown without importing it)."""

    module: str
    attribute: str
    short_help: str


class LazyGroup(AliasGroup):
    """A group whose subcommands are imported only when they are used (or completed).

    ``cl-client --help`` lists them from :attr:`lazy` without importing any command module.
    """

    lazy: dict[str, LazyCommand]
    """Subcommands not imported yet, by name (set right after the group is made)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        for name in _spellings(cmd_name):
            spec = self.lazy.get(name)
            if spec is not None:
                return self._load(name, spec)
        return super().get_command(ctx, cmd_name)

    def _load(self, name: str, spec: LazyCommand) -> click.Command:
        module = importlib.import_module(spec.module, __package__)
        command = cast(object, getattr(module, spec.attribute))
        if not isinstance(command, click.Command):  # pragma: no cover - a registry mistake
            raise TypeError(f"{spec.module}.{spec.attribute} is not a click command")
        self.commands[name] = command
        del self.lazy[name]
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows: list[tuple[str, str]] = []
        for name in self.list_commands(ctx):
            spec = self.lazy.get(name)
            if spec is not None:
                rows.append((name, spec.short_help))
                continue
            command = super().get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(formatter.width - 6 - len(name))))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


# ------------------------------------------------------------------------------- validators


def check_http_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``http(s)://host[:port]`` or a usage error naming the option."""
    del ctx
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise click.BadParameter(f"{value!r} is not an http(s)://host:port URL", param=param)
    return value.rstrip("/")


def check_mqtt_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``mqtt[s]://host[:port]`` (or ``host[:port]``), or a usage error naming the option."""
    del ctx
    if value is None:
        return None
    text = value if "://" in value else f"mqtt://{value}"
    parts = urlsplit(text)
    try:
        _ = parts.port
    except ValueError:
        raise click.BadParameter(f"{value!r} has an invalid port", param=param) from None
    if parts.scheme.lower() not in ("mqtt", "mqtts", "tcp", "ssl") or not parts.hostname:
        raise click.BadParameter(f"{value!r} is not an mqtt://host:port URL", param=param)
    return value
