"""face_embedding: a 512-d ArcFace embedding of a cropped face (PROTOCOL.md §3.5).

The vector is written to ``output/face_embedding.npy`` (float32, shape (512,)); task_output
carries a ``quality_score``, kept on the result.
"""

from __future__ import annotations

from typing import ClassVar

from .._callbacks import OnComplete, OnProgress
from .._models import JobResponse
from ._base import FileArg
from ._embedding import EmbeddingPlugin

__all__ = ["FaceEmbeddingPlugin"]


class FaceEmbeddingPlugin(EmbeddingPlugin):
    """``client.face_embedding``: a 512-d ArcFace embedding of a cropped face."""

    task_type: ClassVar[str] = "face_embedding"
    output_file: ClassVar[str] = "output/face_embedding.npy"
    embedding_dim: ClassVar[int] = 512

    async def embed_faces(
        self,
        image: FileArg,
        *,
        normalize: bool = True,
        priority: int = 5,
        wait: bool = False,
        timeout: float | None = None,
        on_progress: OnProgress | None = None,
        on_complete: OnComplete | None = None,
    ) -> JobResponse:
        """Submit a face_embedding job for ``image`` and return the JobResponse.

        Args:
            image: A cropped face image (for example a crop from face_detection).
            normalize: L2-normalise the vector (server default True).
            priority: 0..10 (stored by the server, not used for scheduling).
            wait: Poll over HTTP until the job finishes and return the final JobResponse.
            timeout: With ``wait``, give up after this many seconds (JobTimeoutError).
            on_progress: Called with every JobUpdate (sync or async).
            on_complete: Called once with the final JobResponse (sync or async).
        """
        return await self._embed(
            image, normalize, priority, wait, timeout, on_progress, on_complete
        )
