"""MQTT transport seam: one small interface, two implementations.

* asyncio: aiomqtt (``aiomqtt_driver``).
* trio: paho-mqtt driven by anyio (``wait_readable``/``wait_writable`` on its socket), because
  aiomqtt needs a running asyncio loop (``paho_driver``). It runs on asyncio too
  (``backend="paho"``).

Both behave the same at this seam: MQTT v3.1.1 with a clean session; the socket (DNS, TCP, TLS) is
opened with anyio, so a connect can be cancelled at any point without leaving a socket behind;
every failure is an ``MqttError`` naming the broker URL (never its credentials); ``messages()``
delivers what arrived, in order, then raises ``MqttError`` once the connection is gone (and
``deliver(handler)`` does the same with a synchronous handler, which on trio is called by the
reader task itself: one task switch less per message); pending
``subscribe``/``publish`` calls fail the same way instead of hanging. Incoming messages are
buffered without bound (as aiomqtt does): the reader never waits for the consumer.

Only bytes move here: topics and payload meaning live in the sans-IO modules.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Literal, NoReturn, Protocol

import anyio

from ..._core.errors import ParameterError
from ..._core.settings import MqttEndpoint

__all__ = ["MqttConnection", "MqttMessage", "connect_mqtt"]

# (for the implementations: CLOSE_TIMEOUT, new_client_id, open_mqtt_socket)


@dataclass(frozen=True, slots=True)
class MqttMessage:
    """A message received (``qos`` as delivered, ``retain`` set for retained ones) or a will."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False


class MqttConnection(Protocol):
    """A live MQTT session."""

    async def subscribe(self, *topics: str, qos: int = 1) -> None:
        """Subscribe and wait for the broker's SUBACK."""
        ...

    async def publish(
        self, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False
    ) -> None:
        """Publish; with QoS 1, wait for the broker's PUBACK."""
        ...

    def messages(self) -> AsyncIterator[MqttMessage]:
        """Incoming messages, in order. Raises MqttError when the connection is lost."""
        ...

    async def deliver(self, handler: Callable[[MqttMessage], None]) -> NoReturn:
        """Call ``handler`` (synchronous, must not block) with every incoming message, in order,
        as soon as it is read; raise MqttError when the connection is lost. An exception from
        the handler is logged and delivery goes on."""
        ...


def connect_mqtt(
    endpoint: MqttEndpoint,
    *,
    client_id: str | None = None,
    keepalive: int = 60,
    connect_timeout: float = 10.0,
    will: MqttMessage | None = None,
    backend: Literal["auto", "aiomqtt", "paho"] = "auto",
) -> AbstractAsyncContextManager[MqttConnection]:
    """Open an MQTT v3.1.1 session (clean session). Raises MqttError naming the URL on failure.

    ``backend="auto"`` picks aiomqtt on asyncio and paho-mqtt driven by anyio on trio;
    ``"paho"`` works on both; ``"aiomqtt"`` needs asyncio. ``client_id=None`` picks a random id.
    The context manager connects on entry (within ``connect_timeout``; cancellable) and
    disconnects on exit (shielded, bounded), leaving no task or socket behind (paho starts no
    thread; aiomqtt's connect step uses the loop's default executor).

    Raises ParameterError (a ValueError) for bad arguments, including ``backend="aiomqtt"``
    outside asyncio. Nothing is sent before the context manager is entered.
    """
    if keepalive < 0:
        raise ParameterError(f"keepalive must be >= 0, got {keepalive}")
    if connect_timeout <= 0:
        raise ParameterError(f"connect_timeout must be > 0, got {connect_timeout}")
    if backend not in ("auto", "aiomqtt", "paho"):
        raise ParameterError(f"unknown MQTT backend {backend!r}: use 'auto', 'aiomqtt' or 'paho'")
    library = current_async_library()
    if backend == "auto":
        backend = "aiomqtt" if library == "asyncio" else "paho"
    if backend == "aiomqtt":
        if library != "asyncio":
            raise ParameterError(
                f"the aiomqtt MQTT backend needs asyncio, but this is {library}: "
                "use backend='paho' (or 'auto')"
            )
        from .aiomqtt_driver import AiomqttConnection

        return AiomqttConnection(
            endpoint,
            client_id=client_id,
            keepalive=keepalive,
            connect_timeout=connect_timeout,
            will=will,
        )
    from .paho_driver import PahoConnection

    return PahoConnection(
        endpoint,
        client_id=client_id,
        keepalive=keepalive,
        connect_timeout=connect_timeout,
        will=will,
    )


CLOSE_TIMEOUT = 2.0
"""Bound on the graceful DISCONNECT when a connection is closed."""


def new_client_id() -> str:
    """A random client id (some brokers refuse an empty one)."""
    return f"cl-client-{uuid.uuid4().hex[:16]}"


async def open_mqtt_socket(endpoint: MqttEndpoint) -> socket.socket:
    """Resolve, connect (and for ``mqtts`` run the TLS handshake) without blocking the loop.

    Returns a non-blocking socket (an ``ssl.SSLSocket`` for TLS). Raises OSError. Cancellation at
    any point closes the socket being opened.
    """
    last_error: OSError = OSError(f"{endpoint.host} did not resolve to any address")
    for family, address in await _resolve(endpoint.host, endpoint.port):
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                sock.connect(address)
            except BlockingIOError:
                await anyio.wait_writable(sock)
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    raise OSError(code, os.strerror(code)) from None
        except OSError as exc:
            sock.close()
            last_error = exc
            continue
        except BaseException:
            sock.close()
            raise
        if not endpoint.tls:
            return sock
        return await _tls_handshake(sock, endpoint.host)
    raise last_error


async def _resolve(
    host: str, port: int
) -> list[tuple[socket.AddressFamily, tuple[str, int] | tuple[str, int, int, int]]]:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:  # an IP literal needs no resolver (and on asyncio no resolver thread)
        if ip.version == 4:
            return [(socket.AF_INET, (host, port))]
        return [(socket.AF_INET6, (host, port, 0, 0))]
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [(family, address) for family, _kind, _proto, _name, address in infos]


async def _tls_handshake(sock: socket.socket, host: str) -> ssl.SSLSocket:
    context = ssl.create_default_context()
    try:
        tls = context.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
    except BaseException:
        sock.close()
        raise
    try:
        while True:
            try:
                tls.do_handshake()
            except ssl.SSLWantReadError:
                await anyio.wait_readable(tls)
            except ssl.SSLWantWriteError:
                await anyio.wait_writable(tls)
            else:
                return tls
    except BaseException:
        tls.close()
        raise


def current_async_library() -> str:
    """The running event loop: asyncio, trio or none.

    sniffio comes with trio (anyio does not require it); without it only asyncio can run.
    """
    try:
        import sniffio
    except ImportError:  # pragma: no cover - trio (which needs sniffio) is not installed
        import asyncio

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return "none"
        return "asyncio"
    try:
        return sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return "none"


def loop_clock() -> Callable[[], float]:
    """``anyio.current_time`` for the running event loop, resolved once: the same clock without
    anyio's lookup of the backend on every call (on trio, 3.0 -> 1.0 us per message at 1,000
    events/s, where each message meets cold caches; INTERNALS.md, Performance)."""
    if current_async_library() == "trio":
        import trio

        return trio.current_time
    return anyio.current_time
