"""``cl-client hash compute``: sha512 (of the decoded pixels for images) or md5 digests."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import asyncclick as click

from ._plugin import ItemResult, PluginTask, batch_command, plugin_group

if TYPE_CHECKING:
    from cl_client import ComputeClient, JobResponse, OnProgress

__all__ = ["HashTask", "group"]

ALGORITHMS = ("sha512", "md5")

group = plugin_group("hash", "sha512 or md5 digests of files (images: of the decoded pixels).")


class HashTask(PluginTask):
    task_type: ClassVar[str] = "hash"
    output_suffix: ClassVar[str] = ".hash.json"

    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm

    async def submit(
        self, client: ComputeClient, path: Path, priority: int, on_progress: OnProgress
    ) -> JobResponse:
        algorithm = "md5" if self.algorithm == "md5" else "sha512"
        return await client.hash.compute(
            path, algorithm=algorithm, priority=priority, on_progress=on_progress
        )

    async def collect(
        self, client: ComputeClient, job: JobResponse, target: Path | None
    ) -> ItemResult:
        digest = await client.hash.result(job)
        outputs: list[Path] = []
        if target is not None:
            outputs.append(
                await client.download_job_file(
                    job.job_id, job.output_path or "output/hash.json", target
                )
            )
        return ItemResult(
            summary=f"{digest.algorithm} {digest.hash_value}",
            fields={
                "hash_value": digest.hash_value,
                "algorithm": digest.algorithm,
                "media_type": digest.media_type,
                "process_time": digest.process_time,
            },
            outputs=outputs,
        )


@batch_command(group, "compute")
@click.option(
    "-a",
    "--algorithm",
    type=click.Choice(ALGORITHMS),
    default="sha512",
    show_default=True,
    help="sha512: of the decoded pixels for images, of the I-frames for videos; md5: of the "
    "file's bytes.",
)
def compute(algorithm: str) -> PluginTask:
    """Compute the digest of every INPUT (files, or directories with -r/--glob).

    With -o the server's hash.json is saved as NAME.hash.json.
    """
    return HashTask(algorithm)
