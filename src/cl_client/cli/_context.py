"""The shared runtime of every command: settings precedence, building the client, output, and
mapping errors to exit codes.

Imported only once a command is about to run (never for ``--help``). The pieces, in the order
a command meets them:

* :class:`Settings`: the root options resolved ``flags > environment > layers > defaults``,
  remembering where each value came from. ``layers`` holds the profile of the config file
  (:mod:`._config`), between the environment and the defaults.
* :class:`~._output.Output` (in ``_output.py``): results on stdout (one JSON object per line with
  ``--json``), messages, progress and logs on stderr, rich rendering only on a terminal.
* :meth:`App.open_client`: the one way to get a connected
  :class:`~cl_client.ComputeClient` (starting the local service for ``--local``, logging in
  with ``--username``, or else using the profile's saved ``cl-client login``), failing with
  exit code 3 and one clear line when something cannot be reached or refuses the credentials.
* :func:`execute` / :func:`run_main`: run a command's work on the chosen backend, turn Ctrl-C
  into a clean cancellation (exit 130) and every error into one line and an exit code
  (a traceback only with ``--verbose``).
"""

from __future__ import annotations

import functools
import getpass
import logging
import os
import signal
import sys
from collections.abc import AsyncGenerator, Callable, Generator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, cast

import anyio
import anyio.abc

from .._core.groups import unwrap_group
from ._command import DEFAULTS, CliError, ExitCode, Invocation, RootOptions
from ._output import Output, is_tty, logging_to_stderr

if TYPE_CHECKING:
    from cl_client import ComputeClient
    from cl_client.auth import AuthProvider, SessionManager

    from ._config import StoredSession

__all__ = [
    "App",
    "Output",
    "Settings",
    "describe_error",
    "execute",
    "run_main",
]

logger = logging.getLogger("cl_client.cli")

# ---------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    """The effective root settings of one command, and where each value came from."""

    compute_url: str
    mqtt_url: str
    auth_url: str
    username: str | None
    password: str | None
    no_auth: bool
    mqtt_enabled: bool
    local: bool
    json: bool
    backend: str
    verbose: int
    quiet: bool
    profile: str | None = None
    """The profile asked for (None: ``default``)."""
    sources: Mapping[str, str] = field(default_factory=dict[str, str])
    """Per setting: ``"flag"``, ``"env NAME"``, a layer's name, or ``"default"``."""

    @classmethod
    def resolve(
        cls, root: RootOptions, layers: Sequence[tuple[str, Mapping[str, str]]] = ()
    ) -> Settings:
        """Flags and environment (already in ``root``) > each layer in order > defaults.

        ``layers`` are ``(name, values)`` pairs, for example a profile from a configuration
        file; their values are strings keyed by setting name (``compute_url``, ...).
        """
        sources = dict(root.sources)
        given: dict[str, str | None] = {
            "compute_url": root.compute_url,
            "mqtt_url": root.mqtt_url,
            "auth_url": root.auth_url,
            "username": root.username,
            "password": root.password,
            "backend": root.backend,
        }
        values: dict[str, str | None] = {}
        for name, value in given.items():
            if value is None:
                for layer_name, layer in layers:
                    if layer.get(name) is not None:
                        value = layer[name]
                        sources[name] = layer_name
                        break
            if value is None and name in DEFAULTS:
                value = DEFAULTS[name]
                sources[name] = "default"
            values[name] = value
        return cls(
            compute_url=values["compute_url"] or DEFAULTS["compute_url"],
            mqtt_url=values["mqtt_url"] or DEFAULTS["mqtt_url"],
            auth_url=values["auth_url"] or DEFAULTS["auth_url"],
            username=None if root.no_auth or root.local else values["username"],
            password=None if root.no_auth or root.local else values["password"],
            no_auth=root.no_auth,
            mqtt_enabled=not root.no_mqtt,
            local=root.local,
            json=root.json,
            backend=values["backend"] or DEFAULTS["backend"],
            verbose=root.verbose,
            quiet=root.quiet,
            profile=root.profile,
            sources=sources,
        )

    def source(self, name: str) -> str:
        """Where the value of ``name`` came from."""
        return self.sources.get(name, "default")


# --------------------------------------------------------------------------------------- app


class App:
    """What a running command works with: its settings, its output, and its client."""

    def __init__(self, inv: Invocation, settings: Settings) -> None:
        self.invocation = inv
        self.settings = settings
        self.output = Output(inv, json_mode=settings.json, quiet=settings.quiet)
        self.interrupted = False
        """Set when Ctrl-C (or SIGTERM) stopped the command."""
        self.stack = AsyncExitStack()
        """Closed when the command ends: for services the command started (``--local``)."""
        self._local_urls: tuple[str, str] | None = None
        self._scopes: list[anyio.CancelScope] = []
        self._on_interrupt: list[Callable[[], None]] = []
        self._interrupted = anyio.Event()

    @property
    def verbose(self) -> bool:
        return self.settings.verbose > 0

    # -- the client ---------------------------------------------------------------------------
    async def client_settings(self, **overrides: object) -> dict[str, object]:
        """Keyword arguments for ClientSettings: URLs (the local service's with ``--local``)."""
        compute_url, mqtt_url = await self._urls()
        return {
            "compute_url": compute_url,
            "mqtt_url": mqtt_url,
            "mqtt_enabled": self.settings.mqtt_enabled,
            **overrides,
        }

    async def _urls(self) -> tuple[str, str]:
        if not self.settings.local:
            return self.settings.compute_url, self.settings.mqtt_url
        if self._local_urls is None:  # pragma: no cover - execute() starts it first
            raise RuntimeError("the local service was not started")
        return self._local_urls

    async def start_local(self) -> None:
        """Start the local compute service (``--local``) for the rest of the command."""
        try:
            from cl_client.testing import LocalComputeService
        except ImportError as exc:
            # cl_client.testing names the missing package and the install command
            raise CliError(f"--local: {exc}", ExitCode.USAGE) from None
        workers = max(1, min(4, os.cpu_count() or 1))
        service = await self.stack.enter_async_context(LocalComputeService(workers=workers))
        self.output.info(f"local compute service at {service.compute_url} ({workers} workers)")
        self._local_urls = service.compute_url, service.mqtt_url

    @contextmanager
    def interruptible(self) -> Generator[anyio.CancelScope]:
        """A cancel scope that Ctrl-C cancels."""
        with anyio.CancelScope() as scope:
            self._scopes.append(scope)
            if self.interrupted:
                scope.cancel()
            try:
                yield scope
            finally:
                self._scopes.remove(scope)

    async def wait_interrupted(self) -> None:
        """Return when Ctrl-C (or SIGTERM) arrives: for commands that run until stopped."""
        await self._interrupted.wait()

    def interrupt(self) -> None:
        """Stop the command as Ctrl-C does."""
        self.interrupted = True
        self._interrupted.set()
        for callback in list(self._on_interrupt):
            callback()
        for scope in self._scopes:
            scope.cancel()

    def on_interrupt(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` when Ctrl-C arrives (before the work is cancelled); returns a
        function that removes it."""
        self._on_interrupt.append(callback)
        return lambda: self._on_interrupt.remove(callback)

    async def _auth(self, stack: AsyncExitStack) -> AuthProvider | None:
        """The credentials to send: the session's token (see :meth:`session`), else none."""
        found = await self.session(stack)
        if found is None:
            return None
        session, stored = found
        if stored is None:
            return session.auth_provider
        from cl_client.auth import JWTAuthProvider

        source = _SavingTokenSource(session, self.settings.profile, stored)
        # Keep the token fresh even while no request is made (a long wait on MQTT): a saved
        # login holds no password, so a token that expired unseen could not be renewed.
        tg = await stack.enter_async_context(anyio.create_task_group())
        tg.start_soon(_keep_fresh, session, source)
        stack.callback(tg.cancel_scope.cancel)
        return JWTAuthProvider(session=source)

    async def session(
        self, stack: AsyncExitStack
    ) -> tuple[SessionManager, StoredSession | None] | None:
        """The session of this command, closed with ``stack``: logged in with ``--username``
        (the password in memory only), or else the saved login of the profile (its token is
        refreshed as needed and the new one saved); None when there is neither (guest).

        Returns the session and the saved login it came from (None for ``--username``).
        """
        settings = self.settings
        if settings.no_auth or settings.local:
            return None
        from cl_client import AuthenticationError, TransportError
        from cl_client.auth import SessionManager

        compute_url, mqtt_url = await self._urls()
        session = await stack.enter_async_context(
            SessionManager(auth_url=settings.auth_url, compute_url=compute_url, mqtt_url=mqtt_url)
        )
        if settings.username is None:
            stored = self.stored_session()
            if stored is None:
                return None
            session.set_token(stored.access_token)
            stack.push_async_callback(_save_if_renewed, session, settings.profile, stored)
            logger.info("using the saved login of %s at %s", stored.username, stored.auth_url)
            return session, stored
        password = settings.password if settings.password is not None else ""
        try:
            await session.login(settings.username, password, remember=True)
        except AuthenticationError as exc:
            raise CliError(
                f"the auth service at {settings.auth_url} refused the credentials of "
                f"{settings.username!r}: {_detail(exc)}",
                ExitCode.UNAVAILABLE,
            ) from exc
        except TransportError as exc:
            raise CliError(
                f"cannot reach the auth service at {settings.auth_url} ({exc}); "
                "check --auth-url / AUTH_URL",
                ExitCode.UNAVAILABLE,
            ) from exc
        logger.info("logged in to %s as %s", settings.auth_url, settings.username)
        return session, None

    def stored_session(self) -> StoredSession | None:
        """The profile's saved login, if it belongs to this command's auth service."""
        from ._config import load_session

        stored = load_session(self.settings.profile)
        if stored is None:
            return None
        if stored.auth_url != self.settings.auth_url:
            logger.info(
                "the saved login is for %s, not %s: not used",
                stored.auth_url,
                self.settings.auth_url,
            )
            return None
        return stored

    @asynccontextmanager
    async def open_client(
        self, *, mqtt: bool = True, check_server: bool = True, login_required: bool = True
    ) -> AsyncGenerator[ComputeClient]:
        """A connected ComputeClient, closed when the block ends.

        ``mqtt=False``: HTTP only, for commands that follow nothing (``job get``, ``server``).
        Fails with exit code 3 when the compute service or the broker cannot be reached, or
        (unless ``login_required=False``) when the service needs credentials and none were
        given.
        """
        from cl_client import ClientSettings, ComputeClient, TransportError

        async with AsyncExitStack() as stack:
            auth = await self._auth(stack)
            values = await self.client_settings()
            if not mqtt:
                values["mqtt_enabled"] = False
            try:
                settings = ClientSettings.model_validate(values)
            except ValueError as exc:
                raise CliError(f"invalid settings: {exc}", ExitCode.USAGE) from None
            client = ComputeClient(settings, auth=auth, check_server=check_server)
            try:
                await stack.enter_async_context(client)
            except TransportError as exc:
                raise CliError(_unreachable(exc, settings.mqtt.url), ExitCode.UNAVAILABLE) from exc
            server = client.server
            if login_required and server is not None and server.auth_required and auth is None:
                raise CliError(
                    f"the compute service at {settings.compute_url} requires a login (guest "
                    "mode is off): run 'cl-client login' (or pass --username)",
                    ExitCode.UNAVAILABLE,
                )
            yield client


class _SavingTokenSource:
    """The session's tokens for compute requests; a renewed token is saved at once, so a
    command killed later still leaves the newest token behind."""

    def __init__(self, session: SessionManager, profile: str | None, stored: StoredSession):
        self._session = session
        self._profile = profile
        self._stored = stored

    async def get_valid_token(self) -> str:
        token = await self._session.get_valid_token()
        self._save(token)
        return token

    async def replace_rejected_token(self, token: str | None) -> bool:
        replaced = await self._session.replace_rejected_token(token)
        current = self._session.token
        if current is not None:
            self._save(current.access_token)
        return replaced

    def _save(self, token: str) -> None:
        if token != self._stored.access_token:
            self._stored = _save_token(self._profile, self._stored, token)


async def _keep_fresh(session: SessionManager, source: _SavingTokenSource) -> None:
    """Renew the session's token before it expires, for as long as the command runs."""
    from cl_client import ClClientError

    while True:
        token = session.token
        remaining = token.expires_in() if token is not None else None
        if remaining is None or remaining <= 0:
            return  # no expiry to watch, or too late: the next request reports it
        await anyio.sleep(max(remaining / 3, 0.05))
        try:
            _ = await source.get_valid_token()
        except ClClientError as exc:
            logger.info("could not renew the saved login's token: %s", exc)
            return


def _save_token(profile: str | None, stored: StoredSession, token: str) -> StoredSession:
    from ._config import save_session

    renewed = replace(stored, access_token=token)
    save_session(profile, renewed)
    logger.info("saved the renewed token of %s", stored.username)
    return renewed


async def _save_if_renewed(
    session: SessionManager, profile: str | None, stored: StoredSession
) -> None:
    from ._config import load_session

    current = session.token
    if current is None or current.access_token == stored.access_token:
        return
    latest = load_session(profile)
    if latest is not None and latest.access_token == current.access_token:
        return
    _save_token(profile, stored, current.access_token)


def _detail(exc: Exception) -> str:
    detail = getattr(exc, "detail", None)
    return detail if isinstance(detail, str) and detail else str(exc)


def _unreachable(exc: Exception, mqtt_url: str) -> str:
    from cl_client import MqttError

    if isinstance(exc, MqttError):
        return (
            f"cannot reach the MQTT broker at {mqtt_url} ({exc}); check --mqtt-url / MQTT_URL, "
            "or pass --no-mqtt to follow jobs by HTTP polling"
        )
    return f"{exc}; check --compute-url / COMPUTE_URL, or try --local"


# ----------------------------------------------------------------------------- error mapping


def describe_error(exc: BaseException) -> tuple[ExitCode, str]:
    """The exit code and the one-line message for an error that ended a command."""
    if isinstance(exc, CliError):
        return exc.code, exc.message
    from cl_client import (
        AuthenticationError,
        ClClientError,
        JobFailedError,
        JobTimeoutError,
        ParameterError,
        PermissionDeniedError,
        SessionExpiredError,
        TransportError,
    )

    if isinstance(exc, TransportError):
        return ExitCode.UNAVAILABLE, str(exc)
    if isinstance(exc, SessionExpiredError):
        return (
            ExitCode.UNAVAILABLE,
            f"the saved login can no longer be renewed ({_detail(exc)}): "
            "run 'cl-client login' again",
        )
    if isinstance(exc, PermissionDeniedError):
        return ExitCode.UNAVAILABLE, f"{exc} (the server refused: log in as a user who may)"
    if isinstance(exc, AuthenticationError | PermissionDeniedError):
        return ExitCode.UNAVAILABLE, f"{exc} (check --username / CL_USERNAME and the password)"
    if isinstance(exc, ParameterError):
        return ExitCode.USAGE, str(exc)
    if isinstance(exc, JobFailedError | JobTimeoutError | ClClientError):
        return ExitCode.FAILED, str(exc)
    if isinstance(exc, OSError):
        filename = cast(object, exc.filename)
        where = f": {filename}" if isinstance(filename, str | Path) else ""
        return ExitCode.FAILED, f"{exc.strerror or exc}{where}"
    return ExitCode.FAILED, f"unexpected {type(exc).__name__}: {exc} (run with -v for details)"


# ---------------------------------------------------------------------------------- running


def prompt_password(inv: Invocation, settings: Settings) -> str | None:
    """Ask for the password when a username was given without one (hidden, on the terminal).

    Returns the password typed, or None when no prompt was needed.
    """
    if settings.username is None or settings.password is not None:
        return None
    if not inv.needs_server:
        return None
    if not is_tty(sys.stdin):
        raise CliError(
            f"a password is needed for {settings.username!r}: pass --password or set CL_PASSWORD",
            ExitCode.USAGE,
        )
    return getpass.getpass(f"Password for {settings.username}: ", stream=cast(TextIO, inv.err))


async def _watch_signals(app: App, *, task_status: anyio.abc.TaskStatus[None]) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for _ in signals:
            if app.interrupted:
                app.output.error("interrupted again: exiting at once")
                os._exit(ExitCode.INTERRUPTED)
            app.interrupt()


async def execute(inv: Invocation, *, handle_signals: bool) -> ExitCode:
    """Run the parsed command's work; every error becomes a message and an exit code.

    Ctrl-C (SIGINT) and SIGTERM cancel the work, not the services the command started for
    itself (``--local``): those stop cleanly afterwards.
    """
    work = inv.work
    assert work is not None
    from ._config import load_profile

    layer_error: CliError | None = None
    try:
        layers = [load_profile(inv.root.profile)]
    except CliError as exc:
        layers, layer_error = [], exc
    app = App(inv, Settings.resolve(inv.root, layers))
    code = ExitCode.OK
    async with logging_to_stderr(inv, app.settings.verbose):
        try:
            if layer_error is not None:
                raise layer_error
            password = prompt_password(inv, app.settings)
            if password is not None:
                app.settings = replace(app.settings, password=password)
            async with anyio.create_task_group() as tg:
                if handle_signals:
                    await tg.start(_watch_signals, app)
                # A service's task group must be left in the cancel scope it was entered in:
                # the stack lives out here, the interruptible work in its own scope.
                async with app.stack:
                    if app.settings.local and inv.needs_server:
                        await app.start_local()  # Ctrl-C meanwhile: the work does not start
                    if not app.interrupted:
                        with app.interruptible():
                            code = await work(app)
                tg.cancel_scope.cancel()
        except Exception as exc:
            error = unwrap_group(exc)
            code, message = describe_error(error)
            if app.verbose:
                logger.error("%s failed", inv.command or "cl-client", exc_info=error)
            app.output.error(message)
        if app.interrupted:
            code = ExitCode.OK if inv.ends_on_interrupt else ExitCode.INTERRUPTED
    return code


def run_main(inv: Invocation, args: Sequence[str]) -> int:
    """Run the command on its backend (``--backend``), as the ``cl-client`` script does."""
    del args
    backend = inv.root.backend or DEFAULTS["backend"]
    try:
        return int(anyio.run(functools.partial(execute, inv, handle_signals=True), backend=backend))
    except KeyboardInterrupt:
        # Ctrl-C before the signal handler was installed (or during the password prompt).
        print(file=sys.stderr)
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        # stdout went away (``| head``): stop quietly, and keep Python from complaining at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return ExitCode.FAILED
