"""Serve an ASGI app with hypercorn on a free loopback port, on asyncio or trio.

Shared by the local compute and auth services::

    async with serve_asgi(app) as url:      # "http://127.0.0.1:<port>"
        ...

The listening socket is bound (port 0) before the server task starts, and the URL is yielded
only after the server has answered a readiness probe (handled here, never seen by the app), so
the server's own tasks all exist by then: tests that compare running tasks before and after get
a stable baseline. Leaving the block shuts the server down gracefully, bounded by
``graceful_timeout``.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import socket
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Protocol, cast

import anyio
import sniffio
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.config import Config, Sockets
from hypercorn.typing import AppWrapper, ASGIFramework
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["serve_asgi"]

_LOG = logging.getLogger("cl_client.testing.server")


class _WorkerServe(Protocol):
    def __call__(
        self,
        app: AppWrapper,
        config: Config,
        *,
        sockets: Sockets | None = None,
        shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    ) -> Coroutine[object, object, None]: ...


def _worker_serve(backend: str) -> _WorkerServe:
    """hypercorn's per-backend ``worker_serve``, which accepts ready-made sockets."""
    module = importlib.import_module(f"hypercorn.{backend}.run")
    return cast(_WorkerServe, getattr(module, "worker_serve"))  # noqa: B009


def _listening_socket(host: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted sockets inherit it (Linux): without it, Nagle's algorithm and delayed ACKs
        # add ~40 ms to every small response on asyncio.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


_READY_PATH = "/__cl_client_testing_ready"


def _with_readiness(app: ASGIApp) -> ASGIApp:
    """``app``, except that the readiness probe is answered here and never reaches it."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == _READY_PATH:
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await app(scope, receive, send)

    return wrapped


async def _answered(host: str, port: int, timeout: float = 10.0) -> None:
    """Return once the server has answered the readiness probe on ``host:port``."""
    request = f"GET {_READY_PATH} HTTP/1.1\r\nHost: ready\r\nConnection: close\r\n\r\n"
    with anyio.fail_after(timeout):
        async with await anyio.connect_tcp(host, port) as stream:
            await stream.send(request.encode())
            with contextlib.suppress(anyio.EndOfStream):
                while await stream.receive():
                    pass


@asynccontextmanager
async def serve_asgi(
    app: ASGIApp,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    graceful_timeout: float = 1.0,
) -> AsyncGenerator[str]:
    """Serve ``app`` on ``host`` (loopback by default) and yield its base URL."""
    config = Config()
    config.accesslog = None
    config.errorlog = _LOG
    config.loglevel = "WARNING"
    config.graceful_timeout = graceful_timeout
    sock = _listening_socket(host, port, config.backlog)
    bound_port: int = sock.getsockname()[1]  # pyright: ignore[reportAny]
    url_host = f"[{host}]" if ":" in host else host
    sockets = Sockets(secure_sockets=[], insecure_sockets=[sock], quic_sockets=[])
    # starlette's and hypercorn's ASGI types describe the same protocol
    wrapped = ASGIWrapper(cast(ASGIFramework, _with_readiness(app)))
    worker_serve = _worker_serve("trio" if sniffio.current_async_library() == "trio" else "asyncio")
    stop = anyio.Event()
    shutdown_trigger: Callable[[], Awaitable[None]] = stop.wait
    # An error in the caller's block is held while the task group winds down and re-raised
    # after it, so it never comes out wrapped in an ExceptionGroup (trio wraps the body's too).
    body_error: Exception | None = None
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                lambda: worker_serve(
                    wrapped, config, sockets=sockets, shutdown_trigger=shutdown_trigger
                )
            )
            await _answered(host, bound_port)
            try:
                yield f"http://{url_host}:{bound_port}"
            except Exception as exc:  # re-raised below, unwrapped
                body_error = exc
            finally:
                stop.set()
    finally:
        sock.close()
    if body_error is not None:
        raise body_error
