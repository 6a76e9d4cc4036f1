"""REST calls to the compute service: auth headers, error mapping, streamed upload and download."""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import AsyncGenerator, Generator, Mapping
from contextlib import aclosing
from pathlib import Path, PurePosixPath
from typing import BinaryIO, TypeAlias, TypeVar, cast
from urllib.parse import quote

import anyio
import httpx
from pydantic import BaseModel

from .._core.errors import (
    ApiError,
    ClClientError,
    DownloadError,
    JobNotFoundError,
    NotFoundError,
    ParameterError,
    ProtocolError,
    error_from_response,
)
from .._core.models import (
    CapabilitiesResponse,
    CleanupResult,
    ComputeConfig,
    JobCreated,
    JobResponse,
    ServerInfo,
    StorageInfo,
)
from .._core.payloads import check_identifier, decode_body, decode_job_response
from .._core.settings import ClientSettings, redact_url
from .exchange import (
    close_response,
    describe,
    exchange,
    mapped_errors,
    read_body,
    timed_out,
)
from .retry import AuthProvider, send_with_retry

__all__ = ["ComputeHttp", "FileArg", "FormValue", "local_errors", "local_path", "safe_join"]

logger = logging.getLogger("cl_client")

FileArg: TypeAlias = str | os.PathLike[str]
"""A local file to upload: a ``str`` or a ``pathlib.Path`` (any ``os.PathLike[str]``)."""
FormValue: TypeAlias = str | int | float | bool | None
"""A form field value: sent as text (booleans as ``true``/``false``); None leaves it out."""
_CHUNK = 64 * 1024
M = TypeVar("M", bound=BaseModel)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def local_path(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` as a Path, refusing NUL and other control characters (ParameterError)."""
    try:
        text = cast(object, os.fspath(path))
    except TypeError:
        raise ParameterError(f"{what} must be a path, got {path!r}") from None
    if not isinstance(text, str) or not text or _CONTROL.search(text):
        raise ParameterError(f"{what} must be a non-empty path without control characters")
    return Path(text)


@contextlib.contextmanager
def local_errors(path: Path) -> Generator[None]:
    """OS errors of local file operations on ``path`` as DownloadError (with the path)."""
    try:
        yield
    except ClClientError:
        raise
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise DownloadError(f"cannot write {str(path)!r}: {reason}") from exc


def safe_join(directory: Path, relative: str) -> Path:
    """``directory / relative``, refusing any path that would land outside ``directory``."""
    rel = PurePosixPath(relative.replace("\\", "/"))
    if (
        rel.is_absolute()
        or ".." in rel.parts
        or not rel.parts
        or str(rel) == "."
        or _CONTROL.search(relative)
    ):
        raise DownloadError(
            f"refusing to write {relative!r}: the path must be relative, stay inside "
            f"{str(directory)!r} and hold no control characters"
        )
    with local_errors(directory):
        target = (local_path(directory, "the directory") / Path(*rel.parts)).resolve()
        root = directory.resolve()
    if not target.is_relative_to(root):
        raise DownloadError(f"refusing to write {relative!r} outside {str(directory)!r}")
    return target


def _open_binary(path: Path) -> BinaryIO:
    return path.open("rb")


def _form_text(value: FormValue) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class ComputeHttp:
    """Thin REST layer. Every method raises a :class:`~cl_client.ClClientError` on failure.

    Each request (one attempt: connect, send, read the whole answer) must finish within
    ``settings.http_timeout``; answers kept in memory are limited to
    ``settings.max_response_size`` bytes; bodies are decoded by the total decoders of
    ``_core.payloads`` (ProtocolError for anything unexpected).
    """

    def __init__(
        self, settings: ClientSettings, auth: AuthProvider, client: httpx.AsyncClient
    ) -> None:
        self.settings = settings
        self.auth = auth
        self.client = client
        self._hint = f"is the compute service running at {redact_url(settings.compute_url)}?"

    def path(self, template: str, **values: str) -> str:
        return template.format(**{k: quote(v, safe="") for k, v in values.items()})

    def _request(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        params: Mapping[str, str | int] | None = None,
        data: Mapping[str, str] | None = None,
        files: Mapping[str, tuple[str, BinaryIO]] | None = None,
    ) -> httpx.Request:
        url = f"{self.settings.compute_url}{path}"
        with mapped_errors(f"{method} {redact_url(url)}"):
            return self.client.build_request(
                method, url, params=params, data=data, files=files, headers=headers
            )

    async def send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        data: Mapping[str, str] | None = None,
        files: Mapping[str, tuple[str, BinaryIO]] | None = None,
    ) -> bytes:
        """Send a request with auth headers and return the body of a successful answer.

        An error status raises the matching ApiError; a 401 on an idempotent request asks the
        auth provider and is retried once (:func:`~cl_client._transports.retry.send_with_retry`).
        """
        settings = self.settings

        async def attempt(headers: Mapping[str, str]) -> tuple[httpx.Response, bytes]:
            request = self._request(method, path, headers, params, data, files)
            return await exchange(
                self.client,
                request,
                timeout=settings.http_timeout,
                max_size=settings.max_response_size,
                hint=self._hint,
            )

        response, body = await send_with_retry(
            method, self.auth, attempt, lambda r: r[0].status_code
        )
        if response.status_code < 400:
            return body
        raise error_from_response(response, body)

    async def get_model(self, model: type[M], path: str, **kw: str | int) -> M:
        body = await self.send("GET", path, params=kw or None)
        return self._decode(model, body, "GET", path)

    def _decode(self, model: type[M], body: bytes, method: str, path: str) -> M:
        return decode_body(
            model,
            body,
            f"answer to {method} {path} ({model.__name__})",
            max_size=self.settings.max_response_size,
        )

    # -- jobs --------------------------------------------------------------------------------
    async def submit(
        self,
        task_type: str,
        file: FileArg | None,
        params: Mapping[str, FormValue] | None,
        priority: int,
    ) -> JobCreated:
        """``POST`` the form (and the file, streamed, as the ``file`` part) to the submit path."""
        if not 0 <= priority <= 10:
            raise ParameterError(f"priority must be an integer from 0 to 10, got {priority!r}")
        if params and "priority" in params:
            raise ParameterError("pass the priority as the priority argument, not in params")
        form = {k: t for k, v in (params or {}).items() if (t := _form_text(v)) is not None}
        form["priority"] = str(priority)
        path = self.path(self.settings.submit_path, task_type=task_type)
        if file is None:
            return self._decode(JobCreated, await self.send("POST", path, data=form), "POST", path)
        source = local_path(file, "the file to upload")
        if not await anyio.Path(source).is_file():
            exists = await anyio.Path(source).exists()
            raise ParameterError(
                f"cannot upload {str(source)!r}: "
                + ("it is not a regular file" if exists else "no such file")
            )
        try:
            handle = await anyio.to_thread.run_sync(_open_binary, source)
        except OSError as exc:
            raise ParameterError(f"cannot read {str(source)!r}: {exc.strerror}") from None
        with handle:
            body = await self.send("POST", path, data=form, files={"file": (source.name, handle)})
        created = self._decode(JobCreated, body, "POST", path)
        check_identifier(created.job_id, "job_id of the submitted job")
        return created

    def file_path(self, job_id: str, file_path: str) -> str:
        """The URL path of a job file; ``file_path`` is relative to the job directory."""
        relative = PurePosixPath(file_path.strip("/"))
        if not relative.parts or ".." in relative.parts or _CONTROL.search(file_path):
            raise ParameterError(
                f"invalid job file path {file_path!r}: it must be relative, without '..' "
                "or control characters"
            )
        encoded = "/".join(quote(part, safe="") for part in relative.parts)
        return self.settings.job_file_path.format(job_id=quote(job_id, safe=""), file_path=encoded)

    async def read_file(self, job_id: str, file_path: str) -> bytes:
        """A (small) job file, in memory (at most ``settings.max_response_size`` bytes)."""
        try:
            return await self.send("GET", self.file_path(job_id, file_path))
        except NotFoundError as exc:
            raise _file_not_found(job_id, exc) from None

    async def get_job(self, job_id: str) -> JobResponse:
        """``GET /jobs/{job_id}`` (JobNotFoundError for an unknown job)."""
        path = self.path(self.settings.job_path, job_id=job_id)
        try:
            body = await self.send("GET", path)
        except NotFoundError as exc:
            raise JobNotFoundError.from_error(job_id, exc) from None
        job = decode_job_response(
            body, f"answer to GET {path}", max_size=self.settings.max_response_size
        )
        if job.job_id != job_id:
            raise ProtocolError(f"GET {path} answered with job {job.job_id[:60]!r}")
        return job

    async def delete_job(self, job_id: str) -> None:
        """``DELETE /jobs/{job_id}`` (JobNotFoundError for an unknown job)."""
        try:
            await self.send("DELETE", self.path(self.settings.job_path, job_id=job_id))
        except NotFoundError as exc:
            raise JobNotFoundError.from_error(job_id, exc) from None

    async def download(
        self, job_id: str, file_path: str, target: Path, *, overwrite: bool = False
    ) -> Path:
        """Stream a job file into ``target`` via a temporary file renamed into place.

        ``settings.http_timeout`` bounds the whole download. Local failures (no space, a
        read-only file system, a parent that is a file) raise DownloadError; nothing partial
        is left behind.
        """
        url_path = self.file_path(job_id, file_path)
        target = local_path(target, "the download target")
        with local_errors(target):
            existing = anyio.Path(target)
            if await existing.exists():
                if not overwrite:
                    raise DownloadError(
                        f"{str(target)!r} already exists; pass overwrite=True to replace it"
                    )
                if not await existing.is_file():
                    raise DownloadError(f"{str(target)!r} exists and is not a regular file")
            await anyio.Path(target.parent).mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.part-{os.getpid()}-{id(target):x}")
        timeout = self.settings.http_timeout

        async def attempt(headers: Mapping[str, str]) -> tuple[httpx.Response, bytes]:
            request = self._request("GET", url_path, headers)
            shown = describe(request)
            with anyio.move_on_after(timeout):
                with mapped_errors(shown, self._hint):
                    response = await self.client.send(request, stream=True)
                try:
                    if response.status_code < 400:
                        await self._save(response, partial, target, shown)
                        with local_errors(target):
                            await anyio.Path(partial).replace(target)
                        return response, b""
                    with mapped_errors(shown):
                        body = await read_body(response, self.settings.max_response_size, shown)
                    return response, body
                finally:
                    await close_response(response)
            raise timed_out(shown, timeout)

        try:
            response, body = await send_with_retry(
                "GET", self.auth, attempt, lambda r: r[0].status_code
            )
            if response.status_code < 400:
                return target
            error = error_from_response(response, body)
            if isinstance(error, NotFoundError):
                raise _file_not_found(job_id, error)
            raise error
        finally:
            with anyio.CancelScope(shield=True), contextlib.suppress(OSError):
                await anyio.Path(partial).unlink(missing_ok=True)

    async def _save(
        self, response: httpx.Response, partial: Path, target: Path, shown: str
    ) -> None:
        # aclosing: a cancelled download must not leave the body iterator to the GC.
        chunks = cast(AsyncGenerator[bytes, None], response.aiter_bytes(_CHUNK))
        with local_errors(target):
            out = await anyio.open_file(partial, "wb")
        async with out, aclosing(chunks):
            while True:
                with mapped_errors(shown):
                    chunk = await anext(chunks, None)
                if chunk is None:
                    break
                with local_errors(target):
                    await out.write(chunk)

    # -- service -----------------------------------------------------------------------------
    async def server_info(self) -> ServerInfo:
        return await self.get_model(ServerInfo, self.settings.root_path)

    async def capabilities(self) -> CapabilitiesResponse:
        return await self.get_model(CapabilitiesResponse, self.settings.capabilities_path)

    async def storage(self) -> StorageInfo:
        return await self.get_model(StorageInfo, self.settings.admin_storage_path)

    async def cleanup(self, days: int) -> CleanupResult:
        if days < 0:
            raise ParameterError(f"days must be 0 or more, got {days}")
        path = self.settings.admin_cleanup_path
        body = await self.send("DELETE", path, params={"days": days})
        return self._decode(CleanupResult, body, "DELETE", path)

    async def get_config(self) -> ComputeConfig:
        last: ApiError | None = None
        for path in self.settings.admin_config_paths:
            try:
                return await self.get_model(ComputeConfig, path)
            except NotFoundError as exc:
                last = exc
        assert last is not None
        raise last

    async def set_guest_mode(self, enabled: bool) -> ComputeConfig:
        last: ApiError | None = None
        for path in self.settings.admin_config_paths:
            try:
                await self.send(
                    "PUT", f"{path}/guest-mode", data={"guest_mode": "true" if enabled else "false"}
                )
            except NotFoundError as exc:
                last = exc
                continue
            return await self.get_model(ComputeConfig, path)
        assert last is not None
        raise last


def _file_not_found(job_id: str, error: NotFoundError) -> NotFoundError:
    """A 404 of the file route: JobNotFoundError when the job (or its directory) is unknown,
    the NotFoundError itself when only the file is missing (``File not found: ...``)."""
    detail = error.detail
    if isinstance(detail, str) and detail.startswith("Job "):
        return JobNotFoundError.from_error(job_id, error)
    return error
