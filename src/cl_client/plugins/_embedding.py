"""What the three embedding plugins share (PROTOCOL.md §3.1, §3.2, §3.5).

The vector is not in ``task_output``: the server writes it to an ``.npy`` file (float32, 1-D),
which :meth:`EmbeddingPlugin.result` downloads, parses and checks against ``embedding_dim``.
"""

from __future__ import annotations

from typing import ClassVar

from .._callbacks import OnComplete, OnProgress
from .._http import FormValue
from .._models import JobResponse
from ._base import FileArg, PluginClient, check_bool
from ._results import EmbeddingResult, build_embedding, check_numpy

__all__ = ["EmbeddingPlugin", "ImageEmbeddingPlugin"]


class EmbeddingPlugin(PluginClient):
    """Base of the clip_embedding, dino_embedding and face_embedding clients."""

    output_file: ClassVar[str]
    """Where the server writes the vector (``params.output_path`` wins when present)."""
    embedding_dim: ClassVar[int]
    """The vector's length (``task_output.embedding_dim`` wins when present)."""

    @staticmethod
    def _params(normalize: bool) -> dict[str, FormValue]:
        return {"normalize": check_bool("normalize", normalize)}

    async def _embed(
        self,
        image: FileArg,
        normalize: bool,
        priority: int,
        wait: bool,
        timeout: float | None,
        on_progress: OnProgress | None,
        on_complete: OnComplete | None,
    ) -> JobResponse:
        params = self._params(normalize)
        return await self.submit_with_files(
            image, params, priority, wait, timeout, on_progress, on_complete
        )

    async def result(self, job: JobResponse | str, *, numpy: bool | None = None) -> EmbeddingResult:
        """Download and check the vector of a completed job.

        ``numpy``: None returns a numpy float32 array when numpy is installed (else a list of
        floats); True requires numpy; False always returns a list.
        """
        check_numpy(numpy)
        final = await self.completed_job(job)
        data = await self.read_file(final.job_id, self.output_path(final, self.output_file))
        return build_embedding(final, data, default_dim=self.embedding_dim, numpy=numpy)

    async def run(
        self,
        image: FileArg,
        *,
        normalize: bool = True,
        priority: int = 5,
        timeout: float | None = None,
        numpy: bool | None = None,
        delete_job: bool = False,
    ) -> EmbeddingResult:
        """One call: submit, wait (JobFailedError, JobTimeoutError), return the embedding.

        With ``delete_job`` the job is deleted on the server afterwards.
        """
        params = self._params(normalize)
        check_numpy(numpy)

        async def fetch(job: JobResponse) -> EmbeddingResult:
            return await self.result(job, numpy=numpy)

        return await self._run(image, params, priority, timeout, delete_job, fetch)


class ImageEmbeddingPlugin(EmbeddingPlugin):
    """An embedding of a whole image (clip_embedding, dino_embedding)."""

    async def embed_image(
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
        """Submit an embedding job for ``image`` and return the JobResponse.

        Args:
            image: The image file to upload.
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
