"""``cl-client hls_streaming generate-manifest``: adaptive HLS bundles of videos."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, cast

import asyncclick as click

from ._plugin import ItemResult, PluginTask, batch_command, plugin_group

if TYPE_CHECKING:
    from cl_client import ComputeClient, JobResponse, OnProgress

__all__ = ["HlsTask", "group"]

DEFAULT_VARIANTS = ((720, 3500), (480, 1500))
"""The server's default variants: (target height in pixels, bitrate in kbps)."""

_VARIANT = re.compile(r"(\d+)p?[:x/](\d+)k?", re.IGNORECASE)

group = plugin_group("hls_streaming", "Adaptive HLS streams (playlists and segments) of videos.")


class VariantType(click.ParamType[tuple[int, int]]):
    """``HEIGHT:KBPS`` (``720:3500``, ``720p:3500k``)."""

    name = "HEIGHT:KBPS"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[int, int]:
        if isinstance(value, tuple):
            return cast(tuple[int, int], value)
        match = _VARIANT.fullmatch(str(value).strip())
        if match is None:
            self.fail(f"{value!r} is not HEIGHT:KBPS (e.g. 720:3500)", param, ctx)
        height, kbps = int(match.group(1)), int(match.group(2))
        if height < 1:
            self.fail(f"{value!r}: the height must be at least 1 pixel", param, ctx)
        if kbps < 100:
            self.fail(f"{value!r}: the bitrate must be at least 100 kbps", param, ctx)
        return height, kbps


class HlsTask(PluginTask):
    task_type: ClassVar[str] = "hls_streaming"
    output_suffix: ClassVar[str] = ""
    output_is_dir: ClassVar[bool] = True
    saves_files_only: ClassVar[bool] = True

    def __init__(self, variants: list[tuple[int, int]], include_original: bool) -> None:
        self.variants = variants
        self.include_original = include_original

    async def submit(
        self, client: ComputeClient, path: Path, priority: int, on_progress: OnProgress
    ) -> JobResponse:
        from cl_client.plugins import HlsVariant

        return await client.hls_streaming.generate_manifest(
            path,
            variants=[HlsVariant(height, kbps) for height, kbps in self.variants],
            include_original=self.include_original,
            priority=priority,
            on_progress=on_progress,
        )

    async def collect(
        self, client: ComputeClient, job: JobResponse, target: Path | None
    ) -> ItemResult:
        if target is None:
            output = job.task_output or {}
            variants, segments = output.get("variants_generated"), output.get("total_segments")
            return ItemResult(
                summary=f"{variants} variant(s), {segments} segment(s) (not saved: use -o DIR)",
                fields={"variants_generated": variants, "total_segments": segments},
            )
        bundle = await client.hls_streaming.result(job, target)
        return ItemResult(
            summary=f"{len(bundle.variant_playlists)} playlist(s), {len(bundle.segments)} "
            f"segment(s) in {target.name}/",
            fields={
                "variants_generated": bundle.variants_generated,
                "total_segments": bundle.total_segments,
                "include_original": bundle.include_original,
            },
            outputs=bundle.files,  # the master playlist first
        )


def _variants(
    ctx: click.Context, param: click.Parameter, values: tuple[tuple[int, int], ...]
) -> list[tuple[int, int]]:
    del ctx
    chosen = list(values) if values else list(DEFAULT_VARIANTS)
    if len(set(chosen)) != len(chosen):
        raise click.BadParameter("each variant may be given once", param=param)
    return chosen


@batch_command(group, "generate-manifest")
@click.option(
    "--variant",
    "variants",
    type=VariantType(),
    multiple=True,
    callback=_variants,
    help="A stream to encode, HEIGHT:KBPS (repeatable). [default: 720:3500 and 480:1500]",
)
@click.option(
    "--include-original", is_flag=True, help="Also add the original stream, copied as it is."
)
def generate_manifest(variants: list[tuple[int, int]], include_original: bool) -> PluginTask:
    """Make an adaptive HLS bundle of every video INPUT (files, or directories with -r/--glob).

    With -o each bundle (master playlist adaptive.m3u8, a playlist per variant, the segments) is
    saved in a directory named after the video; for one input, -o is that directory.
    """
    return HlsTask(variants, include_original)
