"""The cl-client error tree.

::

    ClClientError (alias: ComputeClientError, the upstream SDK's name)
    ├── ClientClosedError              the ComputeClient is not open (or closed during a call)
    ├── TransportError                 the server or broker could not be reached / connection lost
    │   └── MqttError                  MQTT connect, subscribe or publish failed
    ├── ApiError                       the server answered an error status (.status_code, .detail)
    │   ├── BadRequestError            400
    │   ├── AuthenticationError        401 (also: bad credentials, session expired)
    │   │   └── SessionExpiredError    the token expired and no credentials are held to log in again
    │   ├── PermissionDeniedError      403
    │   ├── NotFoundError              404
    │   │   └── JobNotFoundError       no such job (.job_id): get, delete, wait, watch, files
    │   ├── RequestValidationError     422 (.errors: the server's field errors)
    │   └── ServerError                5xx
    ├── ProtocolError                  a payload from the server does not have the expected shape
    ├── JobFailedError                 the job ended with status ``error`` (.job)
    ├── JobTimeoutError                a job wait ran out of time (also a TimeoutError)
    ├── WorkerUnavailableError         no worker offers a needed capability (.missing, .available)
    ├── ParameterError                 a client-side check of an argument failed (also a ValueError)
    └── DownloadError                  a download target is unsafe or exists (also an OSError)

Every exception the library raises on purpose is a ClClientError; none shadows a builtin name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

from pydantic import JsonValue

if TYPE_CHECKING:
    import httpx

    from .models import JobResponse

__all__ = [
    "ApiError",
    "AuthenticationError",
    "BadRequestError",
    "ClClientError",
    "ClientClosedError",
    "ComputeClientError",
    "DownloadError",
    "JobFailedError",
    "JobNotFoundError",
    "JobTimeoutError",
    "MqttError",
    "NotFoundError",
    "ParameterError",
    "PermissionDeniedError",
    "ProtocolError",
    "RequestValidationError",
    "ServerError",
    "SessionExpiredError",
    "TransportError",
    "WorkerUnavailableError",
    "error_from_response",
]


class ClClientError(Exception):
    """Base class of every error cl-client raises on purpose."""


ComputeClientError = ClClientError
"""The upstream SDK's name of the root error: an alias of :class:`ClClientError`."""


class ClientClosedError(ClClientError):
    """The ComputeClient is not open, or was closed while a call was waiting."""


class TransportError(ClClientError):
    """The compute service, auth service or MQTT broker could not be reached."""


class MqttError(TransportError):
    """An MQTT connection could not be made, or was lost."""


class ApiError(ClClientError):
    """The server answered with an error status. ``detail`` is the server's own message."""

    status_code: int | None
    detail: JsonValue
    method: str | None
    url: str | None

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        detail: JsonValue = None,
        method: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.detail = detail
        self.method = method
        self.url = url


class BadRequestError(ApiError):
    """400: the server refused the request (for example an invalid file path)."""


class AuthenticationError(ApiError):
    """401, or credentials that do not work: log in (again) with valid credentials."""


class SessionExpiredError(AuthenticationError):
    """The token expired and the session holds no credentials to log in again."""


class PermissionDeniedError(ApiError):
    """403: authenticated, but lacking the permission (``ai_inference_support`` or admin)."""


class NotFoundError(ApiError):
    """404: no such job, file or user."""


class JobNotFoundError(NotFoundError):
    """404 for a job: the server does not know ``job_id`` (never submitted, deleted or cleaned
    up). Raised by ``get_job``, ``delete_job``, the waits, watches and subscriptions of the job
    and its file downloads."""

    def __init__(
        self,
        job_id: str,
        message: str | None = None,
        *,
        status_code: int | None = 404,
        detail: JsonValue = None,
        method: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(
            message or f"job {job_id} not found",
            status_code=status_code,
            detail=detail,
            method=method,
            url=url,
        )
        self.job_id: str = job_id

    @classmethod
    def from_error(cls, job_id: str, error: NotFoundError) -> JobNotFoundError:
        """The job-level form of a 404 answer (keeping its message, detail and URL)."""
        if isinstance(error, JobNotFoundError):
            return error
        return cls(
            job_id,
            str(error),
            status_code=error.status_code,
            detail=error.detail,
            method=error.method,
            url=error.url,
        )


class RequestValidationError(ApiError):
    """422: the server rejected the request's fields. ``errors`` lists them as the server said."""

    @property
    def errors(self) -> list[JsonValue]:
        return list(self.detail) if isinstance(self.detail, list) else []


class ServerError(ApiError):
    """5xx: the server failed while handling the request."""


class ProtocolError(ClClientError):
    """A message or response did not have the shape the protocol promises."""


class JobFailedError(ClClientError):
    """The job ended with status ``error``. ``job`` is the final JobResponse."""

    def __init__(self, job: JobResponse) -> None:
        message = job.error_message or "no error message given"
        super().__init__(f"job {job.job_id} ({job.task_type}) failed: {message}")
        self.job = job


class JobTimeoutError(ClClientError, TimeoutError):
    """Waiting for a job took longer than the timeout the caller gave."""

    def __init__(self, job_id: str, timeout: float, last_status: str | None) -> None:
        super().__init__(
            f"job {job_id} did not finish within {timeout:g} s "
            f"(last status: {last_status or 'unknown'})"
        )
        self.job_id = job_id
        self.timeout = timeout
        self.last_status = last_status


class WorkerUnavailableError(ClClientError):
    """No live worker offers some needed capability."""

    def __init__(self, missing: Sequence[str], available: Sequence[str]) -> None:
        have = ", ".join(sorted(available)) or "none"
        super().__init__(
            f"no worker offers {', '.join(sorted(missing))}; capabilities available: {have}"
        )
        self.missing: list[str] = sorted(missing)
        self.available: list[str] = sorted(available)


class ParameterError(ClClientError, ValueError):
    """An argument failed a client-side check; nothing was sent."""


class DownloadError(ClClientError, OSError):
    """A download target is unsafe (outside the chosen directory) or already exists."""


_MAX_ERROR_BODY = 1024 * 1024
_MAX_DETAIL = 500

_STATUS_ERRORS: dict[int, type[ApiError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    422: RequestValidationError,
}


def _detail_text(detail: JsonValue) -> str:
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        parts: list[str] = []
        for item in detail:
            if isinstance(item, dict):
                loc = item.get("loc")
                where = ".".join(str(p) for p in loc) if isinstance(loc, list) else "?"
                parts.append(f"{where}: {item.get('msg', item)}")
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return str(detail)


def error_from_response(response: httpx.Response, body: bytes | None = None) -> ApiError:
    """Map an error response to the matching ApiError, keeping the server's ``detail``.

    ``body`` is the answer's body (default: ``response.content``, which must then be read). A
    body that is not JSON (or too large, too deep) becomes a short text ``detail``.
    """
    from .payloads import decode_json
    from .settings import redact_url

    data = response.content if body is None else body
    detail: JsonValue
    try:
        parsed = cast(JsonValue, decode_json(data, "error body", max_size=_MAX_ERROR_BODY))
    except ProtocolError:
        text = data[:_MAX_DETAIL].decode("utf-8", errors="replace").strip()
        detail = text or response.reason_phrase
    else:
        detail = parsed.get("detail", parsed) if isinstance(parsed, dict) else parsed
    status = response.status_code
    cls = _STATUS_ERRORS.get(status, ServerError if status >= 500 else ApiError)
    request = response.request
    summary = _detail_text(detail)
    if len(summary) > _MAX_DETAIL:
        summary = f"{summary[:_MAX_DETAIL]}..."
    message = f"{request.method} {request.url.path} -> {status}: {summary}"
    return cls(
        message,
        status_code=status,
        detail=detail,
        method=request.method,
        url=redact_url(request.url.copy_with(query=None)),
    )
