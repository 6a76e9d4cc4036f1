"""What the three embedding plugins share (docs/plugins.md#embeddings).

The vector is not in ``task_output``: the server writes it to an ``.npy`` file (float32, 1-D),
which :meth:`EmbeddingPlugin.result` downloads, parses and checks against the expected length.
"""

from __future__ import annotations

from typing import ClassVar, Unpack

from .._core.models import JobResponse
from .._options import RunOptions, SubmitOptions
from .._transports.http import FormValue
from ._base import FileArg, PluginClient, check_bool
from ._results import EmbeddingResult, build_embedding, check_numpy

__all__ = ["EmbeddingPlugin", "ImageEmbeddingPlugin"]


class EmbeddingPlugin(PluginClient):
    """Base of the clip_embedding, dino_embedding and face_embedding clients."""

    _output_file: ClassVar[str]
    """Where the server writes the vector (``params.output_path`` wins when present)."""
    _embedding_dim: ClassVar[int]
    """The vector's length (``task_output.embedding_dim`` wins when present)."""

    @staticmethod
    def _params(normalize: bool) -> dict[str, FormValue]:
        return {"normalize": check_bool("normalize", normalize)}

    async def result(self, job: JobResponse | str, *, numpy: bool | None = None) -> EmbeddingResult:
        """Download and check the vector of a completed job.

        ``numpy``: None returns a numpy float32 array when numpy is installed (else a list of
        floats); True requires numpy; False always returns a list.
        """
        check_numpy(numpy)
        final = await self._completed_job(job)
        data = await self._read_file(final.job_id, self._output_path(final, self._output_file))
        return build_embedding(final, data, default_dim=self._embedding_dim, numpy=numpy)

    async def run(
        self,
        image: FileArg,
        *,
        normalize: bool = True,
        numpy: bool | None = None,
        **options: Unpack[RunOptions],
    ) -> EmbeddingResult:
        """One call: submit, wait (JobFailedError, JobTimeoutError), return the embedding.

        ``normalize`` and ``numpy`` are as for the submission method and :meth:`result`;
        ``options`` are the shared RunOptions (``priority``, ``timeout``, ``on_progress``,
        ``delete_job``).
        """
        params = self._params(normalize)
        check_numpy(numpy)

        async def fetch(job: JobResponse) -> EmbeddingResult:
            return await self.result(job, numpy=numpy)

        return await self._run(image, params, options, fetch)


class ImageEmbeddingPlugin(EmbeddingPlugin):
    """An embedding of a whole image (clip_embedding, dino_embedding)."""

    async def embed_image(
        self, image: FileArg, *, normalize: bool = True, **options: Unpack[SubmitOptions]
    ) -> JobResponse:
        """Submit an embedding job for ``image`` and return the JobResponse.

        Args:
            image: The image file to upload.
            normalize: L2-normalise the vector (server default True).
            **options: The shared SubmitOptions: ``priority``, ``wait``, ``timeout``,
                ``on_progress``, ``on_complete`` (see :meth:`ComputeClient.submit`).
        """
        params = self._params(normalize)
        return await self._client.submit(self.task_type, image, params, **options)
