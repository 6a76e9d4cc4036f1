"""Local CL Server services and pytest fixtures for testing without a real server."""

from cl_client._public import set_public_module as _set_public_module
from cl_client.testing._auth_app import RecordedRequest, StoredUser
from cl_client.testing._auth_service import LocalAuthService
from cl_client.testing._broker import BrokerStats, EmbeddedBroker
from cl_client.testing._compute_auth import ComputeAuthorizer
from cl_client.testing._faults import (
    EventAction,
    EventMessage,
    EventRule,
    Faults,
    JobAction,
    JobRecord,
    JobRule,
    ReadRule,
)
from cl_client.testing._jobs import ComputeState, LocalWorker, generic_task
from cl_client.testing._plugin_base import TaskContext, TaskFn, ffmpeg_path
from cl_client.testing._service import LocalComputeService, WorkersSpec

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

_set_public_module(globals(), __all__, __name__)
