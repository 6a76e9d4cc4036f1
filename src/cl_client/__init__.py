"""cl-client: an async (anyio: asyncio and trio) client for the CL Server compute service.

::

    from cl_client import ComputeClient

    async with ComputeClient(compute_url="http://host:8002", mqtt_url="mqtt://host:1883") as client:
        created = await client.submit("hash", "photo.jpg")
        job = await client.wait(created.job_id)

Importing the package is cheap: each public name is imported from its module on first use
(PEP 562), so ``cl-client --help`` and a script that needs one corner of the library do not pay
for httpx, pydantic and the MQTT stack up front.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
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

# public name -> the module that defines it (imported on first use)
_LAZY: dict[str, str] = {
    "ApiError": "._errors",
    "AuthClient": ".auth",
    "AuthProvider": ".auth",
    "AuthenticationError": "._errors",
    "BadRequestError": "._errors",
    "CapabilitiesResponse": "._models",
    "ClClientError": "._errors",
    "CleanupResult": "._models",
    "ClientClosedError": "._errors",
    "ClientSettings": "._settings",
    "ClientStats": "._client",
    "ComputeClient": "._client",
    "ComputeConfig": "._models",
    "DownloadError": "._errors",
    "JWTAuthProvider": ".auth",
    "JobCreated": "._models",
    "JobEvent": "._models",
    "JobFailedError": "._errors",
    "JobResponse": "._models",
    "JobStatus": "._models",
    "JobTimeoutError": "._errors",
    "JobUpdate": "._models",
    "JobWatch": "._watch",
    "MqttEndpoint": "._settings",
    "MqttError": "._errors",
    "NoAuthProvider": ".auth",
    "NotFoundError": "._errors",
    "OnComplete": "._callbacks",
    "OnProgress": "._callbacks",
    "ParameterError": "._errors",
    "PermissionDeniedError": "._errors",
    "ProtocolError": "._errors",
    "RequestValidationError": "._errors",
    "ServerError": "._errors",
    "ServerInfo": "._models",
    "SessionExpiredError": "._errors",
    "SessionManager": ".auth",
    "StorageInfo": "._models",
    "TransportError": "._errors",
    "WorkerEvent": "._models",
    "WorkerInfo": "._models",
    "WorkerUnavailableError": "._errors",
    "WorkerWatch": "._workers",
    "parse_mqtt_url": "._settings",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cl_client' has no attribute {name!r}")
    value = cast(object, getattr(importlib.import_module(module, __name__), name))
    globals()[name] = value  # the next access is a plain module attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


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
