"""Local CL Server services and pytest fixtures for testing without a real server."""

from cl_client.testing._auth_app import RecordedRequest, StoredUser
from cl_client.testing._auth_service import LocalAuthService
from cl_client.testing._broker import BrokerStats, EmbeddedBroker
from cl_client.testing._compute_auth import ComputeAuthorizer
from cl_client.testing._faults import (
    EventMessage,
    EventRule,
    Faults,
    JobRecord,
    JobRule,
    ReadRule,
)
from cl_client.testing._jobs import LocalWorker, generic_task
from cl_client.testing._service import LocalComputeService

__all__ = [
    "BrokerStats",
    "ComputeAuthorizer",
    "EmbeddedBroker",
    "EventMessage",
    "EventRule",
    "Faults",
    "JobRecord",
    "JobRule",
    "LocalAuthService",
    "LocalComputeService",
    "LocalWorker",
    "ReadRule",
    "RecordedRequest",
    "StoredUser",
    "generic_task",
]
