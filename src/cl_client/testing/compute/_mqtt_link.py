"""The local compute service's one broker connection (like the real server's singleton paho
client)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskStatus

from ..._core.errors import MqttError
from ..._core.settings import (
    MqttEndpoint,
)
from ..._transports.mqtt.connection import MqttConnection, MqttMessage, connect_mqtt
from ._jobs import Signal

if TYPE_CHECKING:
    pass

__all__ = ["MqttLink"]

_LOG = logging.getLogger("cl_client.testing.compute")
_LINK_ERRORS = (MqttError, OSError, anyio.BrokenResourceError, anyio.ClosedResourceError)


class MqttLink:
    """The service's one broker connection (like the real server's singleton paho client).

    Reconnects with backoff when the broker goes away; messages published meanwhile are kept and
    sent, in order, after reconnecting (paho queues QoS 1 messages the same way). Incoming
    messages (the capability topic) go to ``on_message``.
    """

    def __init__(
        self,
        endpoint: MqttEndpoint,
        *,
        subscriptions: Sequence[str],
        on_message: Callable[[MqttMessage], None],
        reconnect_delay: float = 0.05,
        max_reconnect_delay: float = 1.0,
        publish_timeout: float = 5.0,
    ) -> None:
        self._endpoint = endpoint
        self._subscriptions = list(subscriptions)
        self._on_message = on_message
        self._reconnect_delay = reconnect_delay
        self._max_reconnect_delay = max_reconnect_delay
        self._publish_timeout = publish_timeout
        self._conn: MqttConnection | None = None
        self._pending: list[MqttMessage] = []
        self._lock = anyio.Lock()
        self.connections = 0
        self.changed = Signal()
        """Fired when the connection comes up or goes down."""
        self.on_reconnect: Callable[[], object] | None = None

    @property
    def connected(self) -> bool:
        return self._conn is not None

    @property
    def pending(self) -> int:
        """Messages waiting for the broker to come back."""
        return len(self._pending)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        delay = self._reconnect_delay
        while True:
            try:
                async with connect_mqtt(self._endpoint, connect_timeout=5.0) as conn:
                    if self._subscriptions:
                        await conn.subscribe(*self._subscriptions, qos=1)
                    async with self._lock:
                        self._conn = conn
                        await self._flush(conn)
                    self.connections += 1
                    self.changed.fire()
                    if self.connections == 1:
                        task_status.started()
                    elif self.on_reconnect is not None:
                        _ = self.on_reconnect()
                    delay = self._reconnect_delay
                    async for message in conn.messages():
                        try:
                            self._on_message(message)
                        except Exception:  # a bug must not end the service's broker link
                            _LOG.exception("error while handling a message on %r", message.topic)
            except _LINK_ERRORS as exc:
                if self.connections == 0:
                    raise
                _LOG.debug("local compute service lost the broker: %s", exc)
            finally:
                if self._conn is not None:
                    self._conn = None
                    self.changed.fire()
            await anyio.sleep(delay)
            delay = min(delay * 2, self._max_reconnect_delay)

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> None:
        """Publish now if connected, else keep the message for the next connection."""
        async with self._lock:
            self._pending.append(MqttMessage(topic, payload, qos, retain))
            if self._conn is not None:
                await self._flush(self._conn)

    async def _flush(self, conn: MqttConnection) -> None:
        while self._pending:
            msg = self._pending[0]
            sent = False
            with anyio.move_on_after(self._publish_timeout):
                try:
                    await conn.publish(msg.topic, msg.payload, qos=msg.qos, retain=msg.retain)
                    sent = True
                except _LINK_ERRORS as exc:
                    _LOG.debug("publish on %s failed, kept for later: %s", msg.topic, exc)
            if not sent:
                return
            _ = self._pending.pop(0)
