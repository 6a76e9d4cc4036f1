"""face_embedding: a 512-d ArcFace embedding of a cropped face (docs/plugins.md#embeddings).

The vector is written to ``output/face_embedding.npy`` (float32, shape (512,)); task_output
carries a ``quality_score``, kept on the result.
"""

from __future__ import annotations

from typing import ClassVar, Unpack

from .._core.models import JobResponse
from .._options import SubmitOptions
from ._base import FileArg
from ._embedding import EmbeddingPlugin

__all__ = ["FaceEmbeddingPlugin"]


class FaceEmbeddingPlugin(EmbeddingPlugin):
    """``client.face_embedding``: a 512-d ArcFace embedding of a cropped face."""

    task_type: ClassVar[str] = "face_embedding"
    _output_file: ClassVar[str] = "output/face_embedding.npy"
    _embedding_dim: ClassVar[int] = 512

    async def embed_faces(
        self, image: FileArg, *, normalize: bool = True, **options: Unpack[SubmitOptions]
    ) -> JobResponse:
        """Submit a face_embedding job for ``image`` and return the JobResponse.

        Args:
            image: A cropped face image (for example a crop from face_detection).
            normalize: L2-normalise the vector (server default True).
            **options: The shared SubmitOptions: ``priority``, ``wait``, ``timeout``,
                ``on_progress``, ``on_complete`` (see :meth:`ComputeClient.submit`).
        """
        params = self._params(normalize)
        return await self._client.submit(self.task_type, image, params, **options)
