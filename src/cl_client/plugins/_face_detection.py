"""face_detection: faces in an image, with boxes, landmarks and aligned crops.

See docs/plugins.md#face_detection.

The result is in ``task_output``: every coordinate is normalised to [0, 1]; each face's crop is a
job file (``faces/face_{i}.png``) downloaded by :meth:`FaceDetectionPlugin.download_crops`.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import ClassVar, Unpack

import anyio

from .._core.errors import ParameterError
from .._core.models import JobResponse
from .._options import RunOptions, SubmitOptions
from .._transports.http import FormValue, local_errors, local_path, safe_join
from ._base import FileArg, PluginClient, check_bool, check_float
from ._results import (
    DetectedFace,
    FaceDetectionOutput,
    FaceDetectionResult,
    parse_payload,
)

__all__ = ["FaceDetectionPlugin"]


class FaceDetectionPlugin(PluginClient):
    """``client.face_detection``: find faces in an image."""

    task_type: ClassVar[str] = "face_detection"

    @staticmethod
    def _params(confidence_threshold: float, nms_threshold: float) -> dict[str, FormValue]:
        return {
            "confidence_threshold": check_float(
                "confidence_threshold", confidence_threshold, minimum=0.0, maximum=1.0
            ),
            "nms_threshold": check_float("nms_threshold", nms_threshold, minimum=0.0, maximum=1.0),
        }

    async def detect(
        self,
        image: FileArg,
        *,
        confidence_threshold: float = 0.7,
        nms_threshold: float = 0.4,
        **options: Unpack[SubmitOptions],
    ) -> JobResponse:
        """Submit a face_detection job for ``image`` and return the JobResponse.

        Args:
            image: The image to upload.
            confidence_threshold: Minimum detection confidence, 0..1 (server default 0.7).
            nms_threshold: Overlap threshold of non-maximum suppression, 0..1 (default 0.4).
            **options: The shared SubmitOptions: ``priority``, ``wait``, ``timeout``,
                ``on_progress``, ``on_complete`` (see :meth:`ComputeClient.submit`).
        """
        params = self._params(confidence_threshold, nms_threshold)
        return await self._client.submit(self.task_type, image, params, **options)

    async def result(self, job: JobResponse | str) -> FaceDetectionResult:
        """The faces of a completed job (from its ``task_output``)."""
        final = await self._completed_job(job)
        output = parse_payload(
            FaceDetectionOutput, final.task_output or {}, "face_detection output"
        )
        return FaceDetectionResult(
            job=final,
            faces=list(output.faces),
            image_width=output.image_width,
            image_height=output.image_height,
        )

    async def download_crop(
        self,
        job: JobResponse | str,
        face: DetectedFace,
        dest: FileArg,
        *,
        overwrite: bool = False,
    ) -> Path:
        """Download one face's aligned crop (PNG) to ``dest`` (a file or an existing directory)."""
        check_bool("overwrite", overwrite)
        job_id = job if isinstance(job, str) else job.job_id
        if face.file_path is None:
            raise ParameterError("this face has no crop file on the server (file_path is None)")
        return await self._client.download_job_file(
            job_id, face.file_path, dest, overwrite=overwrite
        )

    async def download_crops(
        self,
        job: JobResponse | FaceDetectionResult | str,
        directory: FileArg,
        *,
        overwrite: bool = False,
    ) -> list[Path]:
        """Download every face's crop into ``directory`` (created if needed), in face order.

        Faces the server reported without a crop are left out.
        """
        check_bool("overwrite", overwrite)
        result = job if isinstance(job, FaceDetectionResult) else await self.result(job)
        root = local_path(directory, "the directory")
        targets = [
            (face.file_path, safe_join(root, PurePosixPath(face.file_path).name))
            for face in result.faces
            if face.file_path is not None
        ]
        if targets:
            with local_errors(root):
                await anyio.Path(root).mkdir(parents=True, exist_ok=True)
        return [
            await self._client.download_job_file(
                result.job.job_id, file_path, target, overwrite=overwrite
            )
            for file_path, target in targets
        ]

    async def run(
        self,
        image: FileArg,
        *,
        confidence_threshold: float = 0.7,
        nms_threshold: float = 0.4,
        **options: Unpack[RunOptions],
    ) -> FaceDetectionResult:
        """One call: submit, wait (JobFailedError, JobTimeoutError), return the faces.

        ``options`` are the shared RunOptions (``priority``, ``timeout``, ``on_progress``,
        ``delete_job``). To keep the crops, download them before the job is deleted (leave
        ``delete_job`` off).
        """
        params = self._params(confidence_threshold, nms_threshold)
        return await self._run(image, params, options, self.result)
