"""``cl-client exif extract``: EXIF and other metadata, read by ExifTool on the server."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, cast

import asyncclick as click

from ._plugin import ItemResult, PluginTask, batch_command, plugin_group

if TYPE_CHECKING:
    from cl_client import ComputeClient, JobResponse, OnProgress

__all__ = ["ExifTask", "group"]

_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_:-]*")

group = plugin_group("exif", "EXIF and other metadata of images and videos (ExifTool).")


class ExifTask(PluginTask):
    task_type: ClassVar[str] = "exif"
    output_suffix: ClassVar[str] = ".exif.json"

    def __init__(self, tags: list[str]) -> None:
        self.tags = tags

    async def submit(
        self, client: ComputeClient, path: Path, priority: int, on_progress: OnProgress
    ) -> JobResponse:
        return await client.exif.extract(
            path, tags=self.tags or None, priority=priority, on_progress=on_progress
        )

    async def collect(
        self, client: ComputeClient, job: JobResponse, target: Path | None
    ) -> ItemResult:
        metadata = (await client.exif.result(job)).metadata
        outputs: list[Path] = []
        if target is not None:
            outputs.append(
                await client.download_job_file(
                    job.job_id, job.output_path or "output/exif_metadata.json", target
                )
            )
        typed = cast(dict[str, object], metadata.model_dump(mode="json", exclude_none=True))
        raw = metadata.raw_metadata
        shown: list[str] = []
        camera = " ".join(str(metadata.get(t) or "") for t in ("Make", "Model")).strip()
        if camera:
            shown.append(camera)
        taken = metadata.get("DateTimeOriginal") or metadata.get("CreateDate")
        if taken:
            shown.append(str(taken))
        width, height = metadata.get("ImageWidth"), metadata.get("ImageHeight")
        if width and height:
            shown.append(f"{width}x{height}")
        iso = metadata.get("ISO")
        if iso:
            shown.append(f"ISO {iso}")
        summary = ", ".join(shown)
        summary = f"{summary} ({len(raw)} tags)" if summary else f"{len(raw)} tags"
        return ItemResult(summary=summary, fields={"metadata": typed}, outputs=outputs)


def _tags(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[str]:
    del ctx
    names = [t.strip() for value in values for t in value.split(",") if t.strip()]
    for name in names:
        if _TAG.fullmatch(name) is None:
            raise click.BadParameter(
                f"{name!r} is not an ExifTool tag name (letters, digits, '_' and '-', optionally "
                "with a group such as 'EXIF:Make')",
                param=param,
            )
    return list(dict.fromkeys(names))


@batch_command(group, "extract")
@click.option(
    "-t",
    "--tags",
    multiple=True,
    callback=_tags,
    metavar="TAG[,TAG...]",
    help="ExifTool tag names to extract (e.g. 'Make,Model,ISO'; repeatable). Default: every "
    "tag, reported with its group ('EXIF:Make').",
)
def extract(tags: list[str]) -> PluginTask:
    """Extract the metadata of every INPUT (files, or directories with -r/--glob).

    The camera, date, size and ISO are printed; --json gives every field; with -o the server's
    JSON is saved as NAME.exif.json.
    """
    return ExifTask(tags)
