"""A loopback HTTP proxy that can answer chosen requests with broken HTTP, written raw.

``async with FaultyProxy(upstream_url) as proxy:`` listens on 127.0.0.1 (a free port) and
forwards every request to ``upstream_url`` (the local compute service), except those matched by
a rule: ``proxy.answer(predicate, answer)`` makes matching requests get ``answer`` instead, an
async function that writes whatever bytes it likes to the socket (a truncated body, fake gzip,
bad chunked encoding, a stall after the headers, a trickle...). Forwarded requests are sent with
``Connection: close``, so every request opens its own connection and meets the current rules.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

import anyio
import anyio.abc
from anyio.abc import SocketStream

Answer = Callable[[SocketStream], Awaitable[None]]
Predicate = Callable[[str, str], bool]

_MAX_HEAD = 64 * 1024
_GONE = (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


def head(status: str = "200 OK", *headers: str, length: int | None = None) -> bytes:
    """A response head (status line and headers) ending with the blank line."""
    lines = [f"HTTP/1.1 {status}", "Connection: close", *headers]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin1")


def raw(data: bytes) -> Answer:
    """Send ``data`` as it is, then close."""

    async def answer(stream: SocketStream) -> None:
        await stream.send(data)

    return answer


def body(data: bytes, status: str = "200 OK", *headers: str) -> Answer:
    """A well-formed answer with this body (JSON content type unless told otherwise)."""
    extra = headers or ("Content-Type: application/json",)
    return raw(head(status, *extra, length=len(data)) + data)


def json_body(value: object, status: str = "200 OK") -> Answer:
    return body(json.dumps(value).encode(), status)


def truncated() -> Answer:
    """Content-Length promises 500 bytes; 14 arrive, then the connection closes."""
    return raw(head("200 OK", "Content-Type: application/json", length=500) + b'{"job_id": "x"')


def fake_gzip() -> Answer:
    """Content-Encoding: gzip, but the body is not gzip."""
    data = b"this is certainly not gzip data"
    return body(data, "200 OK", "Content-Type: application/json", "Content-Encoding: gzip")


def bad_chunked() -> Answer:
    """Transfer-Encoding: chunked with a chunk size that is not hexadecimal."""
    return raw(
        head("200 OK", "Content-Type: application/json", "Transfer-Encoding: chunked")
        + b"zz\r\nhello\r\n0\r\n\r\n"
    )


def stall() -> Answer:
    """The headers, then nothing (the connection stays open until the proxy stops)."""

    async def answer(stream: SocketStream) -> None:
        await stream.send(head("200 OK", "Content-Type: application/json", length=100))
        await anyio.sleep_forever()

    return answer


def trickle(data: bytes, interval: float) -> Answer:
    """A well-formed answer whose body arrives one byte every ``interval`` seconds."""

    async def answer(stream: SocketStream) -> None:
        await stream.send(head("200 OK", "Content-Type: application/json", length=len(data)))
        for i in range(len(data)):
            await anyio.sleep(interval)
            await stream.send(data[i : i + 1])

    return answer


class FaultyProxy:
    """See the module docstring."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        assert parts.hostname is not None and parts.port is not None
        self._upstream = (parts.hostname, parts.port)
        self._rules: list[tuple[Predicate, Answer]] = []
        self._tg: anyio.abc.TaskGroup | None = None
        self._listener: anyio.abc.Listener[SocketStream] | None = None
        self.port = 0
        self.requests: list[tuple[str, str]] = []
        self.answered = 0
        """Requests answered by a rule (not forwarded)."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def answer(self, where: Predicate | str, answer: Answer) -> None:
        """Answer matching requests with ``answer`` (``where``: a path prefix, or a predicate
        of method and path). Later rules win."""
        if isinstance(where, str):
            prefix = where

            def predicate(method: str, path: str) -> bool:
                return path.startswith(prefix)

            self._rules.insert(0, (predicate, answer))
        else:
            self._rules.insert(0, (where, answer))

    def clear(self) -> None:
        """Forward everything again."""
        self._rules.clear()

    async def __aenter__(self) -> Self:
        listener = self._listener = await anyio.create_tcp_listener(
            local_host="127.0.0.1", local_port=0
        )
        self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
        self._tg = await anyio.create_task_group().__aenter__()
        self._tg.start_soon(listener.serve, self._handle)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tg is not None and self._listener is not None
        self._tg.cancel_scope.cancel()
        try:
            await self._tg.__aexit__(exc_type, exc, tb)
        finally:
            await self._listener.aclose()

    async def _handle(self, stream: SocketStream) -> None:
        async with stream:
            buffer = b""
            try:
                while b"\r\n\r\n" not in buffer and len(buffer) < _MAX_HEAD:
                    buffer += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return
            request_head, _, rest = buffer.partition(b"\r\n\r\n")
            lines = request_head.decode("latin1").split("\r\n")
            method, path, _version = lines[0].split(" ", 2)
            self.requests.append((method, path))
            for predicate, answer in self._rules:
                if predicate(method, path):
                    self.answered += 1
                    with contextlib.suppress(*_GONE):
                        await answer(stream)
                    return
            headers = [line for line in lines[1:] if not line.lower().startswith("connection:")]
            forwarded = "\r\n".join([lines[0], *headers, "Connection: close"]) + "\r\n\r\n"
            await self._forward(stream, forwarded.encode("latin1") + rest)

    async def _forward(self, client: SocketStream, first: bytes) -> None:
        try:
            upstream = await anyio.connect_tcp(*self._upstream)
        except OSError:
            return
        async with upstream, anyio.create_task_group() as tg:

            async def to_upstream() -> None:
                try:
                    await upstream.send(first)
                    async for chunk in client:
                        await upstream.send(chunk)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    pass

            tg.start_soon(to_upstream)
            try:
                async for chunk in upstream:
                    await client.send(chunk)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                pass
            tg.cancel_scope.cancel()


class TcpProxy:
    """A loopback TCP forwarder whose :meth:`reset` aborts every connection with a TCP reset
    (RST, as a broker that crashes or a NAT that drops state), not an orderly close."""

    def __init__(self, host: str, port: int) -> None:
        self._upstream = (host, port)
        self._clients: set[SocketStream] = set()
        self._tg: anyio.abc.TaskGroup | None = None
        self._listener: anyio.abc.Listener[SocketStream] | None = None
        self.port = 0
        self.connections = 0

    async def __aenter__(self) -> Self:
        listener = self._listener = await anyio.create_tcp_listener(
            local_host="127.0.0.1", local_port=0
        )
        self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
        self._tg = await anyio.create_task_group().__aenter__()
        self._tg.start_soon(listener.serve, self._handle)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tg is not None and self._listener is not None
        self._tg.cancel_scope.cancel()
        try:
            await self._tg.__aexit__(exc_type, exc, tb)
        finally:
            await self._listener.aclose()

    async def reset(self) -> None:
        """Abort every open connection with RST (SO_LINGER 0, then close)."""
        for client in list(self._clients):
            sock = client.extra(anyio.abc.SocketAttribute.raw_socket)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await client.aclose()

    async def _handle(self, client: SocketStream) -> None:
        self.connections += 1
        self._clients.add(client)
        try:
            async with client, await anyio.connect_tcp(*self._upstream) as upstream:

                async def pipe(source: SocketStream, sink: SocketStream) -> None:
                    with contextlib.suppress(*_GONE, anyio.EndOfStream):
                        async for chunk in source:
                            await sink.send(chunk)
                    tg.cancel_scope.cancel()

                async with anyio.create_task_group() as tg:
                    tg.start_soon(pipe, client, upstream)
                    tg.start_soon(pipe, upstream, client)
        except _GONE:
            pass
        finally:
            self._clients.discard(client)
