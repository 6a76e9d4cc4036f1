"""The shared base of the plugin clients: submission, one-call runs, result files.

Every plugin client derives from :class:`PluginClient` and adds its submission method, its typed
``result()`` and ``run()``. The submission contract (what the options mean, what is returned,
what ``wait=True`` does) is :meth:`ComputeClient.submit`'s: a plugin method checks its own
parameters, then submits through it. Nothing here knows about any particular plugin, and nothing
here is public API beyond ``task_type``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, TypeVar

import anyio
from pydantic import JsonValue

from .._core.checks import (
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_optional_int,
    check_timeout,
)
from .._core.errors import ClClientError, JobFailedError, JobNotFoundError, ParameterError
from .._core.models import JobResponse
from .._options import RunOptions, job_options
from .._transports.http import FileArg, FormValue

if TYPE_CHECKING:
    from .._client import ComputeClient

__all__ = [
    "FileArg",
    "PluginClient",
    "check_bool",
    "check_choice",
    "check_float",
    "check_int",
    "check_optional_int",
    "check_timeout",
    "json_param",
]

logger = logging.getLogger("cl_client")

R = TypeVar("R")

_DELETE_TIMEOUT = 5.0


class PluginClient:
    """Base of the typed plugin clients (``client.hash``, ``client.exif``, ...)."""

    task_type: ClassVar[str] = ""
    """The plugin's task type (``POST`` goes to ``settings.submit_path`` formatted with it)."""

    def __init__(self, client: ComputeClient) -> None:
        self._client = client

    def __repr__(self) -> str:
        return f"<{type(self).__name__} task_type={self.task_type!r}>"

    # -- results -----------------------------------------------------------------------------
    async def _completed_job(self, job: JobResponse | str) -> JobResponse:
        """The job, completed: fetched again unless ``job`` is already terminal.

        Raises JobFailedError if it failed, ParameterError if it is not finished yet or belongs
        to another plugin, JobNotFoundError if the server does not know it.
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

    async def _read_file(self, job_id: str, file_path: str) -> bytes:
        return await self._client.read_job_file(job_id, file_path)

    @staticmethod
    def _output_path(job: JobResponse, default: str) -> str:
        """The job's ``params.output_path``, or ``default`` when the server did not store one."""
        return job.output_path or default

    async def _download_output(
        self, job: JobResponse, default: str, dest: FileArg, overwrite: bool
    ) -> Path:
        """Download the job's output file to ``dest`` (a file path or a directory)."""
        return await self._client.download_job_file(
            job.job_id, self._output_path(job, default), dest, overwrite=overwrite
        )

    # -- one call ----------------------------------------------------------------------------
    async def _run(
        self,
        file: FileArg,
        params: Mapping[str, FormValue],
        options: RunOptions,
        fetch: Callable[[JobResponse], Awaitable[R]],
    ) -> R:
        """Submit, wait (JobFailedError, JobTimeoutError), fetch the typed result; with
        ``delete_job`` delete the job at the end, whatever happened."""
        opts = job_options(options, run=True)
        job = await self._client.submit(
            self.task_type, file, params, priority=opts.priority, on_progress=opts.on_progress
        )
        try:
            final = await self._client._wait_within(job.job_id, opts.timeout)
            return await fetch(final)
        finally:
            if opts.delete_job:
                await self._delete_quietly(job.job_id)

    async def _delete_quietly(self, job_id: str) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(_DELETE_TIMEOUT):
            try:
                await self._client.delete_job(job_id)
            except JobNotFoundError:
                pass
            except ClClientError as exc:
                logger.warning("could not delete job %s: %s", job_id, exc)


def json_param(value: JsonValue) -> str:
    """Compact JSON text for a form field."""
    return json.dumps(value, separators=(",", ":"))
