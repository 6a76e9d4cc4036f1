"""aiomqtt: the MQTT transport on asyncio.

A thin wrapper with three repairs, each needing a look inside aiomqtt 2.x:

* **Connect.** aiomqtt runs paho's blocking ``connect()`` in an executor thread, which a
  cancellation cannot stop: the thread goes on to open and register a socket nobody owns. So we
  open the socket ourselves (DNS, TCP, TLS with anyio, cancellable at every step) and hand it to
  paho, leaving the thread nothing that blocks. Should the caller be cancelled while aiomqtt
  waits for CONNACK, the attempt is failed on the spot and its socket closed.
* **Disconnects.** A pending ``publish``/``subscribe`` would wait forever if the connection dropped;
  here it raises MqttError. Messages that arrived before the drop are delivered before the error.
* **Teardown.** Exiting closes the socket even when the broker does not answer the DISCONNECT, and
  waits for aiomqtt's housekeeping task to end.

Messages are taken from aiomqtt's queue with ``Queue.get()`` rather than through
``client.messages``, whose ``__anext__`` makes a task per message and waits on it with
``asyncio.wait``: three scheduling rounds between the socket and the consumer instead of one.
The end of the connection reaches a waiting reader as a marker put into the queue when
aiomqtt's ``_disconnected`` future completes, after every message that arrived before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from types import TracebackType
from typing import NoReturn, Self, TypeVar, cast

import aiomqtt
import anyio
import anyio.lowlevel
from paho.mqtt.client import Client as PahoClient
from paho.mqtt.reasoncodes import ReasonCode

from ..._core.errors import MqttError, ParameterError
from ..._core.settings import MqttEndpoint
from .connection import CLOSE_TIMEOUT, MqttMessage, new_client_id, open_mqtt_socket
from .wire import BufferedSocket

__all__ = ["AiomqttConnection"]

logger = logging.getLogger(__name__)


_EXPECTED = (
    "Unexpected message ID",  # a SUBACK/UNSUBACK for a call that was cancelled
    "failed to receive on socket",  # paho: the broker went away (an ordinary reconnect)
    "failed to send on socket",
    "timeout on socket",
)


class _ExpectedToDebug(logging.Filter):
    """aiomqtt and paho log ordinary events at ERROR: a connection lost to a broker restart
    ("failed to receive on socket: Broken pipe"), an acknowledgement for a cancelled call. Such
    records are logged at DEBUG on this module's logger instead; the client reports the lost
    connection itself (one WARNING, then it reconnects)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith(_EXPECTED):
            logger.debug("aiomqtt: %s", record.getMessage())
            return False
        return True


_aiomqtt_logger = logging.getLogger(f"{__name__}.aiomqtt")
"""aiomqtt's (and its paho client's) log records go here."""
_aiomqtt_logger.addFilter(_ExpectedToDebug())

_T = TypeVar("_T")

_LOST = cast(aiomqtt.Message, object())
"""Put into aiomqtt's queue when the connection ends: wakes a reader waiting in ``get()``."""


class _MessageIterator:
    """``messages()``: a plain async iterator over aiomqtt's queue."""

    def __init__(self, connection: AiomqttConnection) -> None:
        self._connection = connection

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> MqttMessage:
        return await self._connection.next_message()


class AiomqttConnection:
    """One MQTT v3.1.1 clean session over aiomqtt."""

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
        self._client_id = client_id or new_client_id()
        self._keepalive = keepalive
        self._connect_timeout = connect_timeout
        self._will = will
        self._client: aiomqtt.Client | None = None
        self._error: MqttError | None = None
        self._entered = False
        self._open = False

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        if self._entered:
            raise RuntimeError("an MQTT connection can be entered only once")
        self._entered = True
        deadline = anyio.current_time() + self._connect_timeout
        raw: socket.socket | None = None
        try:
            with anyio.move_on_after(self._connect_timeout):
                raw = await open_mqtt_socket(self._endpoint)
        except OSError as exc:
            raise MqttError(f"could not connect to {self._url}: {exc}") from exc
        if raw is None:
            raise MqttError(
                f"could not connect to {self._url}: timed out after "
                f"{self._connect_timeout:g} s while opening the connection"
            )
        try:
            client = self._new_client(raw, deadline)
        except BaseException:
            raw.close()
            raise
        enter = asyncio.ensure_future(client.__aenter__())
        try:
            await asyncio.shield(enter)
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await self._abandon(enter)
            if isinstance(exc, aiomqtt.MqttError):
                reason = str(exc)
                if reason == "Operation timed out":
                    reason = f"no CONNACK within {self._connect_timeout:g} s"
                raise MqttError(f"could not connect to {self._url}: {reason}") from None
            raise
        self._open = True
        queue = client._queue
        client._disconnected.add_done_callback(lambda _: queue.put_nowait(_LOST))
        logger.debug("connected to %s as %s", self._url, self._client_id)
        return self

    def _new_client(self, raw: socket.socket, deadline: float) -> aiomqtt.Client:
        will = self._will
        client = aiomqtt.Client(
            self._endpoint.host,
            self._endpoint.port,
            username=self._endpoint.username,
            password=self._endpoint.password,
            identifier=self._client_id,
            logger=_aiomqtt_logger,
            protocol=aiomqtt.ProtocolVersion.V311,
            clean_session=True,
            keepalive=self._keepalive,
            timeout=max(deadline - anyio.current_time(), 0.001),
            will=None
            if will is None
            else aiomqtt.Will(will.topic, will.payload, will.qos, will.retain),
        )
        self._client = client
        # paho's connect() (run by aiomqtt in a thread) takes this socket instead of opening one
        connected = client._connected

        def closed() -> None:
            raw.close()
            if not connected.done():
                # aiomqtt ignores a connection that ends before CONNACK and would wait out the
                # whole timeout: end the attempt now
                reason = "the broker closed the connection before CONNACK"
                if sock.error is not None:
                    reason = f"{sock.error} (before CONNACK)"
                connected.set_exception(aiomqtt.MqttError(reason))

        sock = BufferedSocket(raw, closed)
        paho: PahoClient = client._client
        paho._create_socket = lambda: sock
        return client

    async def _abandon(self, enter: asyncio.Future[aiomqtt.Client]) -> None:
        """Fail a connect attempt at once and release everything it holds."""
        client = self._client
        assert client is not None
        if not enter.done():
            # aiomqtt waits for CONNACK on this future: failing it ends the attempt as soon as
            # its executor step (which no longer blocks) has returned.
            if not client._connected.done():
                client._connected.set_exception(aiomqtt.MqttError("connect abandoned"))
            await asyncio.wait([enter])
        if not enter.cancelled() and enter.exception() is None:
            # connected just as the caller gave up: say goodbye properly
            with anyio.move_on_after(CLOSE_TIMEOUT):
                with contextlib.suppress(aiomqtt.MqttError):
                    await client.__aexit__(None, None, None)
        await self._force_close()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        client = self._client
        if client is None or not self._open:
            return
        self._open = False
        try:
            with anyio.move_on_after(CLOSE_TIMEOUT, shield=True):
                await client.__aexit__(None, None, None)
        except aiomqtt.MqttError:
            pass
        finally:
            with anyio.CancelScope(shield=True):
                await self._force_close()

    async def _force_close(self) -> None:
        """Close the socket if it is still open and wait for aiomqtt's misc task to end."""
        client = self._client
        assert client is not None
        paho: PahoClient = client._client
        if paho.socket() is not None:
            paho._sock_close()  # unregisters reader/writer, cancels the misc task, closes
        disconnected = client._disconnected
        if disconnected.done() and not disconnected.cancelled():
            disconnected.exception()  # retrieved
        misc: asyncio.Task[None] | None = client._misc_task
        if misc is not None and not misc.done():
            misc.cancel()
            await asyncio.wait([misc])

    # ------------------------------------------------------------------ the API

    def _lost_error(self) -> MqttError:
        if self._error is None:
            client = self._client
            if self._open and client is not None and client._disconnected.done():
                cause = (
                    None if client._disconnected.cancelled() else client._disconnected.exception()
                )
                reason = f": {cause}" if cause is not None else ""
                self._error = MqttError(f"connection to {self._url} lost{reason}")
            else:
                return MqttError(f"the connection to {self._url} is closed")
        return MqttError(str(self._error))

    def _usable_client(self) -> aiomqtt.Client:
        client = self._client
        if not self._open or client is None or client._disconnected.done():
            raise self._lost_error()
        return client

    async def _until_disconnect(
        self, client: aiomqtt.Client, call: Coroutine[None, None, _T]
    ) -> _T:
        """Await an aiomqtt call, or raise MqttError if the connection drops first."""
        task = asyncio.ensure_future(call)
        disconnected = client._disconnected
        try:
            done, _pending = await asyncio.wait(
                (task, disconnected), return_when=asyncio.FIRST_COMPLETED
            )
        except BaseException:
            task.cancel()
            with anyio.CancelScope(shield=True):
                await asyncio.wait([task])
            raise
        if task in done:
            try:
                return task.result()
            except aiomqtt.MqttError as exc:
                raise MqttError(f"MQTT operation on {self._url} failed: {exc}") from None
            except ValueError as exc:  # from paho: a bad topic, QoS or payload
                raise ParameterError(str(exc)) from None
        task.cancel()
        with anyio.CancelScope(shield=True):
            await asyncio.wait([task])
        raise self._lost_error()

    async def subscribe(self, *topics: str, qos: int = 1) -> None:
        """Subscribe and wait for the broker's SUBACK; a refused filter raises MqttError."""
        await anyio.lowlevel.checkpoint_if_cancelled()
        if not topics:
            return
        client = self._usable_client()
        codes = await self._until_disconnect(
            client, client.subscribe([(topic, qos) for topic in topics], timeout=math.inf)
        )
        refused = [
            topic
            for topic, code in zip(topics, codes, strict=False)
            if (code.is_failure if isinstance(code, ReasonCode) else code >= 0x80)
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
        client = self._usable_client()
        await self._until_disconnect(
            client, client.publish(topic, payload, qos, retain, timeout=math.inf)
        )

    def messages(self) -> AsyncIterator[MqttMessage]:
        """Incoming messages, in order. Raises MqttError when the connection is lost."""
        return _MessageIterator(self)

    async def next_message(self) -> MqttMessage:
        client = self._client
        if client is None or not self._open:
            raise self._lost_error()
        queue = client._queue
        if queue.empty():
            if client._disconnected.done():
                raise self._lost_error()
            message = await queue.get()  # (a cancelled get() leaves the queue as it was)
        else:
            await anyio.lowlevel.checkpoint()
            message = queue.get_nowait()
        if message is _LOST:
            queue.put_nowait(_LOST)  # for any other reader, and the next call
            raise self._lost_error()
        return MqttMessage(message.topic.value, message.payload, message.qos, message.retain)

    async def deliver(self, handler: Callable[[MqttMessage], None]) -> NoReturn:
        """Call ``handler`` with every incoming message, in order, until the connection is
        lost: then raise MqttError. An exception the handler raises is logged and the next
        message goes on."""
        while True:
            message = await self.next_message()
            try:
                handler(message)
            except Exception:  # the handler's bug must not end the connection for everyone
                logger.exception("MQTT message handler failed on a message on %r", message.topic)
