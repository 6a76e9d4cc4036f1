"""image_conversion: an image converted to another format with Pillow.

See docs/plugins.md#image_conversion.

The server writes ``output/converted_<input stem>.<ext>`` (``jpeg`` gives ``.jpg``);
:meth:`ImageConversionPlugin.result` saves it. ``quality`` applies to jpg and webp.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import ClassVar, Literal, Unpack

from .._core.errors import ParameterError
from .._core.models import JobResponse
from .._options import RunOptions, SubmitOptions
from .._transports.http import FormValue
from ._base import FileArg, PluginClient, check_bool, check_choice, check_int
from ._results import ConversionResult

__all__ = ["ImageConversionPlugin", "ImageFormat"]

ImageFormat = Literal["png", "jpg", "jpeg", "webp", "gif", "bmp", "tiff"]
FORMATS: tuple[str, ...] = ("png", "jpg", "jpeg", "webp", "gif", "bmp", "tiff")


class ImageConversionPlugin(PluginClient):
    """``client.image_conversion``: convert an image to png, jpg, webp, gif, bmp or tiff."""

    task_type: ClassVar[str] = "image_conversion"

    @staticmethod
    def _params(output_format: str, quality: int) -> dict[str, FormValue]:
        if not isinstance(output_format, str):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ParameterError(
                f"output_format must be one of {', '.join(map(repr, FORMATS))}; "
                f"got {output_format!r}"
            )
        return {
            "format": check_choice("output_format", output_format.lower(), FORMATS),
            "quality": check_int("quality", quality, minimum=1, maximum=100),
        }

    async def convert(
        self,
        image: FileArg,
        *,
        output_format: ImageFormat,
        quality: int = 85,
        **options: Unpack[SubmitOptions],
    ) -> JobResponse:
        """Submit an image_conversion job for ``image`` and return the JobResponse.

        Args:
            image: The image to upload.
            output_format: The target format (required): png, jpg, jpeg, webp, gif, bmp or
                tiff (the server's ``format`` field).
            quality: 1..100 for jpg and webp (server default 85).
            **options: The shared SubmitOptions: ``priority``, ``wait``, ``timeout``,
                ``on_progress``, ``on_complete`` (see :meth:`ComputeClient.submit`).
        """
        params = self._params(output_format, quality)
        return await self._client.submit(self.task_type, image, params, **options)

    async def result(
        self, job: JobResponse | str, dest: FileArg, *, overwrite: bool = False
    ) -> ConversionResult:
        """Save the converted image of a completed job to ``dest``: a file, or a directory
        (existing, or named with a trailing slash and then created) where it keeps the server's
        name. An existing file is kept (DownloadError) unless ``overwrite``."""
        check_bool("overwrite", overwrite)
        final = await self._completed_job(job)
        fmt, input_path = final.params.get("format"), final.params.get("input_path")
        stem = PurePosixPath(input_path).stem if isinstance(input_path, str) else "image"
        ext = fmt.lower().replace("jpeg", "jpg") if isinstance(fmt, str) else "png"
        path = await self._download_output(final, f"output/converted_{stem}.{ext}", dest, overwrite)
        target_format = fmt.lower() if isinstance(fmt, str) else path.suffix.lstrip(".").lower()
        return ConversionResult(job=final, path=path, format=target_format)

    async def run(
        self,
        image: FileArg,
        dest: FileArg,
        *,
        output_format: ImageFormat,
        quality: int = 85,
        overwrite: bool = False,
        **options: Unpack[RunOptions],
    ) -> ConversionResult:
        """One call: submit, wait (JobFailedError, JobTimeoutError), save to ``dest``.

        ``options`` are the shared RunOptions (``priority``, ``timeout``, ``on_progress``,
        ``delete_job``).
        """
        params = self._params(output_format, quality)
        check_bool("overwrite", overwrite)

        async def fetch(job: JobResponse) -> ConversionResult:
            return await self.result(job, dest, overwrite=overwrite)

        return await self._run(image, params, options, fetch)
