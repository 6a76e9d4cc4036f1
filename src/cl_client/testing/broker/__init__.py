"""An MQTT 3.1.1 broker in pure Python on anyio, for tests (no extra dependencies)."""

from ._broker import BrokerStats, EmbeddedBroker

__all__ = ["BrokerStats", "EmbeddedBroker"]
