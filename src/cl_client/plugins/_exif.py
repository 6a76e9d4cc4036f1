"""exif: metadata of an image or video, read by ExifTool on the server (docs/plugins.md#exif).

The result is in ``task_output``: typed fields (``make``, ``iso``, ``gps_latitude``, ...) plus
``raw_metadata``. The typed fields are only filled when ``tags`` are given; without tags ExifTool
reports group-prefixed names (``"EXIF:Make"``) and only ``raw_metadata`` is filled.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import ClassVar, Unpack, cast

from .._core.errors import ParameterError
from .._core.models import JobResponse
from .._options import RunOptions, SubmitOptions
from .._transports.http import FormValue
from ._base import FileArg, PluginClient
from ._results import ExifMetadata, ExifResult, parse_payload

__all__ = ["ExifPlugin"]

_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_:-]*")


def exif_tags(tags: object) -> str:
    """The ``tags`` form field: ExifTool tag names joined by commas (empty: all tags).

    ``tags`` is None, a comma-separated string, or a sequence of names.
    """
    if tags is None:
        return ""
    if isinstance(tags, str):
        items: list[object] = [t.strip() for t in tags.split(",") if t.strip()]
    elif isinstance(tags, Sequence):
        items = [t.strip() if isinstance(t, str) else t for t in cast(Sequence[object], tags)]
    else:
        raise ParameterError(
            f"tags must be None, a comma-separated string or a list of tag names, got {tags!r}"
        )
    names: list[str] = []
    for item in items:
        if not isinstance(item, str) or _TAG.fullmatch(item) is None:
            raise ParameterError(
                "tags must be ExifTool tag names: letters, digits, '_' and '-', optionally "
                f"with a group such as 'EXIF:Make' (e.g. 'Make', 'Model', 'ISO'); got {item!r}"
            )
        names.append(item)
    return ",".join(names)


class ExifPlugin(PluginClient):
    """``client.exif``: EXIF and other metadata of a media file."""

    task_type: ClassVar[str] = "exif"

    async def extract(
        self,
        image: FileArg,
        *,
        tags: str | Sequence[str] | None = None,
        **options: Unpack[SubmitOptions],
    ) -> JobResponse:
        """Submit an exif job for ``image`` and return the JobResponse.

        Args:
            image: The image (or video) to upload.
            tags: ExifTool tag names to extract (``["Make", "Model"]`` or ``"Make,Model"``);
                None or empty: every tag (server default).
            **options: The shared SubmitOptions: ``priority``, ``wait``, ``timeout``,
                ``on_progress``, ``on_complete`` (see :meth:`ComputeClient.submit`).
        """
        params = self._params(tags)
        return await self._client.submit(self.task_type, image, params, **options)

    @staticmethod
    def _params(tags: str | Sequence[str] | None) -> dict[str, FormValue]:
        joined = exif_tags(tags)
        return {"tags": joined} if joined else {}

    async def result(self, job: JobResponse | str) -> ExifResult:
        """The metadata of a completed job (from its ``task_output``)."""
        final = await self._completed_job(job)
        metadata = parse_payload(ExifMetadata, final.task_output or {}, "exif output")
        return ExifResult(job=final, metadata=metadata)

    async def run(
        self,
        image: FileArg,
        *,
        tags: str | Sequence[str] | None = None,
        **options: Unpack[RunOptions],
    ) -> ExifResult:
        """One call: submit, wait (JobFailedError, JobTimeoutError), return the metadata.

        ``options`` are the shared RunOptions (``priority``, ``timeout``, ``on_progress``,
        ``delete_job``).
        """
        params = self._params(tags)
        return await self._run(image, params, options, self.result)
