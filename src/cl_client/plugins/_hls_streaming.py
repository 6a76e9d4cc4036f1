"""hls_streaming: adaptive HLS from a video, made with ffmpeg on the server.

See docs/plugins.md#hls_streaming.

The server writes ``output/adaptive.m3u8`` (the master playlist), one playlist per variant and
2-second ``.ts`` segments. ``task_output.master_playlist`` is an absolute path on the server;
:meth:`HlsStreamingPlugin.result` maps it to a job file, then downloads the master, every playlist
it references and every segment, keeping the layout the playlists refer to.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import ClassVar, TypeAlias, Unpack, cast
from urllib.parse import unquote

import anyio
from pydantic import JsonValue

from .._core.errors import DownloadError, ParameterError, ProtocolError
from .._core.groups import unwrap_group
from .._core.models import JobResponse
from .._options import RunOptions, SubmitOptions
from .._transports.http import FormValue, local_errors, local_path, safe_join
from ._base import FileArg, PluginClient, check_bool, check_int, json_param
from ._results import (
    MAX_PLAYLIST,
    HlsOutput,
    HlsResult,
    decode_playlist,
    parse_payload,
    playlist_uris,
)

__all__ = [
    "DEFAULT_VARIANTS",
    "HlsStreamingPlugin",
    "HlsVariant",
    "VariantSpec",
    "playlist_uris",
]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

_DOWNLOAD_CONCURRENCY = 4
ORIGINAL_PLAYLIST = "adaptive-orig.m3u8"
"""The playlist of the original stream (``include_original``), beside the master playlist."""


@dataclass(frozen=True, slots=True)
class HlsVariant:
    """One output stream: ``resolution`` is the target height in pixels, ``bitrate`` in kbps."""

    resolution: int
    bitrate: int


VariantSpec: TypeAlias = HlsVariant | tuple[int, int] | Mapping[str, int]
"""An HlsVariant, a ``(resolution, bitrate)`` pair or ``{"resolution": .., "bitrate": ..}``."""

DEFAULT_VARIANTS: tuple[HlsVariant, ...] = (HlsVariant(720, 3500), HlsVariant(480, 1500))
"""The server's default (its form default; the schema's default also has 240p)."""


def _variant(spec: object) -> HlsVariant:
    if isinstance(spec, HlsVariant):
        resolution, bitrate = spec.resolution, spec.bitrate
    elif isinstance(spec, tuple) and len(cast(tuple[object, ...], spec)) == 2:
        resolution, bitrate = cast(tuple[object, object], spec)
    elif isinstance(spec, Mapping) and set(cast(Mapping[object, object], spec)) == {
        "resolution",
        "bitrate",
    }:
        mapping = cast(Mapping[str, object], spec)
        resolution, bitrate = mapping["resolution"], mapping["bitrate"]
    else:
        raise ParameterError(
            "each of variants must be an HlsVariant(resolution, bitrate), a (resolution, "
            f"bitrate) pair or a {{'resolution': .., 'bitrate': ..}} mapping; got {spec!r}"
        )
    return HlsVariant(
        check_int("variants resolution (target height in pixels)", resolution, minimum=1),
        check_int("variants bitrate (kbps)", bitrate, minimum=100),
    )


def hls_variants(variants: object) -> list[HlsVariant]:
    """Check ``variants``: a non-empty sequence of distinct variants (ParameterError)."""
    if isinstance(variants, str | bytes) or not isinstance(variants, Sequence):
        raise ParameterError(
            f"variants must be a list of HlsVariant(resolution, bitrate), got {variants!r}"
        )
    checked = [_variant(v) for v in cast(Sequence[object], variants)]
    if not checked:
        raise ParameterError(
            "variants must hold at least one variant (for the original quality only, the "
            "server still needs one: add include_original=True)"
        )
    if len(set(checked)) != len(checked):
        raise ParameterError(f"variants must be distinct, got {checked!r}")
    return checked


def master_job_path(master_playlist: str, job_id: str, output_path: str | None) -> str:
    """The master playlist's path relative to the job directory.

    The server reports an absolute path (``/srv/.../jobs/<id>/output/adaptive.m3u8``): everything
    up to and including ``jobs/<id>/`` is dropped. A relative path is kept; anything else falls
    back to ``<params.output_path>/adaptive.m3u8``.
    """
    text = master_playlist.replace("\\", "/")
    marker = f"/{job_id}/"
    at = text.rfind(marker)
    if at >= 0:
        return text[at + len(marker) :]
    if text and not text.startswith("/") and ".." not in PurePosixPath(text).parts:
        return text
    return f"{(output_path or 'output').strip('/')}/adaptive.m3u8"


def _resolve(base: str, uri: str, where: str) -> str:
    """``uri`` (relative to the job directory ``base``) as a normalised job-relative path."""
    if "://" in uri or uri.startswith("/"):
        raise ProtocolError(f"{where} references {uri!r}, which is not a relative file path")
    path = unquote(uri.split("?", 1)[0])
    if not path or _CONTROL.search(path):
        raise ProtocolError(f"{where} references {uri!r}, which is not a valid file path")
    joined = posixpath.normpath(posixpath.join(base, path))
    if joined.startswith("../") or joined == "..":
        raise DownloadError(f"{where} references {uri!r}, outside the job directory")
    return joined


async def _read_playlist(path: Path) -> bytes:
    """A downloaded playlist's bytes (at most MAX_PLAYLIST + 1: the decoder refuses more)."""
    with local_errors(path):
        async with await anyio.open_file(path, "rb") as handle:
            return await handle.read(MAX_PLAYLIST + 1)


class HlsStreamingPlugin(PluginClient):
    """``client.hls_streaming``: adaptive HLS (master playlist, variants, segments)."""

    task_type: ClassVar[str] = "hls_streaming"

    @staticmethod
    def _params(variants: object, include_original: bool) -> dict[str, FormValue]:
        checked = hls_variants(variants)
        payload: list[JsonValue] = [
            {"resolution": v.resolution, "bitrate": v.bitrate} for v in checked
        ]
        return {
            "variants": json_param(payload),
            "include_original": check_bool("include_original", include_original),
        }

    async def generate_manifest(
        self,
        video: FileArg,
        *,
        variants: Sequence[VariantSpec] = DEFAULT_VARIANTS,
        include_original: bool = False,
        **options: Unpack[SubmitOptions],
    ) -> JobResponse:
        """Submit an hls_streaming job for ``video`` and return the JobResponse.

        Args:
            video: The video to upload (it needs an audio stream on the real server).
            variants: The streams to encode, e.g. ``[HlsVariant(720, 3500)]`` (resolution is
                the target height, bitrate in kbps >= 100); default 720p/3500 and 480p/1500.
            include_original: Also add the original stream, copied without re-encoding.
            **options: The shared SubmitOptions: ``priority``, ``wait``, ``timeout``,
                ``on_progress``, ``on_complete`` (see :meth:`ComputeClient.submit`).
        """
        params = self._params(variants, include_original)
        return await self._client.submit(self.task_type, video, params, **options)

    async def result(
        self, job: JobResponse | str, directory: FileArg, *, overwrite: bool = False
    ) -> HlsResult:
        """Download the HLS bundle of a completed job into ``directory`` (created if needed).

        The master playlist lands in ``directory`` with every file it references (directly or
        through a variant playlist) at the relative path the playlists use. Existing files are
        kept (DownloadError) unless ``overwrite``.
        """
        check_bool("overwrite", overwrite)
        final = await self._completed_job(job)
        output = parse_payload(HlsOutput, final.task_output or {}, "hls_streaming output")
        chosen = local_path(directory, "the directory")
        with local_errors(chosen):
            root = Path(await anyio.Path(chosen).resolve())  # absolute, like every file path
        master_rel = master_job_path(output.master_playlist, final.job_id, final.output_path)
        base = posixpath.dirname(master_rel)
        master_target = safe_join(root, posixpath.basename(master_rel))
        with local_errors(root):
            await anyio.Path(root).mkdir(parents=True, exist_ok=True)
        master = await self._client.download_job_file(
            final.job_id, master_rel, master_target, overwrite=overwrite
        )
        playlists: list[Path] = []
        segments: list[tuple[str, Path]] = []
        seen: set[str] = {master_rel}
        uris = decode_playlist(await _read_playlist(master), "the master playlist")
        if output.include_original or final.params.get("include_original") is True:
            # The original stream's playlist is written beside the master, not listed in it.
            uris.append(ORIGINAL_PLAYLIST)
        for uri in uris:
            rel = _resolve(base, uri, "the master playlist")
            if rel in seen:
                continue
            seen.add(rel)
            target = safe_join(root, posixpath.relpath(rel, base or "."))
            if not rel.endswith(".m3u8"):
                segments.append((rel, target))
                continue
            playlist = await self._client.download_job_file(
                final.job_id, rel, target, overwrite=overwrite
            )
            playlists.append(playlist)
            for seg_uri in decode_playlist(await _read_playlist(playlist), f"playlist {rel!r}"):
                seg_rel = _resolve(posixpath.dirname(rel), seg_uri, f"playlist {rel!r}")
                if seg_rel not in seen:
                    seen.add(seg_rel)
                    segments.append(
                        (seg_rel, safe_join(root, posixpath.relpath(seg_rel, base or ".")))
                    )
        await self._download_all(final.job_id, segments, overwrite)
        return HlsResult(
            job=final,
            directory=root,
            master_playlist=master,
            variant_playlists=playlists,
            segments=[target for _, target in segments],
            variants_generated=output.variants_generated,
            total_segments=output.total_segments,
            include_original=output.include_original,
        )

    async def _download_all(
        self, job_id: str, files: list[tuple[str, Path]], overwrite: bool
    ) -> None:
        pending = list(reversed(files))

        async def worker() -> None:
            while pending:
                rel, target = pending.pop()
                await self._client.download_job_file(job_id, rel, target, overwrite=overwrite)

        try:
            async with anyio.create_task_group() as tg:
                for _ in range(min(_DOWNLOAD_CONCURRENCY, len(files))):
                    tg.start_soon(worker)
        except BaseExceptionGroup as group:
            raise unwrap_group(group) from None

    async def run(
        self,
        video: FileArg,
        directory: FileArg,
        *,
        variants: Sequence[VariantSpec] = DEFAULT_VARIANTS,
        include_original: bool = False,
        overwrite: bool = False,
        **options: Unpack[RunOptions],
    ) -> HlsResult:
        """One call: submit, wait (JobFailedError, JobTimeoutError), download into
        ``directory``.

        ``options`` are the shared RunOptions (``priority``, ``timeout``, ``on_progress``,
        ``delete_job``).
        """
        params = self._params(variants, include_original)
        check_bool("overwrite", overwrite)

        async def fetch(job: JobResponse) -> HlsResult:
            return await self.result(job, directory, overwrite=overwrite)

        return await self._run(video, params, options, fetch)
