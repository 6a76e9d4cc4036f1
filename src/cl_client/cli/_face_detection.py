"""``cl-client face_detection detect``: faces with boxes, landmarks and aligned crops."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, cast

import asyncclick as click

from ._plugin import ItemResult, PluginTask, batch_command, plugin_group

if TYPE_CHECKING:
    from cl_client import ComputeClient, JobResponse, OnProgress

__all__ = ["FaceDetectionTask", "group"]

group = plugin_group("face_detection", "Faces in images: boxes, landmarks and aligned crops.")


def crops_directory(target: Path) -> Path:
    """Where the crops of ``target`` (the JSON file) go: beside it, named after it."""
    stem = target.with_suffix("")
    return stem if stem != target else target.with_name(f"{target.name}_crops")


class FaceDetectionTask(PluginTask):
    task_type: ClassVar[str] = "face_detection"
    output_suffix: ClassVar[str] = ".faces.json"

    def __init__(self, confidence_threshold: float, nms_threshold: float) -> None:
        self.confidence_threshold = confidence_threshold
        self.nms_threshold = nms_threshold

    async def submit(
        self, client: ComputeClient, path: Path, priority: int, on_progress: OnProgress
    ) -> JobResponse:
        return await client.face_detection.detect(
            path,
            confidence_threshold=self.confidence_threshold,
            nms_threshold=self.nms_threshold,
            priority=priority,
            on_progress=on_progress,
        )

    async def collect(
        self, client: ComputeClient, job: JobResponse, target: Path | None
    ) -> ItemResult:
        found = await client.face_detection.result(job)
        outputs: list[Path] = []
        if target is not None:
            outputs.append(
                await client.download_job_file(
                    job.job_id, job.output_path or "output/face_detection.json", target
                )
            )
            if found.faces:
                outputs += await client.face_detection.download_crops(
                    found, crops_directory(target)
                )
        confidences = ", ".join(f"{face.confidence:.2f}" for face in found.faces[:6])
        more = ", …" if found.num_faces > 6 else ""
        summary = f"{found.num_faces} face(s) ({confidences}{more})" if found.faces else "no faces"
        return ItemResult(
            summary=summary,
            fields={
                "num_faces": found.num_faces,
                "image_width": found.image_width,
                "image_height": found.image_height,
                "faces": [
                    cast(dict[str, object], face.model_dump(mode="json")) for face in found.faces
                ],
            },
            outputs=outputs,
        )


@batch_command(group, "detect")
@click.option(
    "--confidence-threshold",
    type=click.FloatRange(0.0, 1.0),
    default=0.7,
    show_default=True,
    help="Minimum detection confidence, 0..1.",
)
@click.option(
    "--nms-threshold",
    type=click.FloatRange(0.0, 1.0),
    default=0.4,
    show_default=True,
    help="Overlap threshold of non-maximum suppression, 0..1.",
)
def detect(confidence_threshold: float, nms_threshold: float) -> PluginTask:
    """Find the faces in every image INPUT (files, or directories with -r/--glob).

    With -o the server's JSON is saved as NAME.faces.json and each face's aligned crop as
    NAME.faces/face_N.png.
    """
    return FaceDetectionTask(confidence_threshold, nms_threshold)
