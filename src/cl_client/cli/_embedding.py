"""``cl-client clip_embedding embed``, ``dino_embedding embed`` and ``face_embedding embed``:
image (or face crop) embeddings. The vector's size is printed; ``-o`` saves the server's
``.npy`` file; ``--json --vector`` puts the vector itself in the JSON record."""

from __future__ import annotations

import math
from abc import abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import asyncclick as click

from ._plugin import ItemResult, PluginTask, batch_command, plugin_group

if TYPE_CHECKING:
    from cl_client import ComputeClient, JobResponse, OnProgress
    from cl_client.plugins import EmbeddingResult

__all__ = [
    "ClipTask",
    "DinoTask",
    "EmbeddingTask",
    "FaceEmbeddingTask",
    "clip_group",
    "dino_group",
    "face_group",
]


class EmbeddingTask(PluginTask):
    """The three embedding plugins: the same parameters, results and output file."""

    default_file: ClassVar[str]

    def __init__(self, normalize: bool, vector: bool) -> None:
        self.normalize = normalize
        self.vector = vector

    @abstractmethod
    async def _result(self, client: ComputeClient, job: JobResponse) -> EmbeddingResult:
        """The plugin's typed result (the vector as a list)."""

    async def collect(
        self, client: ComputeClient, job: JobResponse, target: Path | None
    ) -> ItemResult:
        embedding = await self._result(client, job)
        values = embedding.tolist()
        norm = math.sqrt(math.fsum(v * v for v in values))
        outputs: list[Path] = []
        if target is not None:
            outputs.append(
                await client.download_job_file(
                    job.job_id, job.output_path or self.default_file, target
                )
            )
        fields: dict[str, object] = {
            "dim": embedding.dim,
            "normalized": embedding.normalized,
            "norm": round(norm, 6),
        }
        summary = f"{embedding.dim}-d vector, norm {norm:.3f}"
        if embedding.quality_score is not None:
            fields["quality_score"] = embedding.quality_score
            summary += f", quality {embedding.quality_score:.2f}"
        if self.vector:
            fields["vector"] = values
        return ItemResult(summary=summary, fields=fields, outputs=outputs)


class ClipTask(EmbeddingTask):
    task_type: ClassVar[str] = "clip_embedding"
    output_suffix: ClassVar[str] = ".clip.npy"
    default_file: ClassVar[str] = "output/clip_embedding.npy"

    async def submit(
        self, client: ComputeClient, path: Path, priority: int, on_progress: OnProgress
    ) -> JobResponse:
        return await client.clip_embedding.embed_image(
            path, normalize=self.normalize, priority=priority, on_progress=on_progress
        )

    async def _result(self, client: ComputeClient, job: JobResponse) -> EmbeddingResult:
        return await client.clip_embedding.result(job, numpy=False)


class DinoTask(EmbeddingTask):
    task_type: ClassVar[str] = "dino_embedding"
    output_suffix: ClassVar[str] = ".dino.npy"
    default_file: ClassVar[str] = "output/dino_embedding.npy"

    async def submit(
        self, client: ComputeClient, path: Path, priority: int, on_progress: OnProgress
    ) -> JobResponse:
        return await client.dino_embedding.embed_image(
            path, normalize=self.normalize, priority=priority, on_progress=on_progress
        )

    async def _result(self, client: ComputeClient, job: JobResponse) -> EmbeddingResult:
        return await client.dino_embedding.result(job, numpy=False)


class FaceEmbeddingTask(EmbeddingTask):
    task_type: ClassVar[str] = "face_embedding"
    output_suffix: ClassVar[str] = ".face.npy"
    default_file: ClassVar[str] = "output/face_embedding.npy"

    async def submit(
        self, client: ComputeClient, path: Path, priority: int, on_progress: OnProgress
    ) -> JobResponse:
        return await client.face_embedding.embed_faces(
            path, normalize=self.normalize, priority=priority, on_progress=on_progress
        )

    async def _result(self, client: ComputeClient, job: JobResponse) -> EmbeddingResult:
        return await client.face_embedding.result(job, numpy=False)


def _normalize() -> click.Option:
    return click.Option(
        ["--normalize/--no-normalize"],
        default=True,
        show_default=True,
        help="L2-normalise the vector.",
    )


def _vector() -> click.Option:
    return click.Option(
        ["--vector"], is_flag=True, help="Put the vector itself in the --json record."
    )


def _embed_command(group: click.Group, task: type[EmbeddingTask], what: str) -> click.Command:
    def embed(normalize: bool, vector: bool) -> PluginTask:
        return task(normalize, vector)

    embed.__doc__ = (
        f"Compute the {what} of every INPUT (files, or directories with -r/--glob).\n\n"
        f"The vector's size and norm are printed; with -o the server's .npy file is saved as "
        f"NAME{task.output_suffix}."
    )
    embed.__click_params__ = [_vector(), _normalize()]  # pyright: ignore[reportFunctionMemberAccess]
    return batch_command(group, "embed")(embed)


clip_group = plugin_group(
    "clip_embedding", "512-d MobileCLIP image embeddings (similarity search)."
)
dino_group = plugin_group("dino_embedding", "384-d DINOv2 image embeddings (visual similarity).")
face_group = plugin_group("face_embedding", "512-d ArcFace embeddings of cropped faces.")

embed_clip = _embed_command(clip_group, ClipTask, "512-d MobileCLIP embedding")
embed_dino = _embed_command(dino_group, DinoTask, "384-d DINOv2 embedding")
embed_face = _embed_command(
    face_group, FaceEmbeddingTask, "512-d ArcFace embedding (of a face crop)"
)
