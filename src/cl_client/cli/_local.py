"""``cl-client local serve``: the local compute service (and the auth service's twin) in the
foreground, so the command line and other programs can be tried without a server."""

from __future__ import annotations

import errno
import functools
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import asyncclick as click

from ._command import AliasGroup, CliError, ExitCode, defer

if TYPE_CHECKING:
    from ._context import App

__all__ = ["group"]

group = AliasGroup("local", help="Run the local compute service (no server needed).")


@dataclass(frozen=True)
class ServeOptions:
    host: str
    compute_port: int
    mqtt_port: int
    broker: str | None
    workers: int
    storage: Path | None
    auth: bool
    auth_port: int
    admin_username: str
    admin_password: str
    guest_mode: bool


_PORT = click.IntRange(0, 65535)


@group.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to listen on.")
@click.option(
    "--compute-port",
    type=_PORT,
    default=8002,
    show_default=True,
    help="The compute service's port (0: any free port).",
)
@click.option(
    "--mqtt-port",
    type=_PORT,
    default=1883,
    show_default=True,
    help="The embedded MQTT broker's port (0: any free port).",
)
@click.option(
    "--broker",
    metavar="URL",
    help="Use this MQTT broker (e.g. mosquitto at mqtt://127.0.0.1:1883) instead of the "
    "embedded one.",
)
@click.option(
    "--workers", type=click.IntRange(min=1), default=2, show_default=True, help="Workers."
)
@click.option(
    "--storage",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the jobs in this directory (default: a temporary one, removed at exit).",
)
@click.option(
    "--auth", is_flag=True, help="Also run the auth service's twin (guest mode then starts off)."
)
@click.option(
    "--auth-port",
    type=_PORT,
    default=8000,
    show_default=True,
    help="The auth service's port (0: any free port).",
)
@click.option("--admin-username", default="admin", show_default=True, help="With --auth.")
@click.option(
    "--admin-password",
    default="admin",
    show_default=True,
    envvar="CL_LOCAL_ADMIN_PASSWORD",
    show_envvar=True,
    help="With --auth.",
)
@click.option(
    "--guest-mode/--no-guest-mode",
    default=None,
    help="Start in guest mode (no token needed). [default: on, off with --auth]",
)
@click.pass_context
async def serve(
    ctx: click.Context,
    host: str,
    compute_port: int,
    mqtt_port: int,
    broker: str | None,
    workers: int,
    storage: Path | None,
    auth: bool,
    auth_port: int,
    admin_username: str,
    admin_password: str,
    guest_mode: bool | None,
) -> None:
    """Run the local compute service until Ctrl-C: real HTTP, a real MQTT broker, in-process
    workers for the nine plugins (emulated vectors for the ML plugins).

    Prints the URLs to use (export lines; --json: one object). The defaults are the real
    server's ports, so other cl-client commands find it without options.
    """
    options = ServeOptions(
        host=host,
        compute_port=compute_port,
        mqtt_port=mqtt_port,
        broker=broker,
        workers=workers,
        storage=storage,
        auth=auth,
        auth_port=auth_port,
        admin_username=admin_username,
        admin_password=admin_password,
        guest_mode=(not auth) if guest_mode is None else guest_mode,
    )
    defer(ctx, functools.partial(_serve, options), ends_on_interrupt=True, needs_server=False)


async def _serve(options: ServeOptions, app: App) -> ExitCode:
    import anyio

    try:
        from cl_client.testing import EmbeddedBroker, LocalAuthService, LocalComputeService
    except ImportError as exc:
        # cl_client.testing names the missing package and the install command
        raise CliError(str(exc), ExitCode.USAGE) from None
    out = app.output
    # Ctrl-C ends the wait below; the services then stop cleanly instead of being cancelled.
    with anyio.CancelScope(shield=True):
        async with AsyncExitStack() as stack:
            try:
                broker_url = options.broker
                if broker_url is None:
                    broker = EmbeddedBroker(host=options.host, port=options.mqtt_port)
                    broker_url = (await stack.enter_async_context(broker)).url
                public_key: str | None = None
                auth_url: str | None = None
                if options.auth:
                    auth = await stack.enter_async_context(
                        LocalAuthService(
                            admin_username=options.admin_username,
                            admin_password=options.admin_password,
                            host=options.host,
                            port=options.auth_port,
                        )
                    )
                    public_key, auth_url = auth.public_key_pem, auth.url
                service = await stack.enter_async_context(
                    LocalComputeService(
                        broker_url,
                        workers=options.workers,
                        guest_mode=options.guest_mode,
                        public_key_pem=public_key,
                        storage_dir=options.storage,
                        host=options.host,
                        port=options.compute_port,
                    )
                )
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise CliError(
                        f"a port is already in use ({exc.strerror}): choose others with "
                        "--compute-port, --mqtt-port, --auth-port (0: any free port)",
                        ExitCode.USAGE,
                    ) from None
                raise
            urls = {
                "compute_url": service.compute_url,
                "mqtt_url": service.mqtt_url,
                "auth_url": auth_url,
            }
            if out.json:
                out.json_line(
                    {**urls, "workers": options.workers, "guest_mode": options.guest_mode}
                )
            else:
                out.line(f"export COMPUTE_URL={service.compute_url}")
                out.line(f"export MQTT_URL={service.mqtt_url}")
                if auth_url is not None:
                    out.line(f"export AUTH_URL={auth_url}")
            mode = "on" if options.guest_mode else "off"
            admin = f"; admin user {options.admin_username!r}" if options.auth else ""
            out.info(
                f"local compute service: {options.workers} worker(s), guest mode {mode}{admin}. "
                "Ctrl-C stops it."
            )
            await app.wait_interrupted()
            out.info("stopping")
    return ExitCode.OK
