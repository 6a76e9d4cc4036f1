"""image_conversion: an image converted to another format with Pillow (PROTOCOL.md §3.9).

The server writes ``output/converted_<input stem>.<ext>`` (``jpeg`` gives ``.jpg``);
:meth:`ImageConversionPlugin.result` saves it. ``quality`` applies to jpg and webp.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import ClassVar, Literal

from .._callbacks import OnComplete, OnProgress
from .._errors import ParameterError
from .._http import FormValue
from .._models import JobResponse
from ._base import FileArg, PluginClient, check_bool, check_choice, check_int
from ._results import ConversionResult

__all__ = ["ImageConversionPlugin", "ImageFormat"]

ImageFormat = Literal["png", "jpg", "jpeg", "webp", "gif", "bmp", "tiff"]
FORMATS: tuple[str, ...] = ("png", "jpg", "jpeg", "webp", "gif", "bmp", "tiff")


class ImageConversionPlugin(PluginClient):
    """``client.image_conversion``: convert an image to png, jpg, webp, gif, bmp or tiff."""

    task_type: ClassVar[str] = "image_conversion"

    @staticmethod
    def _params(format: str, quality: int) -> dict[str, FormValue]:
        if not isinstance(format, str):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ParameterError(
                f"format must be one of {', '.join(map(repr, FORMATS))}; got {format!r}"
            )
        return {
            "format": check_choice("format", format.lower(), FORMATS),
            "quality": check_int("quality", quality, minimum=1, maximum=100),
        }

    async def convert(
        self,
        image: FileArg,
        *,
        format: ImageFormat,
        quality: int = 85,
        priority: int = 5,
        wait: bool = False,
        timeout: float | None = None,
        on_progress: OnProgress | None = None,
        on_complete: OnComplete | None = None,
    ) -> JobResponse:
        """Submit an image_conversion job for ``image`` and return the JobResponse.

        Args:
            image: The image to upload.
            format: The target format (required): png, jpg, jpeg, webp, gif, bmp or tiff.
            quality: 1..100 for jpg and webp (server default 85).
            priority: 0..10 (stored by the server, not used for scheduling).
            wait: Poll over HTTP until the job finishes and return the final JobResponse.
            timeout: With ``wait``, give up after this many seconds (JobTimeoutError).
            on_progress: Called with every JobUpdate (sync or async).
            on_complete: Called once with the final JobResponse (sync or async).
        """
        params = self._params(format, quality)
        return await self.submit_with_files(
            image, params, priority, wait, timeout, on_progress, on_complete
        )

    async def result(
        self, job: JobResponse | str, dest: FileArg, *, overwrite: bool = False
    ) -> ConversionResult:
        """Save the converted image of a completed job to ``dest`` (a file or an existing
        directory, where it keeps the server's name). An existing file is kept (DownloadError)
        unless ``overwrite``."""
        check_bool("overwrite", overwrite)
        final = await self.completed_job(job)
        fmt, input_path = final.params.get("format"), final.params.get("input_path")
        stem = PurePosixPath(input_path).stem if isinstance(input_path, str) else "image"
        ext = fmt.lower().replace("jpeg", "jpg") if isinstance(fmt, str) else "png"
        path = await self.download_output(final, f"output/converted_{stem}.{ext}", dest, overwrite)
        target_format = fmt.lower() if isinstance(fmt, str) else path.suffix.lstrip(".").lower()
        return ConversionResult(job=final, path=path, format=target_format)

    async def run(
        self,
        image: FileArg,
        dest: FileArg,
        *,
        format: ImageFormat,
        quality: int = 85,
        priority: int = 5,
        timeout: float | None = None,
        overwrite: bool = False,
        delete_job: bool = False,
    ) -> ConversionResult:
        """One call: submit, wait (JobFailedError, JobTimeoutError), save to ``dest``."""
        params = self._params(format, quality)
        check_bool("overwrite", overwrite)

        async def fetch(job: JobResponse) -> ConversionResult:
            return await self.result(job, dest, overwrite=overwrite)

        return await self._run(image, params, priority, timeout, delete_job, fetch)
