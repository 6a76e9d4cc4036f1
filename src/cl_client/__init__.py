"""cl-client: an async (anyio: asyncio and trio) client for the CL Server compute service.

::

    from cl_client import ComputeClient

    async with ComputeClient(compute_url="http://host:8002", mqtt_url="mqtt://host:1883") as client:
        digest = await client.hash.run("photo.jpg", algorithm="md5")
        job = await client.hash.compute(image="photo.jpg", wait=True)   # the final JobResponse

Importing the package is cheap: each public name is imported from its module on first use
(PEP 562), so ``cl-client --help`` and a script that needs one corner of the library do not pay
for httpx, pydantic and the MQTT stack up front. Public names report this module as theirs
(``repr(cl_client.NotFoundError)`` is ``<class 'cl_client.NotFoundError'>``).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from ._public import load_lazy as _load_lazy
from ._public import set_public_module as _set_public_module

if TYPE_CHECKING:
    from ._callbacks import OnComplete, OnProgress
    from ._client import ClientStatistics, ComputeClient
    from ._core.errors import (
        ApiError,
        AuthenticationError,
        BadRequestError,
        ClClientError,
        ClientClosedError,
        ComputeClientError,
        DownloadError,
        JobFailedError,
        JobNotFoundError,
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
    from ._core.mailbox import MailboxStatistics
    from ._core.models import (
        CapabilitiesResponse,
        CleanupResult,
        ComputeConfig,
        JobEvent,
        JobResponse,
        JobStatus,
        JobUpdate,
        ServerInfo,
        StorageInfo,
        WorkerEvent,
        WorkerInfo,
    )
    from ._core.settings import ClientSettings, MqttEndpoint, SettingsOverrides, parse_mqtt_url
    from ._core.workers import WorkerWatch
    from ._options import RunOptions, SubmitOptions
    from ._transports.http import FileArg, FormValue
    from ._version import __version__ as __version__
    from ._watch import JobWatch
    from .auth import AuthClient, AuthProvider, JWTAuthProvider, NoAuthProvider, SessionManager

# public name -> the module that defines it (imported on first use)
_LAZY: dict[str, str] = {
    "ApiError": "._core.errors",
    "AuthClient": ".auth",
    "AuthProvider": ".auth",
    "AuthenticationError": "._core.errors",
    "BadRequestError": "._core.errors",
    "CapabilitiesResponse": "._core.models",
    "ClClientError": "._core.errors",
    "CleanupResult": "._core.models",
    "ClientClosedError": "._core.errors",
    "ClientSettings": "._core.settings",
    "ClientStatistics": "._client",
    "ComputeClient": "._client",
    "ComputeClientError": "._core.errors",
    "ComputeConfig": "._core.models",
    "DownloadError": "._core.errors",
    "FileArg": "._transports.http",
    "FormValue": "._transports.http",
    "JWTAuthProvider": ".auth",
    "JobEvent": "._core.models",
    "JobFailedError": "._core.errors",
    "JobNotFoundError": "._core.errors",
    "JobResponse": "._core.models",
    "JobStatus": "._core.models",
    "JobTimeoutError": "._core.errors",
    "JobUpdate": "._core.models",
    "JobWatch": "._watch",
    "MailboxStatistics": "._core.mailbox",
    "MqttEndpoint": "._core.settings",
    "MqttError": "._core.errors",
    "NoAuthProvider": ".auth",
    "NotFoundError": "._core.errors",
    "OnComplete": "._callbacks",
    "OnProgress": "._callbacks",
    "ParameterError": "._core.errors",
    "PermissionDeniedError": "._core.errors",
    "ProtocolError": "._core.errors",
    "RequestValidationError": "._core.errors",
    "RunOptions": "._options",
    "ServerError": "._core.errors",
    "ServerInfo": "._core.models",
    "SessionExpiredError": "._core.errors",
    "SessionManager": ".auth",
    "SettingsOverrides": "._core.settings",
    "StorageInfo": "._core.models",
    "SubmitOptions": "._options",
    "TransportError": "._core.errors",
    "WorkerEvent": "._core.models",
    "WorkerInfo": "._core.models",
    "WorkerUnavailableError": "._core.errors",
    "WorkerWatch": "._core.workers",
    "parse_mqtt_url": "._core.settings",
    "__version__": "._version",  # not in __all__: read from the package metadata on first use
}


def __getattr__(name: str) -> object:
    value = _load_lazy(globals(), __name__, _LAZY, name)
    _name_loaded()
    return value


def _name_loaded() -> None:
    """Give every public name whose module is loaded by now this module as its ``__module__``
    (so an error raised inside the library shows ``cl_client.JobNotFoundError`` even if the
    program never looked it up here)."""
    for public, module in _LAZY.items():
        loaded = sys.modules.get(f"{__name__}{module}")
        if loaded is not None:
            _set_public_module(vars(loaded), [public], __name__)


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
    "ClientStatistics",
    "ComputeClient",
    "ComputeClientError",
    "ComputeConfig",
    "DownloadError",
    "FileArg",
    "FormValue",
    "JWTAuthProvider",
    "JobEvent",
    "JobFailedError",
    "JobNotFoundError",
    "JobResponse",
    "JobStatus",
    "JobTimeoutError",
    "JobUpdate",
    "JobWatch",
    "MailboxStatistics",
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
    "RunOptions",
    "ServerError",
    "ServerInfo",
    "SessionExpiredError",
    "SessionManager",
    "SettingsOverrides",
    "StorageInfo",
    "SubmitOptions",
    "TransportError",
    "WorkerEvent",
    "WorkerInfo",
    "WorkerUnavailableError",
    "WorkerWatch",
    "parse_mqtt_url",
]
