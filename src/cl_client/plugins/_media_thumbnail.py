"""media_thumbnail: a JPEG thumbnail of an image or video (docs/plugins.md#media_thumbnail).

The server always writes ``output/thumbnail.jpg``; :meth:`MediaThumbnailPlugin.result` saves it.
Sizes: both given with ``maintain_aspect_ratio`` fit the image inside the box (1920x1080 in
256x256 gives 256x144); without it the size is exact; one size alone keeps the aspect ratio;
neither gives 256x256. (The real server fails on videos; see docs/plugins.md#media_thumbnail.)
"""

from __future__ import annotations

from typing import ClassVar, Unpack

from .._core.models import JobResponse
from .._options import RunOptions, SubmitOptions
from .._transports.http import FormValue
from ._base import FileArg, PluginClient, check_bool, check_optional_int
from ._results import MediaTypeOutput, ThumbnailResult, parse_payload

__all__ = ["MediaThumbnailPlugin"]


class MediaThumbnailPlugin(PluginClient):
    """``client.media_thumbnail``: a JPEG thumbnail of an image or a video."""

    task_type: ClassVar[str] = "media_thumbnail"
    _output_file: ClassVar[str] = "output/thumbnail.jpg"

    @staticmethod
    def _params(
        width: int | None, height: int | None, maintain_aspect_ratio: bool
    ) -> dict[str, FormValue]:
        return {
            "width": check_optional_int("width", width, minimum=1),
            "height": check_optional_int("height", height, minimum=1),
            "maintain_aspect_ratio": check_bool("maintain_aspect_ratio", maintain_aspect_ratio),
        }

    async def generate(
        self,
        media: FileArg,
        *,
        width: int | None = None,
        height: int | None = None,
        maintain_aspect_ratio: bool = True,
        **options: Unpack[SubmitOptions],
    ) -> JobResponse:
        """Submit a media_thumbnail job for ``media`` and return the JobResponse.

        Args:
            media: The image or video to upload.
            width: Target width in pixels (> 0), or None.
            height: Target height in pixels (> 0), or None.
            maintain_aspect_ratio: Keep the aspect ratio (server default True).
            **options: The shared SubmitOptions: ``priority``, ``wait``, ``timeout``,
                ``on_progress``, ``on_complete`` (see :meth:`ComputeClient.submit`).
        """
        params = self._params(width, height, maintain_aspect_ratio)
        return await self._client.submit(self.task_type, media, params, **options)

    async def result(
        self, job: JobResponse | str, dest: FileArg, *, overwrite: bool = False
    ) -> ThumbnailResult:
        """Save the thumbnail of a completed job to ``dest``: a file, or a directory (existing,
        or named with a trailing slash and then created).

        An existing file is kept (DownloadError) unless ``overwrite``.
        """
        check_bool("overwrite", overwrite)
        final = await self._completed_job(job)
        output = parse_payload(MediaTypeOutput, final.task_output or {}, "thumbnail output")
        path = await self._download_output(final, self._output_file, dest, overwrite)
        return ThumbnailResult(job=final, path=path, media_type=output.media_type)

    async def run(
        self,
        media: FileArg,
        dest: FileArg,
        *,
        width: int | None = None,
        height: int | None = None,
        maintain_aspect_ratio: bool = True,
        overwrite: bool = False,
        **options: Unpack[RunOptions],
    ) -> ThumbnailResult:
        """One call: submit, wait (JobFailedError, JobTimeoutError), save to ``dest``.

        ``options`` are the shared RunOptions (``priority``, ``timeout``, ``on_progress``,
        ``delete_job``).
        """
        params = self._params(width, height, maintain_aspect_ratio)
        check_bool("overwrite", overwrite)

        async def fetch(job: JobResponse) -> ThumbnailResult:
            return await self.result(job, dest, overwrite=overwrite)

        return await self._run(media, params, options, fetch)
