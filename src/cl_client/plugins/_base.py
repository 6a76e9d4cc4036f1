"""The shared base of the plugin clients: submission, waiting, result files, parameter checks.

Every plugin client derives from :class:`PluginClient` and adds its own typed methods. Nothing
here knows about any particular plugin.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Awaitable, Callable, Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, TypeAlias, TypeVar
from urllib.parse import quote

import anyio
from pydantic import JsonValue

from .._callbacks import OnComplete, OnProgress
from .._errors import (
    ClClientError,
    JobFailedError,
    JobTimeoutError,
    NotFoundError,
    ParameterError,
)
from .._http import FormValue
from .._models import JobCreated, JobResponse

if TYPE_CHECKING:
    from .._client import ComputeClient

__all__ = [
    "FileArg",
    "Files",
    "PluginClient",
    "check_bool",
    "check_choice",
    "check_float",
    "check_int",
    "check_optional_int",
    "json_param",
]

logger = logging.getLogger("cl_client")

FileArg: TypeAlias = str | os.PathLike[str]
"""A local file to upload."""
Files: TypeAlias = FileArg | Mapping[str, FileArg]
"""One file, or a mapping of multipart field name to file (the nine plugins take ``file``)."""

R = TypeVar("R")

_DELETE_TIMEOUT = 5.0


# ---------------------------------------------------------------------------- parameter checks


def check_bool(name: str, value: object) -> bool:
    """``value`` if it is a bool, else ParameterError naming ``name``."""
    if not isinstance(value, bool):
        raise ParameterError(f"{name} must be True or False, got {value!r}")
    return value


def check_int(
    name: str, value: object, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """``value`` if it is an int within ``[minimum, maximum]``, else ParameterError."""
    allowed = _range_text(minimum, maximum)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParameterError(f"{name} must be an integer {allowed}, got {value!r}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ParameterError(f"{name} must be an integer {allowed}, got {value!r}")
    return value


def check_optional_int(
    name: str, value: object, *, minimum: int | None = None, maximum: int | None = None
) -> int | None:
    """Like :func:`check_int`, with None allowed."""
    if value is None:
        return None
    try:
        return check_int(name, value, minimum=minimum, maximum=maximum)
    except ParameterError:
        allowed = _range_text(minimum, maximum)
        raise ParameterError(
            f"{name} must be None or an integer {allowed}, got {value!r}"
        ) from None


def check_float(name: str, value: object, *, minimum: float, maximum: float) -> float:
    """``value`` as a float if it is a finite number within ``[minimum, maximum]``."""
    allowed = f"from {minimum:g} to {maximum:g}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ParameterError(f"{name} must be a number {allowed}, got {value!r}")
    number = float(value)
    if math.isnan(number) or not minimum <= number <= maximum:
        raise ParameterError(f"{name} must be a number {allowed}, got {value!r}")
    return number


def check_choice(name: str, value: object, choices: Collection[str]) -> str:
    """``value`` if it is one of ``choices``, else ParameterError listing them."""
    if not isinstance(value, str) or value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ParameterError(f"{name} must be one of {allowed}; got {value!r}")
    return value


def _range_text(minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f"from {minimum} to {maximum}"
    if minimum is not None:
        return f">= {minimum}"
    if maximum is not None:
        return f"<= {maximum}"
    return ""


def _check_timeout(timeout: object) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise ParameterError(f"timeout must be None or a number of seconds > 0, got {timeout!r}")
    return float(timeout)


# ------------------------------------------------------------------------------------- client


class PluginClient:
    """Base of the typed plugin clients (``client.hash``, ``client.exif``, ...).

    Subclasses set :attr:`task_type` and add their own methods. The generic entry points are
    :meth:`submit_with_files` (every current plugin takes one uploaded file) and
    :meth:`submit_job` (for future plugins that take no file).
    """

    task_type: ClassVar[str] = ""
    """The plugin's task type: ``POST`` goes to ``settings.submit_path`` formatted with it."""
    requires_file: ClassVar[bool] = True
    """Whether jobs of this plugin need an uploaded file (True for the nine plugins)."""
    upload_field: ClassVar[str] = "file"
    """The multipart field of the upload (always ``file`` on the real server)."""

    def __init__(self, client: ComputeClient) -> None:
        self._client = client

    def __repr__(self) -> str:
        return f"<{type(self).__name__} task_type={self.task_type!r} endpoint={self.endpoint!r}>"

    @property
    def client(self) -> ComputeClient:
        """The ComputeClient this plugin client belongs to."""
        return self._client

    @property
    def endpoint(self) -> str:
        """The submission path, from ``settings.submit_path`` (``/jobs/{task_type}``)."""
        return self._client.settings.submit_path.format(task_type=quote(self.task_type, safe=""))

    # -- submission --------------------------------------------------------------------------
    def _upload_path(self, files: Files) -> Path:
        if isinstance(files, Mapping):
            names = list(files)
            if names != [self.upload_field]:
                raise ParameterError(
                    f"{self.task_type} takes exactly one upload, in the form field "
                    f"{self.upload_field!r}; got fields {names!r}"
                )
            return Path(files[self.upload_field])
        return Path(files)

    async def submit_with_files(
        self,
        files: Files,
        params: Mapping[str, FormValue] | None = None,
        priority: int = 5,
        wait: bool = False,
        timeout: float | None = None,
        on_progress: OnProgress | None = None,
        on_complete: OnComplete | None = None,
    ) -> JobResponse:
        """Upload a file with form ``params`` and return the job.

        The file is checked (it must exist and be readable) and streamed from disk. Callbacks
        are registered with the job's state as of the submission reply, so no update is missed:
        ``on_progress(update)`` for every update and ``on_complete(job)`` once at the end.

        Returns the JobResponse right after submission, or with ``wait=True`` the final one
        after polling ``GET /jobs/{id}`` (completed or error: check ``job.status``; JobTimeoutError
        after ``timeout`` seconds).
        """
        check_int("priority", priority, minimum=0, maximum=10)
        limit = _check_timeout(timeout)
        check_bool("wait", wait)
        path = self._upload_path(files)
        created = await self._client.submit(self.task_type, path, params, priority=priority)
        return await self._after_submit(created, priority, wait, limit, on_progress, on_complete)

    async def submit_job(
        self,
        params: Mapping[str, FormValue] | None = None,
        priority: int = 5,
        wait: bool = False,
        timeout: float | None = None,
        on_progress: OnProgress | None = None,
        on_complete: OnComplete | None = None,
    ) -> JobResponse:
        """Submit a job that takes no file (for future plugins; the nine plugins need one).

        Same behaviour as :meth:`submit_with_files` otherwise.
        """
        if self.requires_file:
            raise ParameterError(
                f"{self.task_type} jobs need an uploaded file: use "
                f"submit_with_files(files, params, ...) or the plugin's own methods"
            )
        check_int("priority", priority, minimum=0, maximum=10)
        limit = _check_timeout(timeout)
        check_bool("wait", wait)
        created = await self._post_form(params, priority)
        return await self._after_submit(created, priority, wait, limit, on_progress, on_complete)

    async def _post_form(self, params: Mapping[str, FormValue] | None, priority: int) -> JobCreated:
        return await self._client.submit(self.task_type, None, params, priority=priority)

    async def _after_submit(
        self,
        created: JobCreated,
        priority: int,
        wait: bool,
        timeout: float | None,
        on_progress: OnProgress | None,
        on_complete: OnComplete | None,
    ) -> JobResponse:
        client = self._client
        # No await since the submission returned: the hub replays the cached state to the
        # subscription, so events published before the HTTP reply are not lost.
        if on_progress is not None or on_complete is not None:
            client.subscribe_job_updates(created.job_id, on_progress, on_complete)
        if wait:
            return await client.wait_for_job(created.job_id, timeout=timeout, raise_on_error=False)
        try:
            return await client.get_job(created.job_id)
        except ClClientError as exc:
            logger.debug("could not fetch job %s after submitting it: %s", created.job_id, exc)
            return JobResponse(
                job_id=created.job_id,
                task_type=created.task_type or self.task_type,
                status=created.status,
                priority=priority,
            )

    # -- results -----------------------------------------------------------------------------
    async def completed_job(self, job: JobResponse | str) -> JobResponse:
        """The job, completed: fetched again unless ``job`` is already terminal.

        Raises JobFailedError if it failed, ParameterError if it is not finished yet or belongs
        to another plugin.
        """
        if isinstance(job, str):
            job = await self._client.get_job(job)
        elif not job.is_terminal:
            job = await self._client.get_job(job.job_id)
        if job.task_type and job.task_type != self.task_type:
            raise ParameterError(
                f"job {job.job_id} is a {job.task_type} job, not a {self.task_type} job"
            )
        if job.is_failed:
            raise JobFailedError(job)
        if not job.is_terminal:
            raise ParameterError(
                f"job {job.job_id} is still {job.status}: wait for it to finish "
                "(await client.wait(job_id)) before fetching its result"
            )
        return job

    async def read_file(self, job_id: str, file_path: str) -> bytes:
        """The bytes of a (small) job file, ``GET /jobs/{job_id}/files/{file_path}``."""
        return await self._client.read_job_file(job_id, file_path)

    @staticmethod
    def output_path(job: JobResponse, default: str) -> str:
        """The job's ``params.output_path``, or ``default`` when the server did not store one."""
        return job.output_path or default

    async def download_output(
        self, job: JobResponse, default: str, dest: FileArg, overwrite: bool
    ) -> Path:
        """Download the job's output file to ``dest`` (a file path or an existing directory)."""
        check_bool("overwrite", overwrite)
        return await self._client.download_job_file(
            job.job_id, self.output_path(job, default), dest, overwrite=overwrite
        )

    async def wait_completed(self, job_id: str, timeout: float | None = None) -> JobResponse:
        """Wait for the job (MQTT, with HTTP reconciliation) and return it, completed.

        Raises JobFailedError if it failed and JobTimeoutError after ``timeout`` seconds.
        """
        limit = _check_timeout(timeout)
        with anyio.move_on_after(math.inf if limit is None else limit):
            return await self._client.wait(job_id)
        assert limit is not None
        latest = self._client.latest(job_id)
        raise JobTimeoutError(job_id, limit, latest.status if latest is not None else None)

    async def _run(
        self,
        file: FileArg,
        params: Mapping[str, FormValue],
        priority: int,
        timeout: float | None,
        delete_job: bool,
        fetch: Callable[[JobResponse], Awaitable[R]],
    ) -> R:
        """Submit, wait, fetch the typed result; with ``delete_job`` delete the job at the end."""
        _check_timeout(timeout)
        check_bool("delete_job", delete_job)
        job = await self.submit_with_files(file, params, priority)
        try:
            final = await self.wait_completed(job.job_id, timeout)
            return await fetch(final)
        finally:
            if delete_job:
                await self._delete_quietly(job.job_id)

    async def _delete_quietly(self, job_id: str) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(_DELETE_TIMEOUT):
            try:
                await self._client.delete_job(job_id)
            except NotFoundError:
                pass
            except ClClientError as exc:
                logger.warning("could not delete job %s: %s", job_id, exc)


def json_param(value: JsonValue) -> str:
    """Compact JSON text for a form field."""
    return json.dumps(value, separators=(",", ":"))
