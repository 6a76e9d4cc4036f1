"""hash: a file's digest (PROTOCOL.md §3.6).

``md5`` hashes the file bytes. ``sha512`` hashes the decoded pixels of an image
(``sha512_image``), the I-frame packets of a video (``sha512_video``) or the bytes of anything else
(``sha512_generic``). The digest is not in ``task_output``: it is in ``output/hash.json``.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from .._callbacks import OnComplete, OnProgress
from .._http import FormValue
from .._models import JobResponse
from ._base import FileArg, PluginClient, check_choice
from ._results import HashOutput, HashResult, parse_json_payload

__all__ = ["HashAlgorithm", "HashPlugin"]

HashAlgorithm = Literal["sha512", "md5"]
ALGORITHMS: tuple[str, ...] = ("sha512", "md5")


class HashPlugin(PluginClient):
    """``client.hash``: md5 or sha512 of a file."""

    task_type: ClassVar[str] = "hash"
    output_file: ClassVar[str] = "output/hash.json"

    @staticmethod
    def _params(algorithm: str) -> dict[str, FormValue]:
        return {"algorithm": check_choice("algorithm", algorithm, ALGORITHMS)}

    async def compute(
        self,
        file: FileArg,
        *,
        algorithm: HashAlgorithm = "sha512",
        priority: int = 5,
        wait: bool = False,
        timeout: float | None = None,
        on_progress: OnProgress | None = None,
        on_complete: OnComplete | None = None,
    ) -> JobResponse:
        """Submit a hash job for ``file`` and return the JobResponse.

        Args:
            file: The file to upload (any type).
            algorithm: ``"sha512"`` (server default) or ``"md5"``.
            priority: 0..10 (stored by the server, not used for scheduling).
            wait: Poll over HTTP until the job finishes and return the final JobResponse.
            timeout: With ``wait``, give up after this many seconds (JobTimeoutError).
            on_progress: Called with every JobUpdate (sync or async).
            on_complete: Called once with the final JobResponse (sync or async).
        """
        params = self._params(algorithm)
        return await self.submit_with_files(
            file, params, priority, wait, timeout, on_progress, on_complete
        )

    async def result(self, job: JobResponse | str) -> HashResult:
        """The digest of a completed job (downloads ``output/hash.json``)."""
        final = await self.completed_job(job)
        data = await self.read_file(final.job_id, self.output_path(final, self.output_file))
        output = parse_json_payload(HashOutput, data, "hash.json")
        return HashResult(
            job=final,
            hash_value=output.hash_value,
            algorithm=output.algorithm,
            media_type=output.media_type,
            process_time=output.process_time,
        )

    async def run(
        self,
        file: FileArg,
        *,
        algorithm: HashAlgorithm = "sha512",
        priority: int = 5,
        timeout: float | None = None,
        delete_job: bool = False,
    ) -> HashResult:
        """One call: submit, wait (JobFailedError, JobTimeoutError), return the digest."""
        params = self._params(algorithm)
        return await self._run(file, params, priority, timeout, delete_job, self.result)
