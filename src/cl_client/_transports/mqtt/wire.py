"""The sockets paho-mqtt reads from and writes to, as both MQTT transports hand them to paho.

* :class:`BufferedSocket` (aiomqtt, asyncio): one large ``recv`` serves many of paho's small
  reads; writes go straight to the kernel, since aiomqtt drives them.
* :class:`PacketSocket` (the anyio driver, ``paho_driver``): it frames the incoming bytes into
  MQTT packets itself. ``PUBLISH`` packets of QoS 0 and 1, nearly everything a subscriber
  receives, are decoded here without paho, and their PUBACKs are collected; any other packet
  (CONNACK, SUBACK, PUBACK, PINGRESP, QoS 2 flows) is handed to paho whole, paho's reads being
  limited to that one packet. Outgoing bytes (paho's and the PUBACKs) are collected and written
  in one system call per flush.

Nothing here awaits: the owner waits for readability or writability.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import ssl
from collections.abc import Callable

from .connection import MqttMessage

__all__ = ["BufferedSocket", "MalformedPacketError", "PacketSocket"]

_RECV_SIZE = 65536
"""Bytes asked of the kernel per read."""
_WRITE_LIMIT = 1 << 20
"""Bytes a PacketSocket collects before it tells paho to wait (``BlockingIOError``)."""
_WOULD_BLOCK = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


class BufferedSocket:
    """paho's view of our socket: one large ``recv`` serves many of paho's small reads.

    ``drained`` is true once a read found the kernel buffer empty (time to wait for readability).
    ``close()`` only marks the socket closed: the connection closes the real socket after its
    tasks stopped waiting on it.
    """

    def __init__(self, sock: socket.socket, on_close: Callable[[], None]) -> None:
        self._sock = sock
        self._on_close = on_close
        self._buffer = b""
        self._pos = 0
        self.drained = True
        self.closed = False
        self.eof = False
        self.error: OSError | None = None

    def recv(self, buffer_size: int) -> bytes:
        if self._pos >= len(self._buffer):
            if self.closed:
                raise OSError(errno.EBADF, "socket is closed")
            try:
                data = self._sock.recv(_RECV_SIZE)
            except _WOULD_BLOCK:
                self.drained = True
                raise
            except OSError as exc:
                self.error = exc
                raise
            if not data:
                self.eof = True
                return b""
            self._buffer = data
            self._pos = 0
        start = self._pos
        self._pos = min(start + buffer_size, len(self._buffer))
        return self._buffer[start : self._pos]

    def pending(self) -> int:
        return len(self._buffer) - self._pos

    def send(self, buffer: bytes | bytearray) -> int:
        if self.closed:
            raise OSError(errno.EBADF, "socket is closed")
        try:
            return self._sock.send(buffer)
        except _WOULD_BLOCK:
            raise
        except OSError as exc:
            self.error = exc
            raise

    def fileno(self) -> int:
        return self._sock.fileno()

    def setblocking(self, flag: bool) -> None:
        self._sock.setblocking(flag)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._buffer = b""
            self._pos = 0
            self._on_close()


class MalformedPacketError(ValueError):
    """The broker sent bytes that are not a well-formed MQTT packet."""


class PacketSocket:
    """The anyio paho driver's socket: MQTT framing, the PUBLISH fast path, collected writes.

    The owner's read round: :meth:`next_packet` gives the complete packet at the read position
    (None: :meth:`fill` must read more first; False from ``fill``: the kernel had nothing, wait
    for readability, or ``eof``); a QoS 0/1 PUBLISH is taken with :meth:`take_publish`, anything
    else is given to paho with :meth:`give_to_paho` followed by ``loop_read()``. Writes (paho's
    ``send`` and the PUBACKs) are collected until :meth:`flush`.
    """

    def __init__(self, sock: socket.socket, on_close: Callable[[], None]) -> None:
        self._sock = sock
        self._on_close = on_close
        self._buffer = b""
        self._pos = 0
        self._limit = 0
        self._wanted = 0
        self._out = bytearray()
        self._short_read_drains = not isinstance(sock, ssl.SSLSocket)
        """A short read from a plain socket took all the kernel had (TLS reads one record)."""
        self._emptied = False
        """The last read was short: the next ``fill()`` says drained without asking the kernel."""
        self.drained = True
        self.closed = False
        self.eof = False
        self.error: OSError | None = None

    # -- reading ------------------------------------------------------------------------------
    def fill(self) -> bool:
        """Read what the kernel has; False if it had nothing (``drained``) or the peer closed
        (``eof``). After a short read from a plain socket (the kernel buffer was emptied) the
        next call returns False at once instead of asking the kernel again. Raises OSError."""
        if self.closed:
            raise OSError(errno.EBADF, "socket is closed")
        if self._emptied:
            self._emptied = False
            self.drained = True
            return False
        size = max(_RECV_SIZE, self._wanted)
        try:
            data = self._sock.recv(size)
        except _WOULD_BLOCK:
            self.drained = True
            return False
        except OSError as exc:
            self.error = exc
            raise
        if not data:
            self.eof = True
            return False
        self._emptied = len(data) < size and self._short_read_drains
        rest = len(self._buffer) - self._pos
        self._buffer = self._buffer[self._pos :] + data if rest else data
        self._pos = self._limit = 0
        return True

    def next_packet(self) -> tuple[int, int, int] | None:
        """``(first byte, body start, end)`` of the complete packet at the read position."""
        buffer = self._buffer
        size = len(buffer)
        index = self._pos + 1
        length = 0
        shift = 0
        while True:
            if index >= size:
                self._wanted = 0
                return None
            byte = buffer[index]
            index += 1
            length |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
            if shift > 21:
                raise MalformedPacketError("a remaining length of more than four bytes")
        end = index + length
        if end > size:
            self._wanted = end - size
            return None
        return buffer[self._pos], index, end

    def take_publish(self, header: int, start: int, end: int) -> MqttMessage | None:
        """Decode the QoS 0/1 PUBLISH at the read position and collect its PUBACK.

        Returns None for a topic that is not UTF-8 (acknowledged, never delivered).
        """
        buffer = self._buffer
        if end - start < 2:
            raise MalformedPacketError("a PUBLISH without a topic")
        topic_end = start + 2 + (buffer[start] << 8 | buffer[start + 1])
        qos = (header >> 1) & 3
        payload_start = topic_end + 2 if qos else topic_end
        if payload_start > end:
            raise MalformedPacketError("a PUBLISH shorter than its topic")
        self._pos = end
        if qos:
            self._out += b"\x40\x02"
            self._out += buffer[topic_end:payload_start]
        try:
            topic = buffer[start + 2 : topic_end].decode()
        except UnicodeDecodeError:
            return None
        return MqttMessage(topic, buffer[payload_start:end], qos, bool(header & 1))

    def give_to_paho(self, end: int) -> None:
        """Let paho's reads take the packet that ends at ``end``, and nothing more."""
        self._limit = end

    def at(self, position: int) -> bool:
        """Whether everything before ``position`` has been read."""
        return self._pos == position

    def recv(self, buffer_size: int) -> bytes:
        """paho's reads: within the packet it was given, then BlockingIOError."""
        if self.closed:
            raise OSError(errno.EBADF, "socket is closed")
        start = self._pos
        if start >= self._limit:
            raise BlockingIOError(errno.EAGAIN, "no packet for paho")
        self._pos = min(start + buffer_size, self._limit)
        return self._buffer[start : self._pos]

    def pending(self) -> int:
        return 0  # paho never reads beyond the packet it was given

    # -- writing ------------------------------------------------------------------------------
    def send(self, buffer: bytes | bytearray) -> int:
        """paho's writes: collected for the next flush."""
        if self.closed:
            raise OSError(errno.EBADF, "socket is closed")
        if len(self._out) >= _WRITE_LIMIT and not self.flush():
            raise BlockingIOError(errno.EAGAIN, "the write buffer is full")
        self._out += buffer
        return len(buffer)

    @property
    def unsent(self) -> int:
        """Bytes collected and not yet written."""
        return len(self._out)

    def flush(self) -> bool:
        """Write the collected bytes without blocking; True once none are left. Raises OSError."""
        out = self._out
        while out:
            try:
                sent = self._sock.send(out)
            except _WOULD_BLOCK:
                return False
            except OSError as exc:
                self.error = exc
                raise
            del out[:sent]
        return True

    # -- the rest of paho's socket interface ----------------------------------------------------
    def fileno(self) -> int:
        return self._sock.fileno()

    def setblocking(self, flag: bool) -> None:
        self._sock.setblocking(flag)

    def close(self) -> None:
        if not self.closed:
            with contextlib.suppress(OSError):
                self.flush()  # paho closes right after "writing" its DISCONNECT
            self.closed = True
            self._buffer = b""
            self._pos = self._limit = 0
            self._out.clear()
            self._on_close()
