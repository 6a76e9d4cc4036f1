"""A local compute service (FastAPI on hypercorn, the nine plugins, MQTT events) speaking the real
server's protocol; needs the 'local' extra."""

from .._extra import require_local_extra

require_local_extra("cl_client.testing.LocalComputeService")

from ._authorizer import ComputeAuthorizer  # noqa: E402
from ._faults import (  # noqa: E402
    EventAction,
    EventMessage,
    EventRule,
    Faults,
    JobAction,
    JobRecord,
    JobRule,
    ReadRule,
)
from ._jobs import ComputeState  # noqa: E402
from ._plugin_base import TaskContext, TaskFn, ffmpeg_path  # noqa: E402
from ._service import LocalComputeService, WorkersSpec  # noqa: E402
from ._worker import LocalWorker, generic_task  # noqa: E402

__all__ = [
    "ComputeAuthorizer",
    "ComputeState",
    "EventAction",
    "EventMessage",
    "EventRule",
    "Faults",
    "JobAction",
    "JobRecord",
    "JobRule",
    "LocalComputeService",
    "LocalWorker",
    "ReadRule",
    "TaskContext",
    "TaskFn",
    "WorkersSpec",
    "ffmpeg_path",
    "generic_task",
]
