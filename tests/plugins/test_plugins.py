"""The nine plugins end to end: real HTTP and MQTT to the local compute service (or a real server).

Every plugin is tested on the callback path (``on_progress``/``on_complete`` over MQTT) and on the
waiting path (``wait=True``), on asyncio and trio, and its typed result is checked. The calls
use the plan's keyword shapes (``image=``, ``media=``, ``video=``, ``output_format=``).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import anyio
import numpy as np
import pytest
from PIL import Image

from cl_client import JobResponse, JobUpdate, OnComplete, OnProgress
from cl_client._core.lifecycle import rank
from cl_client.plugins import EmbeddingResult, HlsVariant
from tests.media import EXIF_FIELDS
from tests.plugin_target import PluginTarget
from tests.plugins_real_server import NEEDS_REAL_SERVER, real_server, target_kinds

WAIT_TIMEOUT = 60.0


class Follow:
    """How a test follows its job: callbacks, or ``wait=True`` (the call returns the final job)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.updates: list[JobUpdate] = []
        self.completed: list[JobResponse] = []
        self._done: anyio.Event | None = None

    @property
    def wait(self) -> bool:
        return self.mode == "wait"

    @property
    def timeout(self) -> float | None:
        """A limit on ``wait=True`` (without ``wait`` a timeout is refused)."""
        return WAIT_TIMEOUT if self.wait else None

    @property
    def on_progress(self) -> OnProgress | None:
        return self._progress if self.mode == "callback" else None

    @property
    def on_complete(self) -> OnComplete | None:
        return self._complete if self.mode == "callback" else None

    def _event(self) -> anyio.Event:
        if self._done is None:
            self._done = anyio.Event()
        return self._done

    def _progress(self, update: JobUpdate) -> None:
        self.updates.append(update)

    async def _complete(self, job: JobResponse) -> None:
        self.completed.append(job)
        self._event().set()

    async def final(self, job: JobResponse) -> JobResponse:
        """The completed job, checked: the path's own guarantees hold."""
        if self.mode == "wait":
            assert job.status == "completed", job.error_message
            return job
        assert job.status in ("queued", "processing", "completed")
        with anyio.fail_after(WAIT_TIMEOUT):
            await self._event().wait()
        assert len(self.completed) == 1
        done = self.completed[0]
        assert done.job_id == job.job_id
        assert done.status == "completed", done.error_message
        statuses = [u.status for u in self.updates]
        assert statuses and statuses[-1] == "completed"
        assert [rank(s) for s in statuses] == sorted(rank(s) for s in statuses)
        assert all(u.job_id == job.job_id for u in self.updates)
        return done


# The "wait" twin of every test is in the slow tier; the fast subset follows jobs by callback.
@pytest.fixture(params=["callback", pytest.param("wait", marks=pytest.mark.slow)])
def follow(request: pytest.FixtureRequest) -> Follow:
    mode: str = request.param  # pyright: ignore[reportAny]
    return Follow(mode)


def test_real_server_tier(request: pytest.FixtureRequest) -> None:
    """The real-server variants run only when a real server is given."""
    if real_server(request.config) is None:
        pytest.skip(NEEDS_REAL_SERVER)
    assert target_kinds(request.config) == ["local", "real"]


# ----------------------------------------------------------------------------------- embeddings


def check_embedding(result: EmbeddingResult, dim: int, job_id: str) -> None:
    assert result.job.job_id == job_id
    assert result.dim == dim
    assert isinstance(result.vector, np.ndarray)
    assert result.vector.shape == (dim,)
    assert result.vector.dtype == np.float32
    values = result.tolist()
    assert len(values) == dim
    assert all(math.isfinite(v) for v in values)
    if result.normalized:
        assert math.isclose(math.sqrt(math.fsum(v * v for v in values)), 1.0, rel_tol=1e-3)


async def test_clip_embedding(target: PluginTarget, follow: Follow) -> None:
    await target.require("clip_embedding")
    plugin = target.client.clip_embedding
    job = await plugin.embed_image(
        image=target.image(),
        wait=follow.wait,
        timeout=follow.timeout,
        on_progress=follow.on_progress,
        on_complete=follow.on_complete,
    )
    final = await follow.final(job)
    result = await plugin.result(final)
    check_embedding(result, 512, job.job_id)
    assert result.normalized is True
    as_list = await plugin.result(final.job_id, numpy=False)
    assert isinstance(as_list.vector, list)
    assert as_list.vector == result.tolist()


async def test_dino_embedding(target: PluginTarget, follow: Follow) -> None:
    await target.require("dino_embedding")
    plugin = target.client.dino_embedding
    job = await plugin.embed_image(
        image=target.png(),
        normalize=False,
        wait=follow.wait,
        timeout=follow.timeout,
        on_progress=follow.on_progress,
        on_complete=follow.on_complete,
    )
    final = await follow.final(job)
    check_embedding(await plugin.result(final), 384, job.job_id)
    assert final.params.get("normalize") is False


@pytest.mark.slow
async def test_face_embedding(target: PluginTarget, follow: Follow) -> None:
    await target.require("face_embedding")
    plugin = target.client.face_embedding
    job = await plugin.embed_faces(
        image=target.face(),
        wait=follow.wait,
        timeout=follow.timeout,
        on_progress=follow.on_progress,
        on_complete=follow.on_complete,
    )
    result = await plugin.result(await follow.final(job))
    check_embedding(result, 512, job.job_id)


@pytest.mark.slow
async def test_embedding_one_call(target: PluginTarget) -> None:
    await target.require("clip_embedding")
    result = await target.client.clip_embedding.run(
        target.image(), numpy=False, timeout=WAIT_TIMEOUT, delete_job=True
    )
    assert isinstance(result.vector, list) and len(result.vector) == 512
    assert result.job.status == "completed"
    await target.require("face_embedding")
    face = await target.client.face_embedding.run(target.face(), normalize=False, delete_job=True)
    assert face.dim == 512 and face.normalized is False and face.quality_score is not None


# ----------------------------------------------------------------------------------------- hash


async def test_hash(target: PluginTarget, follow: Follow) -> None:
    await target.require("hash")
    image = target.image()
    job = await target.client.hash.compute(
        image=image,
        algorithm="md5",
        wait=follow.wait,
        timeout=follow.timeout,
        on_progress=follow.on_progress,
        on_complete=follow.on_complete,
    )
    result = await target.client.hash.result(await follow.final(job))
    assert result.algorithm == "md5"
    assert result.hash_value == hashlib.md5(image.read_bytes()).hexdigest()
    assert result.media_type == "image"


@pytest.mark.slow
async def test_hash_sha512_one_call(target: PluginTarget) -> None:
    await target.require("hash")
    text = target.text()
    generic = await target.client.hash.run(text, timeout=WAIT_TIMEOUT)
    assert generic.algorithm == "sha512_generic"
    assert generic.hash_value == hashlib.sha512(text.read_bytes()).hexdigest()
    png = target.png()
    pixels = await target.client.hash.run(png, algorithm="sha512", timeout=WAIT_TIMEOUT)
    assert pixels.algorithm == "sha512_image"
    with Image.open(png) as img:
        img.seek(0)
        assert pixels.hash_value == hashlib.sha512(img.tobytes()).hexdigest()


# ----------------------------------------------------------------------------------------- exif

EXIF_TAGS = ["Make", "Model", "ISO", "FNumber", "DateTimeOriginal", "GPSLatitude", "Software"]


async def test_exif(target: PluginTarget, follow: Follow) -> None:
    await target.require("exif")
    job = await target.client.exif.extract(
        image=target.exif_image(),
        tags=EXIF_TAGS,
        wait=follow.wait,
        timeout=follow.timeout,
        on_progress=follow.on_progress,
        on_complete=follow.on_complete,
    )
    metadata = (await target.client.exif.result(await follow.final(job))).metadata
    assert isinstance(metadata.make, str) and metadata.make
    assert isinstance(metadata.model, str) and metadata.model
    assert metadata.get("Make") == metadata.make
    # The real server's media file carries the same values (tests/media/MEDIA_SETUP.md).
    assert metadata.make == EXIF_FIELDS["Make"]
    assert metadata.model == EXIF_FIELDS["Model"]
    assert metadata.software is not None
    assert metadata.iso == EXIF_FIELDS["ISO"]
    assert metadata.f_number == EXIF_FIELDS["FNumber"]
    assert metadata.date_time_original == EXIF_FIELDS["DateTimeOriginal"]
    assert metadata.gps_latitude is not None
    assert math.isclose(metadata.gps_latitude, float(EXIF_FIELDS["GPSLatitude"]), abs_tol=1e-4)
    assert set(metadata.raw_metadata) >= {"SourceFile", "Make", "Model", "ISO"}


async def test_exif_all_tags_one_call(target: PluginTarget) -> None:
    await target.require("exif")
    result = await target.client.exif.run(target.exif_image(), timeout=WAIT_TIMEOUT)
    metadata = result.metadata
    # Without tags ExifTool reports group-prefixed names, so the typed fields stay empty.
    assert metadata.make is None and metadata.iso is None
    assert any(key.startswith("File:") for key in metadata.raw_metadata)
    assert metadata.get("MIMEType") == "image/jpeg"
    assert isinstance(metadata.get("EXIF:Make"), str)
    assert metadata.get("NoSuchTag", "missing") == "missing"


# ------------------------------------------------------------------------------- face detection


async def test_face_detection(target: PluginTarget, follow: Follow, tmp_path: Path) -> None:
    await target.require("face_detection")
    face = target.face()
    job = await target.client.face_detection.detect(
        image=face,
        confidence_threshold=0.5,
        nms_threshold=0.3,
        wait=follow.wait,
        timeout=follow.timeout,
        on_progress=follow.on_progress,
        on_complete=follow.on_complete,
    )
    result = await target.client.face_detection.result(await follow.final(job))
    with Image.open(face) as img:
        assert (result.image_width, result.image_height) == img.size
    assert result.num_faces >= 1
    for found in result.faces:
        box = found.bbox
        assert 0.0 <= box.x1 < box.x2 <= 1.0 and 0.0 <= box.y1 < box.y2 <= 1.0
        assert 0.5 <= found.confidence <= 1.0
        assert found.landmarks is not None
        for x, y in (found.landmarks.left_eye, found.landmarks.nose_tip):
            assert 0.0 <= x <= 1.0 and 0.0 <= y <= 1.0
        left, top, right, bottom = box.to_pixels(result.image_width, result.image_height)
        assert 0 <= left < right <= result.image_width and 0 <= top < bottom
    crops = await target.client.face_detection.download_crops(result, tmp_path / "crops")
    assert len(crops) == result.num_faces
    for crop in crops:
        with Image.open(crop) as img:
            assert img.format == "PNG" and img.width > 0


# ----------------------------------------------------------------------------- image conversion


async def test_image_conversion(target: PluginTarget, follow: Follow, tmp_path: Path) -> None:
    await target.require("image_conversion")
    source = target.png()
    job = await target.client.image_conversion.convert(
        image=source,
        output_format="jpg",
        quality=70,
        wait=follow.wait,
        timeout=follow.timeout,
        on_progress=follow.on_progress,
        on_complete=follow.on_complete,
    )
    final = await follow.final(job)
    out = tmp_path / "converted"
    out.mkdir()
    result = await target.client.image_conversion.result(final, out)
    assert result.format == "jpg"
    assert result.path == out / f"converted_{source.stem}.jpg"
    with Image.open(result.path) as converted, Image.open(source) as original:
        assert converted.format == "JPEG"
        assert converted.size == original.size


async def test_image_conversion_one_call(target: PluginTarget, tmp_path: Path) -> None:
    await target.require("image_conversion")
    result = await target.client.image_conversion.run(
        target.image(), tmp_path / "photo.webp", output_format="webp", timeout=WAIT_TIMEOUT
    )
    with Image.open(result.path) as converted:
        assert converted.format == "WEBP"
    assert result.path == tmp_path / "photo.webp"


# ------------------------------------------------------------------------------- media thumbnail


def fitted(size: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    scale = min(box[0] / size[0], box[1] / size[1])
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


async def test_media_thumbnail(target: PluginTarget, follow: Follow, tmp_path: Path) -> None:
    await target.require("media_thumbnail")
    image = target.image()
    job = await target.client.media_thumbnail.generate(
        media=image,
        width=128,
        height=128,
        wait=follow.wait,
        timeout=follow.timeout,
        on_progress=follow.on_progress,
        on_complete=follow.on_complete,
    )
    result = await target.client.media_thumbnail.result(
        await follow.final(job), tmp_path / "thumb.jpg"
    )
    assert result.media_type == "image"
    with Image.open(image) as original, Image.open(result.path) as thumb:
        assert thumb.format == "JPEG"
        assert thumb.size == fitted(original.size, (128, 128))


@pytest.mark.slow
async def test_media_thumbnail_sizes_one_call(target: PluginTarget, tmp_path: Path) -> None:
    await target.require("media_thumbnail")
    image = target.image()
    thumbs = target.client.media_thumbnail
    exact = await thumbs.run(
        image, tmp_path / "exact.jpg", width=100, height=50, maintain_aspect_ratio=False
    )
    wide = await thumbs.run(image, tmp_path, width=90)
    assert wide.path == tmp_path / "thumbnail.jpg"
    with Image.open(image) as original:
        ow, oh = original.size
    with Image.open(exact.path) as a, Image.open(wide.path) as b:
        assert a.size == (100, 50)
        assert b.size == (90, int(90 * oh / ow))


# --------------------------------------------------------------------------------- hls streaming


def referenced_files(playlist: Path) -> list[Path]:
    """Every file an m3u8 references, recursively (independent of the client's parser)."""
    found: list[Path] = []
    for line in playlist.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            path = playlist.parent / line
            found.append(path)
            if path.suffix == ".m3u8" and path.is_file():
                found.extend(referenced_files(path))
    return found


@pytest.mark.slow
async def test_hls_streaming(target: PluginTarget, follow: Follow, tmp_path: Path) -> None:
    await target.require("hls_streaming")
    # Small variants for the local service; the server's defaults (720p, 480p) for a real one.
    variants = [HlsVariant(720, 3500), HlsVariant(480, 1500)]
    if not target.is_real:
        variants = [HlsVariant(resolution=96, bitrate=200), HlsVariant(72, 150)]
    job = await target.client.hls_streaming.generate_manifest(
        video=target.long_video(),
        variants=variants,
        wait=follow.wait,
        timeout=follow.timeout,
        on_progress=follow.on_progress,
        on_complete=follow.on_complete,
    )
    result = await target.client.hls_streaming.result(await follow.final(job), tmp_path / "hls")
    assert result.master_playlist == tmp_path / "hls" / "adaptive.m3u8"
    assert result.variants_generated == 2
    assert len(result.variant_playlists) == 2
    assert result.segments and all(s.suffix == ".ts" for s in result.segments)
    referenced = referenced_files(result.master_playlist)
    assert referenced and all(path.is_file() for path in referenced)
    assert set(referenced) == set(result.variant_playlists) | set(result.segments)
    assert all(path.is_file() and path.stat().st_size > 0 for path in result.files)


@pytest.mark.slow
async def test_hls_streaming_with_original_one_call(target: PluginTarget, tmp_path: Path) -> None:
    await target.require("hls_streaming")
    result = await target.client.hls_streaming.run(
        target.video(),
        tmp_path / "bundle",
        variants=[HlsVariant(96, 200)],
        include_original=True,
        timeout=WAIT_TIMEOUT,
    )
    assert result.include_original is True
    names = {p.name for p in result.variant_playlists}
    assert names == {"adaptive-96p-200.m3u8", "adaptive-orig.m3u8"}
    assert any(s.name.startswith("adaptive-orig-") for s in result.segments)
    for playlist in result.variant_playlists:
        assert all(p.is_file() for p in referenced_files(playlist))
