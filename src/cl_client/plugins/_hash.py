"""hash: a file's digest (docs/plugins.md#hash).

``md5`` hashes the file bytes. ``sha512`` hashes the decoded pixels of an image
(``sha512_image``), the I-frame packets of a video (``sha512_video``) or the bytes of anything else
(``sha512_generic``). The digest is not in ``task_output``: it is in ``output/hash.json``.
"""

from __future__ import annotations

from typing import ClassVar, Literal, Unpack

from .._core.models import JobResponse
from .._options import RunOptions, SubmitOptions
from .._transports.http import FormValue
from ._base import FileArg, PluginClient, check_choice
from ._results import HashOutput, HashResult, parse_json_payload

__all__ = ["HashAlgorithm", "HashPlugin"]

HashAlgorithm = Literal["sha512", "md5"]
ALGORITHMS: tuple[str, ...] = ("sha512", "md5")


class HashPlugin(PluginClient):
    """``client.hash``: md5 or sha512 of a file."""

    task_type: ClassVar[str] = "hash"
    _output_file: ClassVar[str] = "output/hash.json"

    @staticmethod
    def _params(algorithm: str) -> dict[str, FormValue]:
        return {"algorithm": check_choice("algorithm", algorithm, ALGORITHMS)}

    async def compute(
        self,
        image: FileArg,
        *,
        algorithm: HashAlgorithm = "sha512",
        **options: Unpack[SubmitOptions],
    ) -> JobResponse:
        """Submit a hash job for ``image`` and return the JobResponse.

        Args:
            image: The file to upload: an image, a video or any other file.
            algorithm: ``"sha512"`` (server default) or ``"md5"``.
            **options: The shared SubmitOptions: ``priority``, ``wait``, ``timeout``,
                ``on_progress``, ``on_complete`` (see :meth:`ComputeClient.submit`).
        """
        params = self._params(algorithm)
        return await self._client.submit(self.task_type, image, params, **options)

    async def result(self, job: JobResponse | str) -> HashResult:
        """The digest of a completed job (downloads ``output/hash.json``)."""
        final = await self._completed_job(job)
        data = await self._read_file(final.job_id, self._output_path(final, self._output_file))
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
        image: FileArg,
        *,
        algorithm: HashAlgorithm = "sha512",
        **options: Unpack[RunOptions],
    ) -> HashResult:
        """One call: submit, wait (JobFailedError, JobTimeoutError), return the digest.

        ``options`` are the shared RunOptions (``priority``, ``timeout``, ``on_progress``,
        ``delete_job``).
        """
        params = self._params(algorithm)
        return await self._run(image, params, options, self.result)
