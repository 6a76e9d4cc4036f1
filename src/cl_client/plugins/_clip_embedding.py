"""clip_embedding: a 512-d MobileCLIP image embedding (semantic similarity) (PROTOCOL.md §3).

The vector is not in ``task_output``: the server writes it to ``output/clip_embedding.npy``
(float32, shape (512,)), which :meth:`ClipEmbeddingPlugin.result` downloads, parses and checks.
"""

from __future__ import annotations

from typing import ClassVar

from .._callbacks import OnComplete, OnProgress
from .._http import FormValue
from .._models import JobResponse
from ._base import FileArg, PluginClient, check_bool
from ._results import EmbeddingResult, build_embedding, check_numpy

__all__ = ["ClipEmbeddingPlugin"]


class ClipEmbeddingPlugin(PluginClient):
    """``client.clip_embedding``: a 512-d MobileCLIP image embedding (semantic similarity)."""

    task_type: ClassVar[str] = "clip_embedding"
    output_file: ClassVar[str] = "output/clip_embedding.npy"
    """Where the server writes the vector (``params.output_path`` wins when present)."""
    embedding_dim: ClassVar[int] = 512
    """The vector's length (``task_output.embedding_dim`` wins when present)."""

    @staticmethod
    def _params(normalize: bool) -> dict[str, FormValue]:
        return {"normalize": check_bool("normalize", normalize)}

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
        """Submit a clip_embedding job for ``image`` and return the JobResponse.

        Args:
            image: The image file to upload.
            normalize: L2-normalise the vector (server default True).
            priority: 0..10 (stored by the server, not used for scheduling).
            wait: Poll over HTTP until the job finishes and return the final JobResponse.
            timeout: With ``wait``, give up after this many seconds (JobTimeoutError).
            on_progress: Called with every JobUpdate (sync or async).
            on_complete: Called once with the final JobResponse (sync or async).
        """
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
