"""``cl-client image_conversion convert``: images to png, jpg, webp, gif, bmp or tiff."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import asyncclick as click

from ._plugin import ItemResult, PluginTask, batch_command, plugin_group

if TYPE_CHECKING:
    from cl_client import ComputeClient, JobResponse, OnProgress
    from cl_client.plugins import ImageFormat

__all__ = ["ConversionTask", "group"]

FORMATS = ("png", "jpg", "jpeg", "webp", "gif", "bmp", "tiff")

group = plugin_group("image_conversion", "Convert images to png, jpg, webp, gif, bmp or tiff.")


class ConversionTask(PluginTask):
    task_type: ClassVar[str] = "image_conversion"
    output_suffix: ClassVar[str] = ""
    saves_files_only: ClassVar[bool] = True

    def __init__(self, image_format: str, quality: int) -> None:
        self.format: ImageFormat = _format(image_format)
        self.quality = quality

    def output_name(self, source: Path) -> str:
        return f"{source.stem}.{self.format.replace('jpeg', 'jpg')}"

    async def submit(
        self, client: ComputeClient, path: Path, priority: int, on_progress: OnProgress
    ) -> JobResponse:
        return await client.image_conversion.convert(
            path,
            output_format=self.format,
            quality=self.quality,
            priority=priority,
            on_progress=on_progress,
        )

    async def collect(
        self, client: ComputeClient, job: JobResponse, target: Path | None
    ) -> ItemResult:
        if target is None:
            return ItemResult(
                summary=f"converted to {self.format} (not saved: use -o)",
                fields={"format": self.format},
            )
        converted = await client.image_conversion.result(job, target)
        size = converted.path.stat().st_size
        return ItemResult(
            summary=f"{converted.format}, {_size(size)}",
            fields={"format": converted.format, "bytes": size},
            outputs=[converted.path],
        )


def _format(value: str) -> ImageFormat:
    for choice in ("png", "jpg", "jpeg", "webp", "gif", "bmp", "tiff"):
        if value == choice:
            return choice
    raise ValueError(f"unknown image format {value!r}")  # pragma: no cover - click's Choice


def _size(size: int) -> str:
    return f"{size / 1000:.1f} kB" if size >= 1000 else f"{size} B"


@batch_command(group, "convert")
@click.option(
    "-f",
    "--format",
    "--output-format",
    "image_format",
    type=click.Choice(FORMATS, case_sensitive=False),
    required=True,
    help="The format to convert to.",
)
@click.option(
    "--quality",
    type=click.IntRange(1, 100),
    default=85,
    show_default=True,
    help="Quality of jpg and webp output, 1..100.",
)
def convert(image_format: str, quality: int) -> PluginTask:
    """Convert every image INPUT (files, or directories with -r/--glob) to another format.

    With -o each result is saved as NAME.EXT (e.g. photo.webp).
    """
    return ConversionTask(image_format.lower(), quality)
