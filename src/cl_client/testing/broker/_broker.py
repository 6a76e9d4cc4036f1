"""An embedded, pure-Python MQTT 3.1.1 broker on anyio (asyncio and trio), for tests and local runs
(its packet codec: ``_packets.py``).

It speaks enough of MQTT 3.1.1 (and 3.1) for the CL Server protocol and for fault tests:
CONNECT (client id takeover, will, keepalive), PUBLISH at QoS 0/1/2 inbound (QoS 2 requests are
granted as QoS 1 outbound), SUBSCRIBE with ``+``/``#``, UNSUBSCRIBE, retained messages, PING and
DISCONNECT. Sessions are never persisted. Each client gets a writer task fed by a bounded queue:
when it holds ``max_queued_messages`` messages, further messages for that client are dropped and
counted, so one slow subscriber never slows the others. Nothing waits for subscribers' PUBACKs.

Fault switches: :meth:`EmbeddedBroker.restart`, :meth:`~EmbeddedBroker.stop` /
:meth:`~EmbeddedBroker.start` and :meth:`~EmbeddedBroker.disconnect_all`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import uuid
from collections import deque
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Self, cast

import anyio
from anyio.abc import SocketAttribute, SocketListener, SocketStream, TaskGroup, TaskStatus
from anyio.streams.stapled import MultiListener

from ..._core.groups import HeldError
from ._packets import (
    FieldReader,
    ProtocolViolation,
    check_topic,
    encode_publish,
    matches,
    packet,
    split_packet,
    valid_filter,
)

__all__ = ["BrokerStats", "EmbeddedBroker"]

logger = logging.getLogger(__name__)

_CONNECT, _PUBLISH, _PUBACK, _PUBREC, _PUBREL, _PUBCOMP = 1, 3, 4, 5, 6, 7
_SUBSCRIBE, _UNSUBSCRIBE, _PINGREQ, _DISCONNECT = 8, 10, 12, 14
_PROTOCOLS = {("MQTT", 4), ("MQIsdp", 3)}
_READ_SIZE = 65536
_MAX_ROUTES = 10000
_CONNACK_OK = b"\x20\x02\x00\x00"
_CONNACK_BAD_VERSION = b"\x20\x02\x00\x01"
_PINGRESP = b"\xd0\x00"
_IO_ERRORS = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


class _Close(Exception):
    """Close the connection without a will: after DISCONNECT, or after sending ``reply``."""

    def __init__(self, reply: bytes = b"") -> None:
        super().__init__("close")
        self.reply = reply


@dataclass
class BrokerStats:
    """Counters since the broker was created (they survive restarts)."""

    connections: int = 0
    """Accepted CONNECTs."""
    messages_received: int = 0
    """PUBLISH packets accepted from clients (duplicates of QoS 2 not counted)."""
    messages_delivered: int = 0
    """PUBLISH packets queued for subscribers (live and retained)."""
    messages_dropped: int = 0
    """Messages not queued because the subscriber's outgoing queue was full."""
    wills_published: int = 0
    protocol_errors: int = 0
    """Connections closed for malformed or out-of-order packets."""


@dataclass(frozen=True, slots=True)
class _Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool


class _Client:
    """One accepted connection and, after CONNECT, its (non-persistent) session."""

    def __init__(self, stream: SocketStream) -> None:
        self.stream = stream
        self.scope = anyio.CancelScope()
        self.done = anyio.Event()
        self.connected = False
        self.client_id = ""
        self.keepalive = 0
        self.will: _Message | None = None
        self.send_will = True
        self.subs: dict[str, tuple[list[str], int]] = {}
        self.qos2_ids: set[int] = set()
        self.out: deque[bytes] = deque()
        self.queued = 0
        self.wake = anyio.Event()
        self.last_pid = 0

    def send(self, data: bytes) -> None:
        self.out.append(data)
        self.wake.set()

    def next_pid(self) -> int:
        self.last_pid = self.last_pid % 0xFFFF + 1
        return self.last_pid

    def drop(self, *, send_will: bool) -> None:
        self.send_will = self.send_will and send_will
        self.scope.cancel()

    async def run_writer(self) -> None:
        try:
            while True:
                if not self.out:
                    self.wake = anyio.Event()
                    await self.wake.wait()
                    continue
                data = b"".join(self.out)
                self.out.clear()
                self.queued = 0
                await self.stream.send(data)
        except _IO_ERRORS as exc:
            logger.debug("MQTT client %r: write failed: %r", self.client_id, exc)
            self.scope.cancel()


class EmbeddedBroker(anyio.AsyncContextManagerMixin):
    """A small MQTT 3.1.1 broker that runs in the caller's event loop (asyncio or trio).

    ``async with EmbeddedBroker(port=0) as broker:`` listens on ``broker.url`` until the block ends;
    leaving it closes every connection and the listening socket. ``port=0`` picks a free port,
    which is then kept by :meth:`restart` and :meth:`start`.

    Payloads are never parsed. A connection that breaks the protocol (garbage bytes, a packet
    larger than ``max_packet_size``) is closed and counted; the broker serves everyone else on.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_queued_messages: int = 10000,
        keepalive_factor: float = 1.5,
        connect_timeout: float = 10.0,
        max_packet_size: int = 64 * 1024 * 1024,
    ) -> None:
        self._host = host
        self._max_packet = max_packet_size
        self._port = port
        self._max_queued = max_queued_messages
        self._keepalive_factor = keepalive_factor
        self._connect_timeout = connect_timeout
        self.stats: BrokerStats = BrokerStats()
        self._tg: TaskGroup | None = None
        self._listen_scope: anyio.CancelScope | None = None
        self._listen_done: anyio.Event | None = None
        self._connections: set[_Client] = set()
        self._sessions: dict[str, _Client] = {}
        self._retained: dict[str, _Message] = {}
        self._routes: dict[str, list[tuple[_Client, int]]] = {}

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        """The bound port (the requested one before the first start)."""
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"mqtt://{host}:{self._port}"

    @property
    def is_listening(self) -> bool:
        return self._listen_scope is not None

    @property
    def client_ids(self) -> list[str]:
        """Client ids of the connected sessions."""
        return list(self._sessions)

    @property
    def retained(self) -> dict[str, bytes]:
        """A copy of the retained store: topic -> payload."""
        return {topic: msg.payload for topic, msg in self._retained.items()}

    def clear_retained(self) -> None:
        self._retained.clear()

    def publish(
        self, topic: str, payload: bytes | str, *, qos: int = 0, retain: bool = False
    ) -> None:
        """Publish from the broker itself, as if a client had sent it (no await needed)."""
        check_topic(topic)
        data = payload.encode() if isinstance(payload, str) else payload
        self._publish(_Message(topic, data, min(max(qos, 0), 2), retain))

    @asynccontextmanager
    async def __asynccontextmanager__(self) -> AsyncGenerator[Self]:
        if self._tg is not None:  # another task is entering it right now
            raise RuntimeError("EmbeddedBroker is already running")
        held = HeldError()  # the broker's tasks handle their own errors: only ours are held
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                with held:
                    try:
                        await self.start()
                        yield self
                    finally:
                        for client in self._connections:
                            client.send_will = False
                        tg.cancel_scope.cancel()
        finally:
            self._tg = None
            self._listen_scope = None
            self._connections.clear()
            self._sessions.clear()
            self._routes.clear()
        held.reraise()

    def _require_tg(self) -> TaskGroup:
        if self._tg is None:
            raise RuntimeError("EmbeddedBroker is not running; use 'async with EmbeddedBroker()'")
        return self._tg

    async def start(self) -> None:
        """Listen again (after :meth:`stop`) on the same port; a no-op if already listening."""
        tg = self._require_tg()
        if self._listen_scope is not None:
            return
        multi = await anyio.create_tcp_listener(local_host=self._host, local_port=self._port)
        self._port = multi.extra(SocketAttribute.local_port)
        await tg.start(self._listen, tg, multi)
        logger.debug("MQTT broker listening on %s", self.url)

    async def stop(self) -> None:
        """Close the listener and drop every client abruptly (no wills: the broker 'died')."""
        self._require_tg()
        scope, done = self._listen_scope, self._listen_done
        if scope is not None and done is not None:
            scope.cancel()
            await done.wait()
        self._listen_scope = None
        await self._drop_clients(send_wills=False)
        logger.debug("MQTT broker stopped")

    async def restart(self, *, keep_retained: bool = True) -> None:
        """Drop every client, close the listener, then listen again on the same port."""
        await self.stop()
        if not keep_retained:
            self._retained.clear()
        await self.start()

    async def disconnect_all(self) -> None:
        """Drop every client connection, keep listening; wills are published (a network failure)."""
        self._require_tg()
        await self._drop_clients(send_wills=True)

    async def _drop_clients(self, *, send_wills: bool) -> None:
        clients = list(self._connections)
        for client in clients:
            client.drop(send_will=send_wills)
        for client in clients:
            await client.done.wait()

    async def _listen(
        self,
        tg: TaskGroup,
        multi: MultiListener[SocketStream],
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        done = self._listen_done = anyio.Event()
        try:
            with anyio.CancelScope() as scope:
                self._listen_scope = scope
                task_status.started()
                async with anyio.create_task_group() as accept_tg:
                    for listener in multi.listeners:
                        accept_tg.start_soon(self._accept, tg, cast(SocketListener, listener))
        finally:
            with anyio.CancelScope(shield=True):
                await multi.aclose()
            done.set()

    async def _accept(self, tg: TaskGroup, listener: SocketListener) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:  # pragma: no cover - e.g. out of file descriptors
                logger.warning("MQTT broker: accept failed: %r", exc)
                await anyio.sleep(0.1)
                continue
            client = _Client(stream)
            self._connections.add(client)
            tg.start_soon(self._run_client, client)

    async def _run_client(self, client: _Client) -> None:
        try:
            with client.scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(client.run_writer)
                    await self._read_loop(client)
                    tg.cancel_scope.cancel()
        finally:
            await anyio.aclose_forcefully(client.stream)
            self._connections.discard(client)
            self._end_session(client)
            client.done.set()

    async def _read_loop(self, client: _Client) -> None:
        buf = bytearray()
        try:
            with anyio.CancelScope() as timer:  # one scope, its deadline moved on every read
                timeout = self._connect_timeout
                while True:
                    timer.deadline = anyio.current_time() + timeout
                    buf += await client.stream.receive(_READ_SIZE)
                    pos = 0
                    while (frame := split_packet(buf, pos, self._max_packet)) is not None:
                        first, start, pos = frame
                        self._handle(client, first, bytes(buf[start:pos]))
                    del buf[:pos]
                    if client.connected:
                        timeout = client.keepalive * self._keepalive_factor or math.inf
            logger.info("MQTT client %r: keepalive/connect timeout", client.client_id)
        except _IO_ERRORS as exc:
            logger.debug("MQTT client %r: connection lost: %r", client.client_id, exc)
        except _Close as close:
            client.will = None
            if close.reply:
                with anyio.move_on_after(1), contextlib.suppress(*_IO_ERRORS):
                    await client.stream.send(close.reply)
        except ProtocolViolation as exc:
            self.stats.protocol_errors += 1
            logger.warning("MQTT client %r: protocol error: %s", client.client_id, exc)
        except Exception:  # pragma: no cover - a broker bug must only cost one connection
            logger.exception("MQTT client %r: internal error", client.client_id)

    def _end_session(self, client: _Client) -> None:
        if not client.connected:
            return
        if self._sessions.get(client.client_id) is client:
            del self._sessions[client.client_id]
        if client.subs:
            self._routes.clear()
        will = client.will
        if will is not None and client.send_will:
            logger.debug("MQTT client %r: publishing will on %r", client.client_id, will.topic)
            self.stats.wills_published += 1
            self._publish(will)

    def _handle(self, client: _Client, first: int, body: bytes) -> None:
        kind = first >> 4
        if not client.connected:
            if kind != _CONNECT:
                raise ProtocolViolation(f"first packet has type {kind}, not CONNECT")
            self._on_connect(client, first, body)
            return
        if kind == _PUBLISH:
            self._on_publish(client, first, body)
            return
        if first & 0x0F != (2 if kind in (_PUBREL, _SUBSCRIBE, _UNSUBSCRIBE) else 0):
            raise ProtocolViolation(f"bad fixed header flags {first:#04x}")
        if kind in (_PUBACK, _PUBCOMP):
            FieldReader(body).u16()  # subscribers' acks: nothing is retransmitted, so nothing to do
        elif kind == _PUBREC:
            client.send(packet(0x62, FieldReader(body).u16().to_bytes(2, "big")))
        elif kind == _PUBREL:
            pid = FieldReader(body).u16()
            client.qos2_ids.discard(pid)
            client.send(packet(0x70, pid.to_bytes(2, "big")))
        elif kind == _SUBSCRIBE:
            self._on_subscribe(client, body)
        elif kind == _UNSUBSCRIBE:
            self._on_unsubscribe(client, body)
        elif kind == _PINGREQ:
            client.send(_PINGRESP)
        elif kind == _DISCONNECT:
            raise _Close
        else:
            raise ProtocolViolation(f"unexpected packet type {kind}")

    def _on_connect(self, client: _Client, first: int, body: bytes) -> None:
        reader = FieldReader(body)
        name = reader.string()
        level = reader.u8()
        if (name, level) not in _PROTOCOLS:
            if name in ("MQTT", "MQIsdp"):
                logger.info("MQTT client: unsupported protocol level %d", level)
                raise _Close(_CONNACK_BAD_VERSION)
            raise ProtocolViolation(f"unknown protocol {name!r}")
        flags = reader.u8()
        keepalive = reader.u16()
        if first & 0x0F or flags & 0x01:
            raise ProtocolViolation("reserved CONNECT flag set")
        client_id = reader.string()
        will: _Message | None = None
        if flags & 0x04:
            will_qos = flags >> 3 & 3
            if will_qos == 3:
                raise ProtocolViolation("will QoS 3")
            topic = reader.string()
            check_topic(topic)
            will = _Message(topic, reader.binary(), will_qos, bool(flags & 0x20))
        elif flags & 0x38:
            raise ProtocolViolation("will QoS/retain set without a will")
        if flags & 0x80:
            reader.string()  # user name: anything is accepted
        if flags & 0x40:
            reader.binary()  # password: anything is accepted
        if not client_id:
            client_id = f"auto-{uuid.uuid4()}"
        old = self._sessions.get(client_id)
        if old is not None:
            logger.info("MQTT client %r: taken over by a new connection", client_id)
            old.drop(send_will=True)
        self._sessions[client_id] = client
        client.client_id = client_id
        client.keepalive = keepalive
        client.will = will
        client.connected = True
        self.stats.connections += 1
        client.send(_CONNACK_OK)
        logger.debug(
            "MQTT client %r connected (%s %d, keepalive %d)", client_id, name, level, keepalive
        )

    def _on_publish(self, client: _Client, first: int, body: bytes) -> None:
        qos = first >> 1 & 3
        if qos == 3:
            raise ProtocolViolation("PUBLISH with QoS 3")
        reader = FieldReader(body)
        topic = reader.string()
        check_topic(topic)
        pid = reader.u16() if qos else 0
        if qos and not pid:
            raise ProtocolViolation("packet id 0")
        payload = reader.rest()
        if qos == 1:
            client.send(packet(0x40, pid.to_bytes(2, "big")))
        elif qos == 2:
            client.send(packet(0x50, pid.to_bytes(2, "big")))
            if pid in client.qos2_ids:
                return  # a redelivery before PUBREL: deliver once
            client.qos2_ids.add(pid)
        self.stats.messages_received += 1
        self._publish(_Message(topic, payload, qos, bool(first & 0x01)))

    def _on_subscribe(self, client: _Client, body: bytes) -> None:
        reader = FieldReader(body)
        pid = reader.u16()
        if reader.at_end():
            raise ProtocolViolation("SUBSCRIBE without topic filters")
        codes = bytearray()
        added: list[tuple[list[str], int]] = []
        while not reader.at_end():
            topic_filter = reader.string()
            requested = reader.u8()
            if requested > 2:
                raise ProtocolViolation(f"bad requested QoS byte {requested:#04x}")
            if not valid_filter(topic_filter):
                codes.append(0x80)
                continue
            granted = min(requested, 1)
            levels = topic_filter.split("/")
            client.subs[topic_filter] = (levels, granted)
            added.append((levels, granted))
            codes.append(granted)
        self._routes.clear()
        client.send(packet(0x90, pid.to_bytes(2, "big") + bytes(codes)))
        best: dict[str, int] = {}
        for topic in self._retained:
            topic_levels = topic.split("/")
            for levels, granted in added:
                if granted > best.get(topic, -1) and matches(levels, topic_levels):
                    best[topic] = granted
        for topic, granted in best.items():
            if self._has_room(client):
                msg = self._retained[topic]
                qos = min(msg.qos, granted)
                pid = client.next_pid() if qos else 0
                self._push(client, encode_publish(topic.encode(), msg.payload, qos, True, pid))

    def _on_unsubscribe(self, client: _Client, body: bytes) -> None:
        reader = FieldReader(body)
        pid = reader.u16()
        if reader.at_end():
            raise ProtocolViolation("UNSUBSCRIBE without topic filters")
        while not reader.at_end():
            client.subs.pop(reader.string(), None)
        self._routes.clear()
        client.send(packet(0xB0, pid.to_bytes(2, "big")))

    def _route(self, topic: str) -> list[tuple[_Client, int]]:
        """The sessions subscribed to ``topic``, each once with its highest granted QoS."""
        cached = self._routes.get(topic)
        if cached is not None:
            return cached
        topic_levels = topic.split("/")
        targets: list[tuple[_Client, int]] = []
        for client in self._sessions.values():
            best = -1
            for levels, granted in client.subs.values():
                if granted > best and matches(levels, topic_levels):
                    best = granted
            if best >= 0:
                targets.append((client, best))
        if len(self._routes) >= _MAX_ROUTES:
            self._routes.clear()
        self._routes[topic] = targets
        return targets

    def _publish(self, msg: _Message) -> None:
        if msg.retain:
            if msg.payload:
                self._retained[msg.topic] = msg
            else:
                self._retained.pop(msg.topic, None)
        topic = msg.topic.encode()
        qos0: bytes | None = None
        for client, granted in self._route(msg.topic):
            if not self._has_room(client):
                continue
            if granted and msg.qos:
                self._push(client, encode_publish(topic, msg.payload, 1, False, client.next_pid()))
                continue
            if qos0 is None:
                qos0 = encode_publish(topic, msg.payload, 0, False, 0)
            self._push(client, qos0)

    def _has_room(self, client: _Client) -> bool:
        if client.queued < self._max_queued:
            return True
        self.stats.messages_dropped += 1
        logger.debug("MQTT client %r: outgoing queue full, message dropped", client.client_id)
        return False

    def _push(self, client: _Client, data: bytes) -> None:
        client.queued += 1
        client.send(data)
        self.stats.messages_delivered += 1
