"""Plugin clients on bad input: nothing is uploaded for an invalid parameter or file, server errors
become typed errors, existing download targets are kept, unfinished or failed jobs are reported.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import ClassVar, cast
from urllib.parse import parse_qs

import anyio
import httpx
import pytest

import cl_client._transports.http
from cl_client import (
    ComputeClient,
    DownloadError,
    JobFailedError,
    JobNotFoundError,
    JobResponse,
    JobTimeoutError,
    NotFoundError,
    OnComplete,
    OnProgress,
    ParameterError,
    ProtocolError,
    RequestValidationError,
    RunOptions,
    ServerError,
    SubmitOptions,
    WorkerUnavailableError,
)
from cl_client.plugins import (
    ClipEmbeddingPlugin,
    DetectedFace,
    DinoEmbeddingPlugin,
    ExifPlugin,
    FaceDetectionPlugin,
    FaceEmbeddingPlugin,
    HashAlgorithm,
    HashPlugin,
    HlsStreamingPlugin,
    HlsVariant,
    ImageConversionPlugin,
    ImageFormat,
    MediaThumbnailPlugin,
    VariantSpec,
)
from cl_client.plugins import _results as results_module
from cl_client.testing import LocalComputeService
from tests.media import make_face_jpeg, make_jpeg, make_text, make_video
from tests.plugin_target import open_target
from tests.util import wait_until


@pytest.fixture
async def client(local_compute: LocalComputeService) -> AsyncIterator[ComputeClient]:
    settings = local_compute.settings(reconcile_interval=0.2, poll_interval=0.05)
    async with ComputeClient(settings) as c:
        yield c


@pytest.fixture
def image(tmp_path: Path) -> Path:
    return make_jpeg(tmp_path / "photo.jpg", (160, 90))


async def test_plugin_properties_are_lazy_typed_and_small(client: ComputeClient) -> None:
    plugins: list[tuple[object, type]] = [
        (client.clip_embedding, ClipEmbeddingPlugin),
        (client.dino_embedding, DinoEmbeddingPlugin),
        (client.exif, ExifPlugin),
        (client.face_detection, FaceDetectionPlugin),
        (client.face_embedding, FaceEmbeddingPlugin),
        (client.hash, HashPlugin),
        (client.hls_streaming, HlsStreamingPlugin),
        (client.image_conversion, ImageConversionPlugin),
        (client.media_thumbnail, MediaThumbnailPlugin),
    ]
    verbs = {
        ClipEmbeddingPlugin: "embed_image",
        DinoEmbeddingPlugin: "embed_image",
        ExifPlugin: "extract",
        FaceDetectionPlugin: "detect",
        FaceEmbeddingPlugin: "embed_faces",
        HashPlugin: "compute",
        HlsStreamingPlugin: "generate_manifest",
        ImageConversionPlugin: "convert",
        MediaThumbnailPlugin: "generate",
    }
    task_types: set[str] = set()
    for plugin, cls in plugins:
        assert type(plugin) is cls
        task_type = cast(str, getattr(cls, "task_type"))  # noqa: B009
        task_types.add(task_type)
        assert task_type in repr(plugin)
        # A plugin client shows its verb, result() and run(), and nothing of the plumbing.
        public = {name for name in dir(plugin) if not name.startswith("_")}
        extra = {"download_crop", "download_crops"} if cls is FaceDetectionPlugin else set[str]()
        assert public == {verbs[cls], "result", "run", "task_type"} | extra, cls
    assert client.hash is client.hash
    assert len(task_types) == 9


def wrong(value: object) -> bool:
    """A value of the wrong type, typed to get past the checker (the client checks at runtime)."""
    return cast(bool, value)


async def test_invalid_parameters_fail_before_anything_is_sent(
    client: ComputeClient, local_compute: LocalComputeService, image: Path
) -> None:
    cases: list[tuple[Callable[[], Awaitable[object]], list[str]]] = [
        (lambda: client.clip_embedding.embed_image(image, normalize=wrong("yes")), ["normalize"]),
        (lambda: client.dino_embedding.embed_image(image, normalize=wrong(1)), ["True or False"]),
        (lambda: client.face_embedding.run(image, normalize=wrong(None)), ["normalize"]),
        (lambda: client.exif.extract(image, tags=["Make", "bad tag"]), ["tags", "'bad tag'"]),
        (lambda: client.exif.extract(image, tags=cast(str, 5)), ["tags", "comma-separated"]),
        (lambda: client.exif.extract(image, tags=cast(list[str], ["Make", 3])), ["tags"]),
        (
            lambda: client.face_detection.detect(image, confidence_threshold=1.5),
            ["confidence_threshold", "from 0 to 1", "1.5"],
        ),
        (lambda: client.face_detection.detect(image, nms_threshold=-0.1), ["nms_threshold"]),
        (
            lambda: client.face_detection.detect(image, confidence_threshold=float("nan")),
            ["confidence_threshold"],
        ),
        (
            lambda: client.face_detection.run(image, nms_threshold=cast(float, "0.5")),
            ["nms_threshold", "a number"],
        ),
        (
            lambda: client.hash.compute(image, algorithm=cast(HashAlgorithm, "sha1")),
            ["algorithm", "'sha512'", "'md5'", "'sha1'"],
        ),
        (
            lambda: client.hls_streaming.generate_manifest(image, variants=[]),
            ["variants", "at least one"],
        ),
        (
            lambda: client.hls_streaming.generate_manifest(image, variants=[(720, 50)]),
            ["bitrate", ">= 100"],
        ),
        (
            lambda: client.hls_streaming.generate_manifest(image, variants=[(0, 500)]),
            ["resolution", ">= 1"],
        ),
        (
            lambda: client.hls_streaming.generate_manifest(
                image, variants=[cast(VariantSpec, {"resolution": 720})]
            ),
            ["variants", "HlsVariant"],
        ),
        (
            lambda: client.hls_streaming.generate_manifest(
                image, variants=[HlsVariant(240, 400), (240, 400)]
            ),
            ["variants must be distinct"],
        ),
        (
            lambda: client.hls_streaming.run(
                image, image.parent, variants=cast(list[VariantSpec], "720")
            ),
            ["variants must be a list"],
        ),
        (
            lambda: client.hls_streaming.generate_manifest(image, include_original=wrong("no")),
            ["include_original"],
        ),
        (
            lambda: client.image_conversion.convert(image, output_format=cast(ImageFormat, "svg")),
            ["output_format", "'png'", "'jpg'", "'webp'", "'tiff'", "'svg'"],
        ),
        (
            lambda: client.image_conversion.convert(image, output_format=cast(ImageFormat, 3)),
            ["output_format", "'png'"],
        ),
        (
            lambda: client.image_conversion.convert(image, output_format="png", quality=0),
            ["quality", "from 1 to 100"],
        ),
        (
            lambda: client.image_conversion.run(
                image, image.parent, output_format="jpg", quality=101
            ),
            ["quality"],
        ),
        (lambda: client.media_thumbnail.generate(image, width=0), ["width", ">= 1"]),
        (lambda: client.media_thumbnail.generate(image, height=-5), ["height", "None or"]),
        (lambda: client.media_thumbnail.generate(image, width=cast(int, 1.5)), ["width"]),
        (
            lambda: client.media_thumbnail.generate(image, maintain_aspect_ratio=wrong(None)),
            ["maintain_aspect_ratio"],
        ),
        (
            lambda: client.media_thumbnail.run(image, image.parent, overwrite=wrong("yes")),
            ["overwrite"],
        ),
        (lambda: client.hash.compute(image, priority=11), ["priority", "from 0 to 10"]),
        (lambda: client.hash.compute(image, priority=-1), ["priority"]),
        (lambda: client.hash.run(image, priority=wrong(True)), ["priority"]),
        (lambda: client.hash.compute(image, wait=True, timeout=0), ["timeout"]),
        (lambda: client.hash.run(image, timeout=-1), ["timeout"]),
        (lambda: client.hash.compute(image, wait=wrong("yes")), ["wait"]),
        (lambda: client.hash.run(image, delete_job=wrong("yes")), ["delete_job"]),
        (lambda: client.clip_embedding.run(image, numpy=wrong("x")), ["numpy"]),
        # The shared options: a misspelt one, one that belongs to the other form, bad values.
        (
            lambda: client.hash.compute(image, **cast(SubmitOptions, {"priorty": 3})),
            ["unknown option 'priorty'", "did you mean 'priority'"],
        ),
        (
            lambda: client.hash.run(image, **cast(RunOptions, {"wait": True})),
            ["unknown option 'wait'"],
        ),
        (
            lambda: client.hash.compute(image, **cast(SubmitOptions, {"delete_job": True})),
            ["unknown option 'delete_job'"],
        ),
        (lambda: client.hash.compute(image, timeout=5), ["timeout applies only with wait=True"]),
        (
            lambda: client.hash.compute(image, on_complete=cast(OnComplete, "print")),
            ["on_complete", "callable"],
        ),
        (
            lambda: client.hash.run(image, on_progress=cast(OnProgress, 1)),
            ["on_progress", "callable"],
        ),
        (lambda: client.submit("hash", image, priority=12), ["priority", "from 0 to 10"]),
    ]
    for call, expected in cases:
        with pytest.raises(ParameterError) as info:
            await call()
        message = str(info.value)
        assert all(text in message for text in expected), (message, expected)
    assert local_compute.state.jobs == {}


async def test_numpy_required_but_missing_fails_before_upload(
    client: ComputeClient,
    local_compute: LocalComputeService,
    image: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(results_module, "numpy_available", lambda: False)
    with pytest.raises(ParameterError, match="numpy is not installed"):
        await client.dino_embedding.run(image, numpy=True)
    assert local_compute.state.jobs == {}
    result = await client.dino_embedding.run(image, delete_job=True)  # numpy=None: a list
    assert isinstance(result.vector, list) and len(result.vector) == 384


async def test_missing_or_unreadable_files_fail_before_any_request(
    client: ComputeClient,
    local_compute: LocalComputeService,
    tmp_path: Path,
    image: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ParameterError, match="no such file"):
        await client.hash.compute(tmp_path / "missing.jpg")
    with pytest.raises(ParameterError, match="no such file"):
        await client.media_thumbnail.run(tmp_path / "missing.jpg", tmp_path / "t.jpg")
    with pytest.raises(ParameterError, match="not a regular file"):
        await client.exif.extract(tmp_path)

    def unreadable(path: Path) -> object:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(cl_client._transports.http, "_open_binary", unreadable)
    with pytest.raises(ParameterError, match=r"cannot read .*Permission denied"):
        await client.clip_embedding.embed_image(image)
    assert local_compute.state.jobs == {}


async def test_server_errors_become_typed_errors_with_the_servers_detail(
    client: ComputeClient, tmp_path: Path, image: Path
) -> None:
    text = make_text(tmp_path / "notes.txt")
    with pytest.raises(RequestValidationError) as invalid:
        await client.submit("hash", text, {"algorithm": "sha1"})
    assert invalid.value.status_code == 422
    locs = [e.get("loc") for e in invalid.value.errors if isinstance(e, dict)]
    assert ["body", "algorithm"] in locs
    with pytest.raises(ServerError) as failed:
        await client.submit("hls_streaming", text, {"variants": "not json"})
    assert failed.value.status_code == 500 and failed.value.detail == "Internal Server Error"
    with pytest.raises(JobNotFoundError) as missing:
        await client.hash.result("no-such-job")
    assert missing.value.detail == "Job no-such-job not found"
    assert missing.value.job_id == "no-such-job" and missing.value.status_code == 404
    job = await client.media_thumbnail.generate(image, wait=True, timeout=30)
    await client.delete_job(job.job_id)
    with pytest.raises(JobNotFoundError, match="not found") as gone:
        await client.media_thumbnail.result(job, tmp_path / "gone.jpg")
    assert gone.value.job_id == job.job_id
    assert not (tmp_path / "gone.jpg").exists()


@pytest.mark.slow
async def test_existing_download_targets_are_kept_unless_overwrite(
    client: ComputeClient, tmp_path: Path, image: Path
) -> None:
    dest = tmp_path / "thumb.jpg"
    dest.write_bytes(b"keep me")
    job = await client.media_thumbnail.generate(image, width=32, wait=True, timeout=30)
    with pytest.raises(DownloadError, match="already exists"):
        await client.media_thumbnail.result(job, dest)
    assert dest.read_bytes() == b"keep me"
    saved = await client.media_thumbnail.result(job, dest, overwrite=True)
    assert saved.path == dest and dest.read_bytes()[:2] == b"\xff\xd8"

    video = make_video(tmp_path / "clip.mp4", seconds=1, size=(96, 64))
    assert video is not None
    hls = await client.hls_streaming.run(video, tmp_path / "hls", variants=[(64, 150)])
    with pytest.raises(DownloadError, match="already exists"):
        await client.hls_streaming.result(hls.job, tmp_path / "hls")
    again = await client.hls_streaming.result(hls.job, tmp_path / "hls", overwrite=True)
    assert again.files == hls.files

    faces = await client.face_detection.run(make_face_jpeg(tmp_path / "face.jpg", 2))
    assert faces.num_faces == 2
    crops = await client.face_detection.download_crops(faces.job, tmp_path / "crops")
    with pytest.raises(DownloadError, match="already exists"):
        await client.face_detection.download_crops(faces, tmp_path / "crops")
    one = await client.face_detection.download_crop(
        faces.job.job_id, faces.faces[1], crops[1], overwrite=True
    )
    assert one == crops[1]
    no_crop = DetectedFace.model_validate({"bbox": [0, 0, 1, 1], "confidence": 0.9})
    with pytest.raises(ParameterError, match="no crop file"):
        await client.face_detection.download_crop(faces.job, no_crop, tmp_path)
    with pytest.raises(ParameterError, match="invalid job file path"):
        await client.read_job_file(faces.job.job_id, "../../etc/passwd")


@pytest.mark.slow
async def test_unfinished_foreign_and_failed_jobs(
    client: ComputeClient, local_compute: LocalComputeService, image: Path
) -> None:
    local_compute.pause_workers()
    queued = await client.hash.compute(image)
    with pytest.raises(ParameterError, match="still queued"):
        await client.hash.result(queued)
    with pytest.raises(ParameterError, match="is a hash job, not a exif job"):
        await client.exif.result(queued.job_id)
    with pytest.raises(JobTimeoutError) as waited:
        await client.hash.compute(image, wait=True, timeout=0.2)
    assert waited.value.last_status == "queued"
    with pytest.raises(JobTimeoutError) as ran:
        await client.hash.run(image, timeout=0.2, delete_job=True)
    assert ran.value.last_status == "queued"
    with pytest.raises(JobNotFoundError):
        await client.get_job(ran.value.job_id)
    local_compute.resume_workers()
    with anyio.fail_after(10):
        finished = await client.wait(queued.job_id)
    assert (await client.hash.result(finished)).algorithm == "sha512_image"

    _ = local_compute.faults.fail_jobs("Simulated failure", task_type="hash")
    completed: list[JobResponse] = []
    done = anyio.Event()

    def on_complete(job: JobResponse) -> None:
        completed.append(job)
        done.set()

    with pytest.raises(JobFailedError) as waited_failure:  # as client.wait() raises it
        await client.hash.compute(image, wait=True, timeout=30, on_complete=on_complete)
    failed = waited_failure.value.job
    assert failed.status == "error" and failed.error_message == "Simulated failure"
    with anyio.fail_after(10):
        await done.wait()
    assert completed[0].status == "error"
    with pytest.raises(JobFailedError, match="Simulated failure") as error:
        await client.hash.result(failed)
    assert error.value.job.job_id == failed.job_id
    with pytest.raises(JobFailedError) as run_error:
        await client.hash.run(image, timeout=30, delete_job=True)
    with pytest.raises(JobNotFoundError):
        await client.get_job(run_error.value.job.job_id)


class FakeServer:
    """An httpx MockTransport handler: POST creates a job, GET reports it (completed on the
    ``complete_after``-th GET)."""

    def __init__(self, *, complete_after: int = 1, created_body: bytes | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.gets = 0
        self.complete_after = complete_after
        self.created_body = created_body
        self.fail_gets = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.method == "POST":
            if self.created_body is not None:
                return httpx.Response(200, content=self.created_body)
            task = request.url.path.rsplit("/", 1)[-1]
            return httpx.Response(200, json={"job_id": "j1", "status": "queued", "task_type": task})
        if self.fail_gets:
            return httpx.Response(503, json={"detail": "busy"})
        self.gets += 1
        status = "completed" if self.gets >= self.complete_after else "processing"
        body = {"job_id": "j1", "task_type": "ping", "status": status, "priority": 3}
        return httpx.Response(200, json=body)


def fake_client(server: FakeServer) -> ComputeClient:
    http = httpx.AsyncClient(transport=httpx.MockTransport(server))
    return ComputeClient(
        compute_url="http://127.0.0.1:9",
        mqtt_enabled=False,
        check_server=False,
        http_client=http,
        poll_interval=0.01,
        submit_path="/api/jobs/{task_type}",
        job_path="/api/jobs/{job_id}",
    )


async def test_submit_without_a_file_posts_form_fields_to_the_configured_endpoint() -> None:
    server = FakeServer(complete_after=3)
    async with fake_client(server) as client:
        seen: list[str] = []
        job = await client.submit(
            "ping",
            None,
            {"count": 2, "flag": True, "skip": None},
            priority=3,
            wait=True,
            timeout=10,
            on_progress=lambda update: seen.append(update.status),
        )
        assert job.status == "completed" and job.priority == 3
        post = server.requests[0]
        assert post.url.path == "/api/jobs/ping"
        assert parse_qs(post.content.decode()) == {
            "count": ["2"],
            "flag": ["true"],
            "priority": ["3"],
        }
        await wait_until(lambda: "completed" in seen)
        assert seen[0] == "queued"


async def test_a_submission_is_one_request_and_returns_the_job_as_submitted(
    tmp_path: Path,
) -> None:
    server = FakeServer()
    server.fail_gets = True  # a GET would fail: there must be none
    async with fake_client(server) as client:
        job = await client.submit("ping", None, priority=7)
        assert (job.job_id, job.status, job.task_type, job.priority) == ("j1", "queued", "ping", 7)
        hashed = await client.hash.compute(make_text(tmp_path / "a.txt"), algorithm="md5")
        assert hashed.job_id == "j1" and hashed.task_type == "hash" and hashed.status == "queued"
        assert [(r.method, r.url.path) for r in server.requests] == [
            ("POST", "/api/jobs/ping"),
            ("POST", "/api/jobs/hash"),
        ]


async def test_a_malformed_submission_reply_is_a_protocol_error() -> None:
    server = FakeServer(created_body=json.dumps({"nope": 1}).encode())
    async with fake_client(server) as client:
        with pytest.raises(ProtocolError, match="JobCreated"):
            await client.submit("ping", None)


class FakeHlsServer:
    """A server whose HLS job references files oddly: a repeated variant, a segment listed in the
    master itself, a repeated segment, and a segment that does not exist. Deleting jobs fails."""

    FILES: ClassVar[dict[str, bytes]] = {
        "output/adaptive.m3u8": b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n./v.m3u8\ndirect.ts\n",
        "output/v.m3u8": b"#EXTM3U\nseg0.ts\n./seg0.ts\nmissing.ts\n",
        "output/seg0.ts": b"segment",
        "output/direct.ts": b"direct",
    }

    def __init__(self, delete_status: int) -> None:
        self.deletes = 0
        self.delete_status = delete_status

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST":
            return httpx.Response(
                200, json={"job_id": "h1", "status": "queued", "task_type": "hls_streaming"}
            )
        if request.method == "DELETE":
            self.deletes += 1
            return httpx.Response(self.delete_status, json={"detail": "Job h1 not found"})
        if path == "/jobs/h1":
            job = {
                "job_id": "h1",
                "task_type": "hls_streaming",
                "status": "completed",
                "params": {"output_path": "output", "include_original": False},
                "task_output": {"master_playlist": "/srv/cl/jobs/h1/output/adaptive.m3u8"},
            }
            return httpx.Response(200, json=job)
        relative = path.removeprefix("/jobs/h1/files/")
        if relative in self.FILES:
            return httpx.Response(200, content=self.FILES[relative])
        return httpx.Response(404, json={"detail": f"File not found: {relative}"})


@pytest.mark.parametrize("delete_status", [500, 404])
async def test_hls_download_dedupes_and_reports_a_missing_segment_plainly(
    delete_status: int, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = FakeHlsServer(delete_status)
    http = httpx.AsyncClient(transport=httpx.MockTransport(server))
    video = make_text(tmp_path / "video.mp4")
    async with ComputeClient(
        compute_url="http://127.0.0.1:9",
        mqtt_enabled=False,
        check_server=False,
        http_client=http,
        poll_interval=0.01,
    ) as client:
        with pytest.raises(NotFoundError, match=r"missing\.ts"):
            await client.hls_streaming.run(video, tmp_path / "hls", delete_job=True)
    assert server.deletes == 1
    assert ("could not delete job h1" in caplog.text) == (delete_status == 500)
    assert (tmp_path / "hls" / "v.m3u8").is_file()


async def test_one_upload_field_mapping_and_images_without_faces(
    client: ComputeClient, image: Path, tmp_path: Path
) -> None:
    job = await client.submit("hash", image, {"algorithm": "md5"}, wait=True)
    assert job.status == "completed" and job.params.get("input_path") == "input/photo.jpg"
    faces = await client.face_detection.run(image)  # a gradient: no skin tones, no faces
    assert faces.num_faces == 0 and faces.faces == []
    assert await client.face_detection.download_crops(faces, tmp_path / "none") == []
    assert not (tmp_path / "none").exists()


@pytest.mark.slow
async def test_targets_check_worker_capabilities_and_delete_their_jobs(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    local_compute_factory: Callable[..., LocalComputeService],
) -> None:
    def hash_only() -> LocalComputeService:
        return local_compute_factory(capabilities=["hash"])

    async with open_target("local", request.config, tmp_path, hash_only) as target:
        with pytest.raises(WorkerUnavailableError) as info:
            await target.require("hash", "exif", timeout=0.3)
        assert info.value.missing == ["exif"] and "hash" in info.value.available
        assert "no worker offers exif" in str(info.value)
        await target.require("hash")
        job = await target.client.hash.compute(target.text(), wait=True, timeout=30)
        assert target.client.created == [job.job_id]
        await target.client.delete_created()
        with pytest.raises(JobNotFoundError):
            await target.client.get_job(job.job_id)
