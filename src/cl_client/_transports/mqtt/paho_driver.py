"""paho-mqtt driven by anyio: the MQTT transport on trio (and, on request, on asyncio).

paho-mqtt's network loop is replaced by two small tasks. The socket is opened by us (DNS, TCP and
TLS with anyio's ``wait_readable``/``wait_writable``, so a connect is cancellable at every step)
and handed to paho, which then only parses and builds packets:

* the reader waits until the socket is readable, then calls ``loop_read()`` (one packet per call)
  in a bounded batch; a buffered socket wrapper turns paho's many tiny ``recv`` calls into one
  large read and tells the reader when the kernel buffer is drained. The messages of one wake-up
  go to ``messages()`` as one batch (or, under ``deliver(handler)``, to the handler, called by
  the reader itself: no task switch between the socket and the handler), and only then are
  their acknowledgements (PUBACKs) written, all in one socket write: QoS 1 acknowledges a
  message after it was handed over, never before. The reader lets two scheduling rounds pass
  before that write, so the tasks the messages woke (a watch's reader, the callback runner)
  run first: the write (about 35 us) is not on the way from the broker to them;
* the writer flushes what could not be written at once (paho's queue and the socket wrapper's
  write buffer) when the socket is writable, and calls ``loop_misc()`` about every second for
  keepalive pings.

paho's callbacks run synchronously inside those calls; they complete anyio Events (CONNACK,
SUBACK, PUBACK) and collect messages into the batch that the reader puts into an unbounded memory
object stream. The socket is closed by its owner (this module) only after both tasks have
stopped, so no task is ever left waiting on a closed file descriptor. Nothing here awaits between
reading a message and handing its batch over, so a cancellation loses no message that paho has
taken from the socket.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, NoReturn, Self

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from paho.mqtt.client import (
    Client,
    ConnectFlags,
    DisconnectFlags,
    MQTTMessage,
    MQTTMessageInfo,
    error_string,
)
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from ..._core.errors import MqttError, ParameterError
from ..._core.groups import HeldError
from ..._core.settings import MqttEndpoint
from .connection import (
    CLOSE_TIMEOUT,
    MqttMessage,
    current_async_library,
    new_client_id,
    open_mqtt_socket,
)
from .wire import MalformedPacketError, PacketSocket

if TYPE_CHECKING:
    from paho.mqtt.client import SocketLike

__all__ = ["PahoConnection"]

logger = logging.getLogger(__name__)

_READ_BATCH = 256
"""Packets handled per wake-up before the reader lets other tasks run."""
_MISC_INTERVAL = 1.0
"""How often paho's ``loop_misc()`` (keepalive) runs."""


class _Client(Client):
    """A paho client that uses the socket we opened instead of opening its own."""

    cl_socket: PacketSocket | None = None

    def _create_socket(self) -> SocketLike:
        if self.cl_socket is None:  # pragma: no cover - guarded by PahoConnection
            raise ConnectionError("no socket was prepared")
        return self.cl_socket


class _Suback:
    __slots__ = ("done", "reason_codes")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.reason_codes: list[ReasonCode] = []


class _MessageIterator:
    """``messages()``: a plain async iterator over the connection's incoming batches.

    A batch (one wake-up of the reader) is taken with one ``receive()`` and then handed out
    message by message without a scheduling round trip each.
    """

    def __init__(self, connection: PahoConnection) -> None:
        self._connection = connection
        self._batch: list[MqttMessage] = []
        self._next = 0

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> MqttMessage:
        index = self._next
        batch = self._batch
        if index < len(batch):
            self._next = index + 1
            return batch[index]
        connection = self._connection
        if not connection.entered:
            raise connection.closed_error()
        self._batch = []
        try:
            batch = await connection.receive_stream.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise connection.closed_error() from None
        self._batch = batch
        self._next = 1
        return batch[0]


def _reader_awaits() -> tuple[
    Callable[[socket.socket], Awaitable[None]], Callable[[], Awaitable[None]]
]:
    """``anyio.wait_readable`` and ``anyio.lowlevel.cancel_shielded_checkpoint``, resolved once.

    The reader awaits them for every message it hands over. anyio looks the running backend up
    on each call; on trio, its own functions (which anyio calls there) skip that lookup: about
    5 us less per message at 1,000 events/s, measured in the client (INTERNALS.md, Performance).
    """
    if current_async_library() == "trio":
        import trio

        return trio.lowlevel.wait_readable, trio.lowlevel.cancel_shielded_checkpoint
    return anyio.wait_readable, anyio.lowlevel.cancel_shielded_checkpoint


class PahoConnection(anyio.AsyncContextManagerMixin):
    """One MQTT v3.1.1 clean session over paho-mqtt, driven by anyio tasks."""

    def __init__(
        self,
        endpoint: MqttEndpoint,
        *,
        client_id: str | None,
        keepalive: int,
        connect_timeout: float,
        will: MqttMessage | None,
    ) -> None:
        self._endpoint = endpoint
        self._url = endpoint.url
        self._keepalive = keepalive
        self._connect_timeout = connect_timeout
        client = _Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id or new_client_id(),
            protocol=MQTTProtocolVersion.MQTTv311,
            clean_session=True,
            reconnect_on_failure=False,
        )
        if endpoint.username is not None:
            client.username_pw_set(endpoint.username, endpoint.password)
        if will is not None:
            client.will_set(will.topic, will.payload, will.qos, will.retain)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        # paho then leaves the writing to us instead of writing each packet as it is queued
        client.on_socket_register_write = self._on_register_write
        self._client = client
        self._raw: socket.socket | None = None
        self._sock: PacketSocket | None = None
        # event-loop objects are made on entry, so that this constructor needs no loop
        self._driver_scope: anyio.CancelScope
        self._wake: anyio.Event
        self._connack: anyio.Event
        self._socket_closed: anyio.Event
        self._send: MemoryObjectSendStream[list[MqttMessage]]
        self.receive_stream: MemoryObjectReceiveStream[list[MqttMessage]]
        self._batch: list[MqttMessage] = []
        self._handler: Callable[[MqttMessage], None] | None = None
        self._reading = False
        self._subacks: dict[int, _Suback] = {}
        self._pubacks: dict[int, anyio.Event] = {}
        self._phase = "not started"
        self._connected = False
        self._closing = False
        self._error: MqttError | None = None
        self.entered = False

    # ------------------------------------------------------------------ lifecycle

    @asynccontextmanager
    async def __asynccontextmanager__(self) -> AsyncGenerator[Self]:
        if self.entered:
            raise RuntimeError("an MQTT connection can be entered only once")
        self.entered = True
        self._driver_scope = anyio.CancelScope()
        self._wake = anyio.Event()
        self._connack = anyio.Event()
        self._socket_closed = anyio.Event()
        self._send, self.receive_stream = anyio.create_memory_object_stream[list[MqttMessage]](
            math.inf
        )
        held = HeldError()  # the driver task never raises: the errors to hold are ours
        try:
            async with anyio.create_task_group() as task_group:
                with held:
                    try:
                        await self._open(task_group)
                        yield self
                    finally:
                        await self._stop(task_group)
        finally:
            self._release()
        held.reraise()

    async def _open(self, task_group: TaskGroup) -> None:
        try:
            with anyio.move_on_after(self._connect_timeout) as deadline:
                await self._connect(task_group)
        except OSError as exc:
            raise MqttError(f"could not connect to {self._url}: {exc}") from exc
        if deadline.cancelled_caught:
            raise MqttError(
                f"could not connect to {self._url}: timed out after "
                f"{self._connect_timeout:g} s while {self._phase}"
            )
        logger.debug("connected to %s as %s", self._url, self._client._client_id.decode())

    async def _connect(self, task_group: TaskGroup) -> None:
        self._phase = "opening the connection"
        raw = await open_mqtt_socket(self._endpoint)
        self._raw = raw
        self._sock = PacketSocket(raw, self._socket_closed.set)
        client = self._client
        client.cl_socket = self._sock
        client.connect_async(self._endpoint.host, self._endpoint.port, self._keepalive)
        self._phase = "waiting for CONNACK"
        rc = client.reconnect()  # takes our socket and writes CONNECT (non-blocking)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:  # pragma: no cover - a fresh socket takes it
            raise MqttError(f"could not connect to {self._url}: {error_string(rc)}")
        task_group.start_soon(self._drive, name=f"cl-client MQTT {self._url}")
        self._kick()
        await self._connack.wait()
        if self._error is not None:
            raise self._error
        self._connected = True

    async def _stop(self, task_group: TaskGroup) -> None:
        """Disconnect (shielded, bounded) and stop the tasks; the socket is closed after them."""
        try:
            with anyio.CancelScope(shield=True):
                if self._connected and self._error is None and not self._closing:
                    with anyio.move_on_after(CLOSE_TIMEOUT):
                        await self._disconnect()
        finally:
            self._closing = True
            self._driver_scope.cancel()
            task_group.cancel_scope.cancel()

    def _release(self) -> None:
        """Close the socket and the message stream, release the waiters (the tasks are gone)."""
        self._close_socket()
        self._send.close()
        self.receive_stream.close()
        self._release_waiters()

    async def _disconnect(self) -> None:
        self._closing = True
        rc = self._client.disconnect()
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._kick()
            await self._socket_closed.wait()
        logger.debug("disconnected from %s", self._url)

    def _close_socket(self) -> None:
        if self._sock is not None and not self._sock.closed:
            self._sock.close()
        raw, self._raw = self._raw, None
        if raw is not None:
            raw.close()

    # ------------------------------------------------------------------ the tasks

    async def _drive(self) -> None:
        with self._driver_scope:
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(self._read_loop)
                task_group.start_soon(self._write_loop)

    async def _read_loop(self) -> None:
        sock = self._sock
        raw = self._raw
        assert sock is not None and raw is not None
        wait_readable, pass_turn = _reader_awaits()
        try:
            while not sock.closed:
                if sock.drained:
                    await wait_readable(raw)
                    sock.drained = False
                else:
                    await anyio.lowlevel.checkpoint()
                handed_over = self._read_round(sock)
                if handed_over is None:
                    return
                if handed_over:
                    # The tasks woken by the messages run in the next round; the reader writes
                    # after them (shielded: a cancellation waits for the write, harmlessly).
                    await pass_turn()
                    await pass_turn()
                self._write_now()
        except Exception as exc:  # pragma: no cover - defensive: never let a task raise
            logger.exception("MQTT reader for %s failed", self._url)
            self._lost(f"internal error: {exc!r}")

    def _read_round(self, sock: PacketSocket) -> bool | None:
        """Handle up to ``_READ_BATCH`` packets and hand their messages over (the caller writes
        their PUBACKs). Whether messages were handed over; None once the connection is gone.

        Nothing awaits in here, so a cancellation never separates a message paho or the socket
        has taken from the batch it belongs to.
        """
        client = self._client
        self._reading = True
        try:
            for _ in range(_READ_BATCH):
                packet = sock.next_packet()
                if packet is None:
                    if sock.fill():
                        continue
                    if sock.eof:
                        raise ConnectionResetError
                    break  # drained: wait for readability
                header, start, end = packet
                if header & 0xF6 in (0x30, 0x32):  # PUBLISH, QoS 0 or 1 (any dup/retain flag)
                    message = sock.take_publish(header, start, end)
                    if message is not None:
                        self._batch.append(message)
                    else:
                        logger.warning(
                            "dropped a message from %s with a topic that is not UTF-8", self._url
                        )
                    continue
                sock.give_to_paho(end)
                rc = client.loop_read()
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    self._lost(self._describe(rc))
                    return None
                if not sock.at(end) and not sock.closed:  # pragma: no cover - paho reads it all
                    raise MalformedPacketError("a packet paho did not read to its end")
        except MalformedPacketError as exc:
            self._lost(f"malformed packet from the broker: {exc}")
            return None
        except OSError:
            self._lost(self._describe(MQTTErrorCode.MQTT_ERR_CONN_LOST))
            return None
        finally:
            self._reading = False
        return self._hand_over()

    def _hand_over(self) -> bool:
        """Hand the messages of this round to the handler, or put them into the stream as one
        batch. Whether there were any."""
        batch = self._batch
        if not batch:
            return False
        self._batch = []
        if self._handler is not None:
            self._call_handler(self._handler, batch)
        else:
            with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
                self._send.send_nowait(batch)
        return True

    def _call_handler(
        self, handler: Callable[[MqttMessage], None], batch: list[MqttMessage]
    ) -> None:
        for message in batch:
            try:
                handler(message)
            except Exception:  # the handler's bug must not end the connection for everyone
                logger.exception("MQTT message handler failed on a message on %r", message.topic)

    def _write_now(self) -> None:
        """Write what is queued (a round's PUBACKs, a request) in one system call if the socket
        takes it; the writer task waits for writability if it does not."""
        if self._flush_writes() is False:
            self._wake.set()

    def _flush_writes(self) -> bool | None:
        """Move paho's queue into the socket's buffer and write it: True when all is written,
        False when the socket is full, None when the connection is gone."""
        sock = self._sock
        if sock is None or sock.closed:
            return None
        client = self._client
        if client.want_write():
            rc = client.loop_write()  # into the socket's buffer (paho may close it: DISCONNECT)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._lost(self._describe(rc))
                return None
        try:
            flushed = sock.flush()
        except OSError:
            self._lost(self._describe(MQTTErrorCode.MQTT_ERR_CONN_LOST))
            return None
        return flushed and not client.want_write()

    async def _write_loop(self) -> None:
        client = self._client
        sock = self._sock
        raw = self._raw
        assert sock is not None and raw is not None
        next_misc = anyio.current_time() + _MISC_INTERVAL
        try:
            while not sock.closed:
                with anyio.move_on_after(next_misc - anyio.current_time()):
                    await self._wake.wait()
                self._wake = anyio.Event()
                while (written := self._flush_writes()) is False:
                    await anyio.wait_writable(raw)
                if written is None:
                    return
                now = anyio.current_time()
                if now >= next_misc:
                    next_misc = now + _MISC_INTERVAL
                    rc = client.loop_misc()
                    if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                        self._lost(self._describe(rc))
                        return
                    self._write_now()  # a PINGREQ
        except Exception as exc:  # pragma: no cover - defensive: never let a task raise
            logger.exception("MQTT writer for %s failed", self._url)
            self._lost(f"internal error: {exc!r}")

    def _kick(self) -> None:
        """Write what paho queued now; the writer task finishes it if the socket is full."""
        sock = self._sock
        if self._client.want_write() or (sock is not None and sock.unsent):
            self._write_now()

    def _on_register_write(self, client: Client, userdata: object, sock: SocketLike) -> None:
        # paho queued a packet. The reader writes its round's packets when the round ends, and
        # the API calls write theirs at once (_kick).
        if not self._reading:
            self._wake.set()

    def _describe(self, rc: MQTTErrorCode | int) -> str:
        sock = self._sock
        if sock is not None and sock.error is not None:
            return str(sock.error)
        if sock is not None and sock.eof:
            return "the broker closed the connection"
        if rc == MQTTErrorCode.MQTT_ERR_KEEPALIVE:
            return "no answer from the broker within the keepalive interval"
        return error_string(rc).rstrip(".")

    def _lost(self, reason: str) -> None:
        """The connection ended: fail whoever waits, end the message stream. Idempotent."""
        if self._error is not None:
            return
        if self._closing:
            self._socket_closed.set()
            return
        if self._connected:
            self._error = MqttError(f"connection to {self._url} lost: {reason}")
            logger.warning("%s", self._error)
        else:
            self._error = MqttError(f"could not connect to {self._url}: {reason}")
        self._hand_over()  # what arrived before the end is delivered before the error
        self._send.close()
        self._release_waiters()
        self._connack.set()
        self._socket_closed.set()
        self._driver_scope.cancel()

    def _release_waiters(self) -> None:
        for suback in self._subacks.values():
            suback.done.set()
        for event in self._pubacks.values():
            event.set()

    def closed_error(self) -> MqttError:
        """The error to raise for operations on a connection that is no longer usable."""
        if self._error is not None:
            return MqttError(str(self._error))
        state = "closed" if self.entered else "not open yet"
        return MqttError(f"the connection to {self._url} is {state}")

    # ------------------------------------------------------------------ paho callbacks

    def _on_connect(
        self,
        client: Client,
        userdata: object,
        flags: ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self._lost(f"the broker refused the connection: {reason_code}")
        self._connack.set()

    def _on_disconnect(
        self,
        client: Client,
        userdata: object,
        flags: DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        keepalive = reason_code == "Keep alive timeout"
        rc = MQTTErrorCode.MQTT_ERR_KEEPALIVE if keepalive else MQTTErrorCode.MQTT_ERR_CONN_LOST
        self._lost(self._describe(rc))

    def _on_subscribe(
        self,
        client: Client,
        userdata: object,
        mid: int,
        reason_code_list: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        suback = self._subacks.pop(mid, None)
        if suback is not None:
            suback.reason_codes = reason_code_list
            suback.done.set()

    def _on_publish(
        self,
        client: Client,
        userdata: object,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        event = self._pubacks.pop(mid, None)
        if event is not None:
            event.set()

    def _on_message(self, client: Client, userdata: object, message: MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:
            logger.warning("dropped a message from %s with a topic that is not UTF-8", self._url)
            return
        payload = message.payload
        qos: int = message.qos
        retain: bool = message.retain
        self._batch.append(MqttMessage(topic, bytes(payload), qos, retain))

    # ------------------------------------------------------------------ the API

    def _check_usable(self) -> None:
        if self._error is not None or self._closing or not self._connected:
            raise self.closed_error()

    async def subscribe(self, *topics: str, qos: int = 1) -> None:
        """Subscribe and wait for the broker's SUBACK; a refused filter raises MqttError."""
        await anyio.lowlevel.checkpoint_if_cancelled()
        if not topics:
            return
        self._check_usable()
        try:
            rc, mid = self._client.subscribe([(topic, qos) for topic in topics])
        except ValueError as exc:
            raise ParameterError(f"cannot subscribe to {', '.join(topics)}: {exc}") from None
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            self._check_usable()
            raise MqttError(f"could not subscribe to {', '.join(topics)}: {error_string(rc)}")
        suback = _Suback()
        self._subacks[mid] = suback
        self._kick()
        try:
            await suback.done.wait()
        finally:
            self._subacks.pop(mid, None)
        if not suback.reason_codes:
            raise self.closed_error()
        refused = [
            topic
            for topic, code in zip(topics, suback.reason_codes, strict=False)
            if code.is_failure
        ]
        if refused:
            raise MqttError(
                f"the broker at {self._url} refused the subscription to {', '.join(refused)}"
            )

    async def publish(
        self, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False
    ) -> None:
        """Publish; with QoS 1 (or 2), wait for the broker's acknowledgement."""
        await anyio.lowlevel.checkpoint_if_cancelled()
        self._check_usable()
        try:
            info: MQTTMessageInfo = self._client.publish(topic, payload, qos, retain)
        except ValueError as exc:
            raise ParameterError(f"cannot publish to {topic!r}: {exc}") from None
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._check_usable()
            raise MqttError(f"could not publish to {topic}: {error_string(info.rc)}")
        self._kick()
        if qos == 0 or info.is_published():
            await anyio.lowlevel.checkpoint()
            return
        event = anyio.Event()
        self._pubacks[info.mid] = event
        try:
            await event.wait()
        finally:
            self._pubacks.pop(info.mid, None)
        if not info.is_published():
            raise self.closed_error()

    def messages(self) -> AsyncIterator[MqttMessage]:
        """Incoming messages, in order. Raises MqttError when the connection is lost."""
        return _MessageIterator(self)

    async def deliver(self, handler: Callable[[MqttMessage], None]) -> NoReturn:
        """Call ``handler`` with every incoming message, in order, from the reader task itself
        (no task switch per message), until the connection is lost: then raise MqttError.

        What arrived before (and was not taken by ``messages()``) is handed over first. The
        handler must not block; an exception it raises is logged and the next message goes on.
        Cancelling this call stops the handing over: later messages go to ``messages()``.
        """
        if not self.entered:
            raise self.closed_error()
        if self._handler is not None:
            raise RuntimeError("deliver() is already running on this connection")
        self._handler = handler
        try:
            while True:
                # What the reader put into the stream before is handed over first, in order;
                # from now on the reader calls the handler itself and this waits for the end.
                try:
                    try:
                        batch = self.receive_stream.receive_nowait()
                    except anyio.WouldBlock:
                        batch = await self.receive_stream.receive()
                except (anyio.EndOfStream, anyio.ClosedResourceError):
                    raise self.closed_error() from None
                self._call_handler(handler, batch)
        finally:
            self._handler = None
