"""cl-client: an async (anyio: asyncio and trio) client for the CL Server compute service.

::

    from cl_client import ComputeClient

    async with ComputeClient(compute_url="http://host:8002", mqtt_url="mqtt://host:1883") as client:
        created = await client.submit("hash", "photo.jpg")
        job = await client.wait(created.job_id)
"""

from ._callbacks import OnComplete, OnProgress
from ._client import ClientStats, ComputeClient
from ._errors import (
    ApiError,
    AuthenticationError,
    BadRequestError,
    ClClientError,
    ClientClosedError,
    DownloadError,
    JobFailedError,
    JobTimeoutError,
    MqttError,
    NotFoundError,
    ParameterError,
    PermissionDeniedError,
    ProtocolError,
    RequestValidationError,
    ServerError,
    SessionExpiredError,
    TransportError,
    WorkerUnavailableError,
)
from ._models import (
    CapabilitiesResponse,
    CleanupResult,
    ComputeConfig,
    JobCreated,
    JobEvent,
    JobResponse,
    JobStatus,
    JobUpdate,
    ServerInfo,
    StorageInfo,
    WorkerEvent,
    WorkerInfo,
)
from ._settings import ClientSettings, MqttEndpoint, parse_mqtt_url
from ._watch import JobWatch
from ._workers import WorkerWatch
from .auth import AuthClient, AuthProvider, JWTAuthProvider, NoAuthProvider, SessionManager

__all__ = [
    "ApiError",
    "AuthClient",
    "AuthProvider",
    "AuthenticationError",
    "BadRequestError",
    "CapabilitiesResponse",
    "ClClientError",
    "CleanupResult",
    "ClientClosedError",
    "ClientSettings",
    "ClientStats",
    "ComputeClient",
    "ComputeConfig",
    "DownloadError",
    "JWTAuthProvider",
    "JobCreated",
    "JobEvent",
    "JobFailedError",
    "JobResponse",
    "JobStatus",
    "JobTimeoutError",
    "JobUpdate",
    "JobWatch",
    "MqttEndpoint",
    "MqttError",
    "NoAuthProvider",
    "NotFoundError",
    "OnComplete",
    "OnProgress",
    "ParameterError",
    "PermissionDeniedError",
    "ProtocolError",
    "RequestValidationError",
    "ServerError",
    "ServerInfo",
    "SessionExpiredError",
    "SessionManager",
    "StorageInfo",
    "TransportError",
    "WorkerEvent",
    "WorkerInfo",
    "WorkerUnavailableError",
    "WorkerWatch",
    "parse_mqtt_url",
]
