"""Local CL Server services and pytest fixtures for testing without a real server.

Three products, each in its own package:

* ``broker``: :class:`EmbeddedBroker`, an MQTT broker in pure Python (no extra dependencies);
* ``compute``: :class:`LocalComputeService`, the compute service with its nine plugins;
* ``auth``: :class:`LocalAuthService`, the auth service.

The last two need the ``local`` extra (``pip install 'cl-client[local]'``); names are imported
when first used, so ``from cl_client.testing import EmbeddedBroker`` works without it and the
others raise ModuleNotFoundError with the install command.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cl_client._public import load_lazy as _load_lazy

if TYPE_CHECKING:
    from cl_client.testing.auth import LocalAuthService, RecordedRequest, StoredUser
    from cl_client.testing.broker import BrokerStats, EmbeddedBroker
    from cl_client.testing.compute import (
        ComputeAuthorizer,
        ComputeState,
        EventAction,
        EventMessage,
        EventRule,
        Faults,
        JobAction,
        JobRecord,
        JobRule,
        LocalComputeService,
        LocalWorker,
        ReadRule,
        TaskContext,
        TaskFn,
        WorkersSpec,
        ffmpeg_path,
        generic_task,
    )

__all__ = [
    "BrokerStats",
    "ComputeAuthorizer",
    "ComputeState",
    "EmbeddedBroker",
    "EventAction",
    "EventMessage",
    "EventRule",
    "Faults",
    "JobAction",
    "JobRecord",
    "JobRule",
    "LocalAuthService",
    "LocalComputeService",
    "LocalWorker",
    "ReadRule",
    "RecordedRequest",
    "StoredUser",
    "TaskContext",
    "TaskFn",
    "WorkersSpec",
    "ffmpeg_path",
    "generic_task",
]

_BROKER = ("BrokerStats", "EmbeddedBroker")
_AUTH = ("LocalAuthService", "RecordedRequest", "StoredUser")
_LAZY = {
    name: ".broker" if name in _BROKER else ".auth" if name in _AUTH else ".compute"
    for name in __all__
}


def __getattr__(name: str) -> object:
    return _load_lazy(globals(), __name__, _LAZY, name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
