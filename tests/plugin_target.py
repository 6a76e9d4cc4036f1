"""The ``target`` of the plugin and workflow tests: the local compute service or a real server.

:func:`open_target` connects a :class:`TrackingClient` (which remembers every job it submits and
deletes them at the end) and provides the media: generated on the fly for the local service,
files from ``CL_CLIENT_TEST_MEDIA_DIR`` for a real server (see ``plugins_real_server``). Each test
first calls ``target.require(...)``: WorkerUnavailableError names the capabilities no worker
offers.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Unpack

import anyio
import pytest

from cl_client import (
    ClClientError,
    ClientSettings,
    ComputeClient,
    FileArg,
    FormValue,
    JobNotFoundError,
    JobResponse,
    SubmitOptions,
)
from cl_client.testing import LocalComputeService
from tests.media import make_face_jpeg, make_jpeg, make_png, make_text, make_video
from tests.plugins_real_server import (
    MEDIA_ENV,
    MEDIA_GUIDE,
    NEEDS_REAL_SERVER,
    TargetKind,
    real_server,
)

__all__ = ["PluginTarget", "TrackingClient", "open_target"]

# The media files of a real-server run (relative to the media directory; see MEDIA_GUIDE).
REAL_MEDIA = {
    "image": "test_image_1920x1080.jpg",
    "png": "test_image_800x600.png",
    "face": "test_face_single.jpg",
    "exif": "test_exif_rich.jpg",
    "video": "test_video_720p_5s.mp4",
    "long_video": "test_video_1080p_10s.mp4",
}
DEFAULT_MEDIA_DIR = Path(__file__).parent / "media"


class TrackingClient(ComputeClient):
    """A ComputeClient that remembers every job it submitted (to delete them afterwards)."""

    created: list[str]

    async def submit(
        self,
        task_type: str,
        file: FileArg | None,
        params: Mapping[str, FormValue] | None = None,
        **options: Unpack[SubmitOptions],
    ) -> JobResponse:
        # Remember the job before waiting for it (``wait=True``), so it is deleted even if the
        # wait fails.
        waiting = options.pop("wait", False)
        timeout = options.pop("timeout", None) if waiting else None
        job = await super().submit(task_type, file, params, **options)
        self.created.append(job.job_id)
        return await self._wait_within(job.job_id, timeout) if waiting else job

    async def delete_created(self) -> None:
        """Delete every job this client submitted (already deleted ones are fine)."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(30):
            for job_id in self.created:
                try:
                    await self.delete_job(job_id)
                except JobNotFoundError:
                    pass
                except ClClientError as exc:  # pragma: no cover - diagnostic only
                    print(f"could not delete job {job_id}: {exc}")


@dataclass
class PluginTarget:
    """A connected client plus media, for one test."""

    kind: TargetKind
    client: TrackingClient
    tmp: Path
    media_dir: Path | None
    service: LocalComputeService | None = None
    _made: dict[str, Path] = field(default_factory=dict[str, Path])

    @property
    def is_real(self) -> bool:
        return self.kind == "real"

    @property
    def local(self) -> LocalComputeService:
        assert self.service is not None, "only the local target has a service"
        return self.service

    async def require(self, *capabilities: str, timeout: float | None = None) -> None:
        """Fail (WorkerUnavailableError naming the missing ones) unless live workers offer
        ``capabilities``."""
        if timeout is None:
            timeout = 10 if self.is_real else 5
        await self.client.wait_for_workers(capabilities, timeout=timeout)

    def _real(self, name: str) -> Path:
        if self.media_dir is None:
            pytest.fail(
                f"real-server media are needed: set {MEDIA_ENV} (or --media-dir) to a directory "
                f"laid out as {MEDIA_GUIDE} describes"
            )
        path = self.media_dir / REAL_MEDIA[name]
        if not path.is_file():
            pytest.fail(f"missing test media file {path}: see {MEDIA_GUIDE}")
        return path

    def _local(self, name: str, make: Callable[[Path], Path | None]) -> Path:
        if name not in self._made:
            path = make(self.tmp / "media" / name)
            if path is None:
                pytest.fail(
                    "ffmpeg is needed to make the test video (the imageio-ffmpeg package ships one)"
                )
            self._made[name] = path
        return self._made[name]

    def image(self) -> Path:
        """A JPEG with EXIF (local: 480x270 carrying media.EXIF_FIELDS)."""
        if self.is_real:
            return self._real("image")
        return self._local("photo.jpg", lambda p: make_jpeg(p, (480, 270)))

    def exif_image(self) -> Path:
        if self.is_real:
            return self._real("exif")
        return self.image()

    def png(self) -> Path:
        """A PNG (local: 200x150 RGBA)."""
        if self.is_real:
            return self._real("png")
        return self._local("pic.png", lambda p: make_png(p, (200, 150)))

    def face(self) -> Path:
        """An image with one face."""
        if self.is_real:
            return self._real("face")
        return self._local("face.jpg", lambda p: make_face_jpeg(p, 1, (320, 240)))

    def video(self) -> Path:
        """A short H.264 MP4 with audio (local: 2 s, 160x120)."""
        if self.is_real:
            return self._real("video")
        return self._local("clip.mp4", lambda p: make_video(p, seconds=2, size=(160, 120)))

    def long_video(self) -> Path:
        """The video for HLS (local: the short one)."""
        if self.is_real:
            return self._real("long_video")
        return self.video()

    def text(self) -> Path:
        """A small text file (generated for both targets)."""
        return self._local("notes.txt", lambda p: make_text(p, "cl-client plugin test\n"))


@asynccontextmanager
async def open_target(
    kind: TargetKind,
    config: pytest.Config,
    tmp_path: Path,
    make_service: Callable[..., LocalComputeService],
) -> AsyncGenerator[PluginTarget]:
    """A connected target; on exit every job its client submitted is deleted."""
    if kind == "real":
        server = real_server(config)
        if server is None:  # pragma: no cover - the real target is only generated when set
            pytest.skip(NEEDS_REAL_SERVER)
        settings = ClientSettings(compute_url=server.compute_url, mqtt_url=server.mqtt_url)
        media = Path(server.media_dir) if server.media_dir else DEFAULT_MEDIA_DIR
        async with TrackingClient(settings) as client:
            client.created = []
            target = PluginTarget(kind, client, tmp_path, media)
            try:
                yield target
            finally:
                await client.delete_created()
        return
    async with make_service() as service, TrackingClient(service.settings()) as client:
        client.created = []
        target = PluginTarget(kind, client, tmp_path, None, service)
        try:
            yield target
        finally:
            await client.delete_created()
