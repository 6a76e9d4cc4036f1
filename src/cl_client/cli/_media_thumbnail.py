"""``cl-client media_thumbnail generate``: JPEG thumbnails of images and videos."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import asyncclick as click

from ._plugin import ItemResult, PluginTask, batch_command, plugin_group

if TYPE_CHECKING:
    from cl_client import ComputeClient, JobResponse, OnProgress

__all__ = ["ThumbnailTask", "group"]

group = plugin_group("media_thumbnail", "JPEG thumbnails of images and videos.")


class ThumbnailTask(PluginTask):
    task_type: ClassVar[str] = "media_thumbnail"
    output_suffix: ClassVar[str] = ".thumb.jpg"
    saves_files_only: ClassVar[bool] = True

    def __init__(self, width: int | None, height: int | None, maintain_aspect_ratio: bool) -> None:
        self.width = width
        self.height = height
        self.maintain_aspect_ratio = maintain_aspect_ratio

    async def submit(
        self, client: ComputeClient, path: Path, priority: int, on_progress: OnProgress
    ) -> JobResponse:
        return await client.media_thumbnail.generate(
            path,
            width=self.width,
            height=self.height,
            maintain_aspect_ratio=self.maintain_aspect_ratio,
            priority=priority,
            on_progress=on_progress,
        )

    async def collect(
        self, client: ComputeClient, job: JobResponse, target: Path | None
    ) -> ItemResult:
        if target is None:
            media_type = (job.task_output or {}).get("media_type")
            return ItemResult(
                summary=f"JPEG thumbnail ({media_type}), not saved: use -o",
                fields={"media_type": media_type},
            )
        thumbnail = await client.media_thumbnail.result(job, target)
        size = thumbnail.path.stat().st_size
        return ItemResult(
            summary=f"JPEG thumbnail ({thumbnail.media_type}), {size / 1000:.1f} kB",
            fields={"media_type": thumbnail.media_type, "bytes": size},
            outputs=[thumbnail.path],
        )


@batch_command(group, "generate")
@click.option("-W", "--width", type=click.IntRange(min=1), help="Target width in pixels.")
@click.option("-H", "--height", type=click.IntRange(min=1), help="Target height in pixels.")
@click.option(
    "--maintain-aspect-ratio/--no-maintain-aspect-ratio",
    default=True,
    show_default=True,
    help="Fit inside WIDTHxHEIGHT keeping the aspect ratio (else: exactly that size).",
)
def generate(width: int | None, height: int | None, maintain_aspect_ratio: bool) -> PluginTask:
    """Make a JPEG thumbnail of every image or video INPUT (files, or directories with
    -r/--glob); 256x256 when no size is given.

    With -o each thumbnail is saved as NAME.thumb.jpg (for one input, -o may name the file).
    """
    return ThumbnailTask(width, height, maintain_aspect_ratio)
