"""Workflow scripts in the parallel pattern: every callback registered, every job submitted at
once, every completion awaited, every typed result checked, every job deleted.

Plus the runnable examples (``examples/*.py``) against the local compute service.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import pytest
from PIL import Image

from cl_client import JobNotFoundError, JobResponse, JobUpdate
from cl_client.plugins import HlsVariant, JobCompletions, gather_parallel
from tests.plugin_target import PluginTarget

ROOT = Path(__file__).resolve().parents[2]


class Pipeline:
    """The callbacks of a workflow: progress per job, and completions to await."""

    def __init__(self) -> None:
        self.completions = JobCompletions()
        self.progress: defaultdict[str, list[str]] = defaultdict(list)

    def on_progress(self, update: JobUpdate) -> None:
        self.progress[update.job_id].append(update.status)

    async def submit_all(
        self, submissions: list[Callable[[], Awaitable[JobResponse]]]
    ) -> list[JobResponse]:
        """Submit everything at once (in parallel); every job is expected."""

        async def submit(make: Callable[[], Awaitable[JobResponse]]) -> JobResponse:
            return await make()

        outcomes = await gather_parallel(submit, submissions, limit=len(submissions))
        jobs = [outcome.unwrap() for outcome in outcomes]
        for job in jobs:
            self.completions.expect(job)
        return jobs

    async def wait_all(self) -> dict[str, JobResponse]:
        with anyio.fail_after(120):
            return await self.completions.wait_all()


async def delete_all(target: PluginTarget, jobs: list[JobResponse]) -> None:
    for job in jobs:
        await target.client.delete_job(job.job_id)
    for job in jobs:
        with pytest.raises(JobNotFoundError):
            await target.client.get_job(job.job_id)


@pytest.mark.slow
async def test_image_pipeline(target: PluginTarget, tmp_path: Path) -> None:
    """exif, thumbnail, clip embedding and hash for three images, all at once."""
    await target.require("exif", "media_thumbnail", "clip_embedding", "hash")
    client = target.client
    flow = Pipeline()
    images = [target.image(), target.png(), target.face()]
    p, c = flow.on_progress, flow.completions.on_complete  # every job gets both callbacks
    submissions: list[Callable[[], Awaitable[JobResponse]]] = []
    for image in images:
        submissions += [
            lambda i=image: client.exif.extract(
                image=i, tags=["Make"], on_progress=p, on_complete=c
            ),
            lambda i=image: client.media_thumbnail.generate(
                media=i, width=96, height=96, on_progress=p, on_complete=c
            ),
            lambda i=image: client.clip_embedding.embed_image(
                image=i, on_progress=p, on_complete=c
            ),
            lambda i=image: client.hash.compute(
                image=i, algorithm="md5", on_progress=p, on_complete=c
            ),
        ]
    jobs = await flow.submit_all(submissions)
    assert len({job.job_id for job in jobs}) == 12

    finished = await flow.wait_all()
    assert list(finished) == [job.job_id for job in jobs]
    assert all(job.status == "completed" for job in finished.values())
    for job in jobs:
        assert flow.progress[job.job_id][-1] == "completed"

    for index, image in enumerate(images):
        exif, thumb, clip, digest = (finished[j.job_id] for j in jobs[4 * index : 4 * index + 4])
        metadata = (await client.exif.result(exif)).metadata
        assert metadata.raw_metadata.get("SourceFile") is not None
        thumbnail = await client.media_thumbnail.result(thumb, tmp_path / f"{index}.jpg")
        with Image.open(thumbnail.path) as small, Image.open(image) as original:
            assert max(small.size) == 96
            assert abs(small.width / small.height - original.width / original.height) < 0.1
        embedding = await client.clip_embedding.result(clip)
        assert embedding.dim == 512 and len(embedding.tolist()) == 512
        hashed = await client.hash.result(digest)
        assert hashed.hash_value == hashlib.md5(image.read_bytes()).hexdigest()

    await delete_all(target, jobs)


@pytest.mark.slow
async def test_video_pipeline(target: PluginTarget, tmp_path: Path) -> None:
    """HLS and a thumbnail of one video, at once."""
    await target.require("hls_streaming", "media_thumbnail")
    client = target.client
    flow = Pipeline()
    video = target.video()
    variants = [HlsVariant(360, 800)] if target.is_real else [HlsVariant(96, 200)]
    p, c = flow.on_progress, flow.completions.on_complete
    submissions: list[Callable[[], Awaitable[JobResponse]]] = [
        lambda: client.hls_streaming.generate_manifest(
            video=video, variants=variants, on_progress=p, on_complete=c
        ),
        lambda: client.media_thumbnail.generate(
            media=video, width=128, height=128, on_progress=p, on_complete=c
        ),
    ]
    jobs = await flow.submit_all(submissions)
    finished = await flow.wait_all()
    hls_job, thumb_job = (finished[job.job_id] for job in jobs)

    bundle = await client.hls_streaming.result(hls_job, tmp_path / "hls")
    listed = [
        line.strip()
        for line in bundle.master_playlist.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert listed and all((bundle.directory / name).is_file() for name in listed)
    assert bundle.segments and all(segment.is_file() for segment in bundle.segments)

    if target.is_real and thumb_job.is_failed:
        # The real server cannot thumbnail videos (docs/plugins.md#media_thumbnail).
        assert "Input file not found" in (thumb_job.error_message or "")
    else:
        thumbnail = await client.media_thumbnail.result(thumb_job, tmp_path / "poster.jpg")
        assert thumbnail.media_type == "video"
        with Image.open(thumbnail.path) as img:
            assert img.format == "JPEG" and max(img.size) <= 128

    await delete_all(target, jobs)


EXAMPLES = (
    [
        pytest.param(
            "image_workflow.py",
            backend,
            ["Done: 4 succeeded, 0 failed", "clip 512-d (norm 1.000)"],
            id=f"image_workflow-{backend}",
        )
        for backend in ("asyncio", "trio")
    ]
    + [
        pytest.param(
            "video_workflow.py",
            backend,
            ["HLS: adaptive.m3u8 with 2 variant playlist(s)", "Thumbnail: poster.jpg"],
            id=f"video_workflow-{backend}",
        )
        for backend in ("asyncio", "trio")
    ]
    + [
        pytest.param(
            "callbacks.py", backend, ["Done: 4 succeeded, 0 failed"], id=f"callbacks-{backend}"
        )
        for backend in ("asyncio", "trio")
    ]
    + [
        pytest.param(
            "trio_watch.py",
            "trio",
            ["failed: simulated failure", "Done: 2 completed, 1 failed, every watch ended"],
            id="trio_watch-trio",
        )
    ]
)


@pytest.mark.slow
@pytest.mark.parametrize(("script", "backend", "expected"), EXAMPLES)
def test_examples_run_on_a_fresh_machine(
    script: str, backend: str, expected: list[str], tmp_path: Path
) -> None:
    """``uv run python examples/<script>`` with no server: each starts its own local service."""
    env = {k: v for k, v in os.environ.items() if k not in ("COMPUTE_URL", "MQTT_URL")}
    env["CL_CLIENT_BACKEND"] = backend
    args = [sys.executable, str(ROOT / "examples" / script)]
    out = tmp_path / "out"
    if script == "image_workflow.py":
        args += ["--out", str(out)]
    result = subprocess.run(
        args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for line in expected:
        assert line in result.stdout, result.stdout
    if script == "image_workflow.py":
        assert len(list(out.glob("*_thumb.jpg"))) == 4


def test_every_example_is_run_by_the_test_above() -> None:
    scripts = {str(param.values[0]) for param in EXAMPLES}
    assert scripts == {path.name for path in (ROOT / "examples").glob("*.py")}
