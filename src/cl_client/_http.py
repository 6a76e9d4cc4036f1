"""REST calls to the compute service: auth headers, error mapping, streamed upload and download."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from pathlib import Path, PurePosixPath
from typing import BinaryIO, TypeAlias, TypeVar, cast
from urllib.parse import quote

import anyio
import httpx
from pydantic import BaseModel, JsonValue, ValidationError

from ._errors import (
    ApiError,
    DownloadError,
    JobNotFoundError,
    NotFoundError,
    ParameterError,
    ProtocolError,
    TransportError,
    error_from_response,
)
from ._models import (
    CapabilitiesResponse,
    CleanupResult,
    ComputeConfig,
    JobCreated,
    JobResponse,
    ServerInfo,
    StorageInfo,
)
from ._settings import ClientSettings
from .auth import AuthProvider
from .auth._providers import send_with_retry

__all__ = ["ComputeHttp", "FileArg", "FormValue", "safe_join"]

logger = logging.getLogger("cl_client")

FileArg: TypeAlias = str | os.PathLike[str]
"""A local file to upload: a ``str`` or a ``pathlib.Path`` (any ``os.PathLike[str]``)."""
FormValue: TypeAlias = str | int | float | bool | None
"""A form field value: sent as text (booleans as ``true``/``false``); None leaves it out."""
_CHUNK = 64 * 1024
M = TypeVar("M", bound=BaseModel)


def safe_join(directory: Path, relative: str) -> Path:
    """``directory / relative``, refusing any path that would land outside ``directory``."""
    rel = PurePosixPath(relative.replace("\\", "/"))
    if rel.is_absolute() or ".." in rel.parts or not rel.parts or str(rel) == ".":
        raise DownloadError(
            f"refusing to write {relative!r}: the path must be relative and stay inside "
            f"{str(directory)!r}"
        )
    target = (directory / Path(*rel.parts)).resolve()
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
    """Thin REST layer. Every method raises a :class:`~cl_client.ClClientError` on failure."""

    def __init__(
        self, settings: ClientSettings, auth: AuthProvider, client: httpx.AsyncClient
    ) -> None:
        self.settings = settings
        self.auth = auth
        self.client = client

    def path(self, template: str, **values: str) -> str:
        return template.format(**{k: quote(v, safe="") for k, v in values.items()})

    async def send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        data: Mapping[str, str] | None = None,
        files: Mapping[str, tuple[str, BinaryIO]] | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        """Send a request with auth headers; map errors. With ``stream``, the caller closes it.

        A 401 on an idempotent request asks the auth provider and is retried once
        (:func:`~cl_client.auth._providers.send_with_retry`).
        """
        url = f"{self.settings.compute_url}{path}"

        async def attempt(headers: Mapping[str, str]) -> httpx.Response:
            request = self.client.build_request(
                method, url, params=params, data=data, files=files, headers=headers
            )
            try:
                response = await self.client.send(request, stream=True)
            except httpx.TransportError as exc:
                raise TransportError(
                    f"{method} {url} failed: {type(exc).__name__}: {exc or 'no detail'} "
                    f"(is the compute service running at {self.settings.compute_url}?)"
                ) from exc
            if response.status_code >= 400 or not stream:
                try:
                    await response.aread()
                finally:
                    await response.aclose()
            return response

        response = await send_with_retry(method, self.auth, attempt, lambda r: r.status_code)
        if response.status_code < 400:
            return response
        raise error_from_response(response)

    async def get_model(self, model: type[M], path: str, **kw: str | int) -> M:
        response = await self.send("GET", path, params=kw or None)
        return _parse(model, response)

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
            return _parse(JobCreated, await self.send("POST", path, data=form))
        source = Path(file)
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
            response = await self.send(
                "POST", path, data=form, files={"file": (source.name, handle)}
            )
        return _parse(JobCreated, response)

    def file_path(self, job_id: str, file_path: str) -> str:
        """The URL path of a job file; ``file_path`` is relative to the job directory."""
        relative = PurePosixPath(file_path.strip("/"))
        if not relative.parts or ".." in relative.parts:
            raise ParameterError(
                f"invalid job file path {file_path!r}: it must be relative, without '..'"
            )
        encoded = "/".join(quote(part, safe="") for part in relative.parts)
        return self.settings.job_file_path.format(job_id=quote(job_id, safe=""), file_path=encoded)

    async def read_file(self, job_id: str, file_path: str) -> bytes:
        """A (small) job file, in memory."""
        try:
            return (await self.send("GET", self.file_path(job_id, file_path))).content
        except NotFoundError as exc:
            raise _file_not_found(job_id, exc) from None

    async def get_job(self, job_id: str) -> JobResponse:
        """``GET /jobs/{job_id}`` (JobNotFoundError for an unknown job)."""
        try:
            return await self.get_model(
                JobResponse, self.path(self.settings.job_path, job_id=job_id)
            )
        except NotFoundError as exc:
            raise JobNotFoundError.from_error(job_id, exc) from None

    async def delete_job(self, job_id: str) -> None:
        """``DELETE /jobs/{job_id}`` (JobNotFoundError for an unknown job)."""
        try:
            await self.send("DELETE", self.path(self.settings.job_path, job_id=job_id))
        except NotFoundError as exc:
            raise JobNotFoundError.from_error(job_id, exc) from None

    async def download(
        self, job_id: str, file_path: str, target: Path, *, overwrite: bool = False
    ) -> Path:
        """Stream a job file into ``target`` via a temporary file renamed into place."""
        url_path = self.file_path(job_id, file_path)
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
        try:
            response = await self.send("GET", url_path, stream=True)
        except NotFoundError as exc:
            raise _file_not_found(job_id, exc) from None
        try:
            # aclosing: a cancelled download must not leave the body iterator to the GC.
            chunks = cast(AsyncGenerator[bytes, None], response.aiter_bytes(_CHUNK))
            async with await anyio.open_file(partial, "wb") as out, aclosing(chunks):
                async for chunk in chunks:
                    await out.write(chunk)
            await anyio.Path(partial).replace(target)
        except httpx.TransportError as exc:
            raise TransportError(
                f"download of {file_path!r} for job {job_id} failed: {exc}"
            ) from exc
        finally:
            await response.aclose()
            with anyio.CancelScope(shield=True):
                await anyio.Path(partial).unlink(missing_ok=True)
        return target

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
        response = await self.send(
            "DELETE", self.settings.admin_cleanup_path, params={"days": days}
        )
        return _parse(CleanupResult, response)

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


def _parse(model: type[M], response: httpx.Response) -> M:
    try:
        body = cast(JsonValue, response.json())
        return model.model_validate(body)
    except (ValueError, ValidationError) as exc:
        request = response.request
        raise ProtocolError(
            f"{request.method} {request.url.path} returned an unexpected body for "
            f"{model.__name__}: {exc}"
        ) from None
