"""MQTT transport seam: one small interface, two implementations.

* asyncio: aiomqtt.
* trio: paho-mqtt driven by anyio (``wait_readable``/``wait_writable`` on its socket), because
  aiomqtt needs a running asyncio loop.

Only bytes move here: topics and payload meaning live in the sans-IO modules.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Literal, Protocol

from ._settings import MqttEndpoint

__all__ = ["MqttConnection", "MqttMessage", "connect_mqtt"]


@dataclass(frozen=True, slots=True)
class MqttMessage:
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


def connect_mqtt(
    endpoint: MqttEndpoint,
    *,
    client_id: str | None = None,
    keepalive: int = 60,
    connect_timeout: float = 10.0,
    will: MqttMessage | None = None,
    backend: Literal["auto", "aiomqtt", "paho"] = "auto",
) -> AbstractAsyncContextManager[MqttConnection]:
    """Open an MQTT v3.1.1 session (clean session). Raises MqttError naming the URL on failure."""
    raise NotImplementedError  # implemented by the transport work in progress
