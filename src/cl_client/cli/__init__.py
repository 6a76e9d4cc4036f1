"""``cl-client``: the command line of cl-client.

::

    cl-client hash compute photos/ -r --json | jq -r .result.hash_value
    cl-client --local media_thumbnail generate *.jpg -o thumbs/ --width 256

Entry points: :func:`main` (the ``cl-client`` script and ``python -m cl_client``) and
:func:`run` (the same, awaited inside a running event loop: for tests and embedding). Every
command group lives in its own module and is imported only when used; :mod:`._command` holds the
cheap plumbing (exit codes, root options, lazy groups) and :mod:`._context` the shared runtime
(settings precedence, building the client, output, mapping errors to exit codes).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Coroutine, Sequence
from typing import IO, NoReturn, TypeVar, cast

import asyncclick as click

from ._command import (
    BACKENDS,
    DEFAULTS,
    ENV_VARS,
    ExitCode,
    Invocation,
    LazyCommand,
    LazyGroup,
    RootOptions,
    check_http_url,
    check_mqtt_url,
    invocation,
)

__all__ = ["ExitCode", "cli", "main", "run"]

PROG_NAME = "cl-client"

_PLUGIN_GROUPS: dict[str, LazyCommand] = {
    "clip_embedding": LazyCommand(
        "._embedding", "clip_group", "512-d MobileCLIP image embeddings: embed"
    ),
    "dino_embedding": LazyCommand(
        "._embedding", "dino_group", "384-d DINOv2 image embeddings: embed"
    ),
    "exif": LazyCommand("._exif", "group", "EXIF and other metadata of media files: extract"),
    "face_detection": LazyCommand(
        "._face_detection", "group", "Faces with boxes, landmarks and crops: detect"
    ),
    "face_embedding": LazyCommand(
        "._embedding", "face_group", "512-d ArcFace embeddings of face crops: embed"
    ),
    "hash": LazyCommand("._hash", "group", "sha512 or md5 digests of files: compute"),
    "hls_streaming": LazyCommand(
        "._hls_streaming", "group", "Adaptive HLS streams of videos: generate-manifest"
    ),
    "image_conversion": LazyCommand(
        "._image_conversion", "group", "Convert images to png, jpg, webp, ...: convert"
    ),
    "media_thumbnail": LazyCommand(
        "._media_thumbnail", "group", "JPEG thumbnails of images and videos: generate"
    ),
}
_OTHER_GROUPS: dict[str, LazyCommand] = {
    "login": LazyCommand("._session", "login", "Log in and save the token for later commands"),
    "logout": LazyCommand("._session", "logout", "Forget the saved login"),
    "whoami": LazyCommand("._session", "whoami", "The logged-in user, permissions, token expiry"),
    "config": LazyCommand("._session", "config_group", "The effective settings: show"),
    "journal": LazyCommand("._journal", "group", "What a --journal FILE holds: show"),
    "user": LazyCommand(
        "._users", "group", "User administration (admin): create, list, get, update, delete"
    ),
    "job": LazyCommand("._job", "group", "Follow, fetch, download and delete jobs by id"),
    "local": LazyCommand("._local", "group", "Run the local compute service (no server needed)"),
    "server": LazyCommand("._server", "group", "Server health, auth mode, storage and cleanup"),
    "workers": LazyCommand("._workers", "group", "List, watch and wait for workers"),
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cl-client")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    del param
    if value and not ctx.resilient_parsing:
        click.echo(f"{PROG_NAME} {_version()}", file=invocation(ctx).out)
        raise click.exceptions.Exit(0)


@click.group(
    PROG_NAME,
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="Plugin groups and verbs accept '-' or '_' (clip-embedding or clip_embedding). "
    "Exit codes: 0 ok, 1 a job failed or timed out, 2 usage error, 3 server/broker/auth "
    "unreachable or credentials refused (or the login expired), 130 interrupted. Settings: "
    "flags > environment > the profile in the config file > defaults (cl-client config show).",
)
@click.option(
    "--compute-url",
    envvar=ENV_VARS["compute_url"],
    show_envvar=True,
    metavar="URL",
    callback=check_http_url,
    help=f"The compute service. [default: {DEFAULTS['compute_url']}]",
)
@click.option(
    "--mqtt-url",
    envvar=ENV_VARS["mqtt_url"],
    show_envvar=True,
    metavar="URL",
    callback=check_mqtt_url,
    help=f"The MQTT broker (mqtt:// or mqtts://). [default: {DEFAULTS['mqtt_url']}]",
)
@click.option(
    "--auth-url",
    envvar=ENV_VARS["auth_url"],
    show_envvar=True,
    metavar="URL",
    callback=check_http_url,
    help=f"The auth service. [default: {DEFAULTS['auth_url']}]",
)
@click.option(
    "-u",
    "--username",
    envvar=ENV_VARS["username"],
    show_envvar=True,
    help="Log in as this user (needed when the server is not in guest mode).",
)
@click.option(
    "--password",
    envvar=ENV_VARS["password"],
    show_envvar=True,
    help="The password (prompted for, hidden, when a username is given without one).",
)
@click.option(
    "--profile",
    envvar=ENV_VARS["profile"],
    show_envvar=True,
    metavar="NAME",
    help="Use the server URLs of this profile of the config file (and its saved login). "
    "[default: default]",
)
@click.option("--no-auth", is_flag=True, help="Send no credentials, even if CL_USERNAME is set.")
@click.option("--no-mqtt", is_flag=True, help="Follow jobs by HTTP polling only (no broker).")
@click.option(
    "--local",
    is_flag=True,
    help="Start the embedded local compute service for this command (needs the 'local' extra).",
)
@click.option(
    "--json", "json_output", is_flag=True, help="Results as JSON on stdout (NDJSON for many)."
)
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    envvar=ENV_VARS["backend"],
    show_envvar=True,
    help=f"The async backend everything runs on. [default: {DEFAULTS['backend']}]",
)
@click.option(
    "-v", "--verbose", count=True, help="Log to stderr (-vv: debug); tracebacks on errors."
)
@click.option("-q", "--quiet", is_flag=True, help="No progress or messages on stderr.")
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version and exit.",
)
@click.pass_context
async def cli(
    ctx: click.Context,
    compute_url: str | None,
    mqtt_url: str | None,
    auth_url: str | None,
    username: str | None,
    password: str | None,
    profile: str | None,
    no_auth: bool,
    no_mqtt: bool,
    local: bool,
    json_output: bool,
    backend: str | None,
    verbose: int,
    quiet: bool,
) -> None:
    """Submit media and ML jobs to a CL Server compute service, many files at once, and follow
    them live. Results go to stdout (--json: one JSON object per input), progress and errors to
    stderr."""
    sources: dict[str, str] = {}
    for name in (
        "compute_url",
        "mqtt_url",
        "auth_url",
        "username",
        "password",
        "backend",
        "profile",
    ):
        source = ctx.get_parameter_source(name)
        if source is click.core.ParameterSource.COMMANDLINE:
            sources[name] = "flag"
        elif source is click.core.ParameterSource.ENVIRONMENT:
            sources[name] = f"env {ENV_VARS[name]}"
    if local:
        clashing = [
            f"--{name.replace('_', '-')}"
            for name in ("compute_url", "mqtt_url", "username")
            if sources.get(name) == "flag"
        ]
        if clashing:
            raise click.UsageError(
                f"--local starts its own service: drop {' and '.join(clashing)}", ctx=ctx
            )
    if no_auth and sources.get("username") == "flag":
        raise click.UsageError("--no-auth and --username contradict each other", ctx=ctx)
    invocation(ctx).root = RootOptions(
        compute_url=compute_url,
        mqtt_url=mqtt_url,
        auth_url=auth_url,
        username=username,
        password=password,
        no_auth=no_auth,
        no_mqtt=no_mqtt,
        local=local,
        json=json_output,
        backend=backend,
        verbose=verbose,
        quiet=quiet,
        profile=profile,
        sources=sources,
    )


cli.lazy = {**_PLUGIN_GROUPS, **_OTHER_GROUPS}


# ------------------------------------------------------------------------------- entry points

T = TypeVar("T")


class _Suspended(Exception):
    """Parsing tried to wait for something: it must run inside an event loop."""


def _drive(coro: Coroutine[object, object, T]) -> T:
    """Run a coroutine that never suspends (click parsing) without an event loop."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value  # pyright: ignore[reportAny]
    coro.close()
    raise _Suspended


async def _parse(args: Sequence[str], inv: Invocation) -> ExitCode | None:
    """Parse the command line into ``inv``. Returns an exit code when there is nothing to
    run (help, version, a usage error), None when ``inv.work`` is ready."""
    try:
        # Help and completion output is echoed to sys.stdout: send it where the caller said.
        with contextlib.redirect_stdout(inv.out):
            result = cast(
                object,
                await cli.main(list(args), prog_name=PROG_NAME, standalone_mode=False, obj=inv),
            )
    except click.ClickException as exc:
        exc.show(file=inv.err)
        return ExitCode.USAGE if exc.exit_code == 2 else ExitCode(exc.exit_code)
    except click.Abort:
        print(file=inv.err)
        return ExitCode.INTERRUPTED
    except SystemExit as exc:  # shell completion ends this way
        return ExitCode.OK if not exc.code else ExitCode.FAILED
    if inv.work is None:
        return ExitCode(result) if isinstance(result, int) else ExitCode.OK
    return None


async def run(
    args: Sequence[str], *, stdout: IO[str] | None = None, stderr: IO[str] | None = None
) -> int:
    """Run ``cl-client args`` inside the running event loop and return its exit code.

    ``--backend`` is not used (the caller's loop is), and no signal handlers are installed.
    """
    inv = Invocation(stdout=stdout, stderr=stderr)
    code = await _parse(args, inv)
    if code is not None:
        return int(code)
    from ._context import execute

    return int(await execute(inv, handle_signals=False))


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """The ``cl-client`` script: parse without an event loop, then run on the chosen backend."""
    args = list(sys.argv[1:] if argv is None else argv)
    inv = Invocation()
    try:
        code = _drive(_parse(args, inv))
    except _Suspended:  # pragma: no cover - no cl-client option waits while parsing
        inv = Invocation()
        code = None
    except KeyboardInterrupt:
        sys.exit(ExitCode.INTERRUPTED)
    if code is not None:
        sys.exit(code)
    from ._context import run_main

    sys.exit(run_main(inv, args))
