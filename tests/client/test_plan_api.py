"""The original plan's own code, unchanged in shape, on asyncio and trio, against the local
service (and a real server when one is given: see ``tests/plugins_real_server.py``).

* the parallel image workflow: four jobs (EXIF, thumbnail, CLIP embedding, hash), each with its
  ``on_complete`` callback registered with the submission, all awaited together;
* ``image_conversion.convert(image=..., output_format=..., quality=..., wait=True)`` and
  ``clip_embedding.embed_image(image=..., wait=True)`` returning the final job;
* subscription ids: several callbacks per job, each ``unsubscribe``-able by its own id;
* ``JobNotFoundError`` for an unknown job id;
* the plan's error names: ``ComputeClientError`` at the root;
* no extra request: ``run()`` takes three (POST, the final GET, the result file).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anyio
import httpx
import pytest

from cl_client import (
    ClClientError,
    ComputeClient,
    ComputeClientError,
    JobNotFoundError,
    JobResponse,
    JobUpdate,
    NotFoundError,
)
from cl_client.testing import LocalComputeService
from tests.media import make_jpeg
from tests.plugin_target import PluginTarget

TIMEOUT = 60.0


@pytest.mark.slow
async def test_plan_parallel_image_workflow(target: PluginTarget) -> None:
    """The plan's ``test_complete_image_analysis``: register every callback with its
    submission, submit everything, wait for every callback, check, clean up."""
    await target.require("exif", "media_thumbnail", "clip_embedding", "hash")
    client = target.client
    image = target.exif_image()
    completed_jobs: dict[str, JobResponse] = {}
    completion_events = {name: anyio.Event() for name in ("exif", "thumbnail", "clip", "hash")}

    def make_on_complete(task_name: str) -> Callable[[JobResponse], None]:
        def on_complete(job: JobResponse) -> None:
            completed_jobs[task_name] = job
            completion_events[task_name].set()

        return on_complete

    exif_job = await client.exif.extract(image=image, on_complete=make_on_complete("exif"))
    thumb_job = await client.media_thumbnail.generate(
        media=image, width=256, height=256, on_complete=make_on_complete("thumbnail")
    )
    clip_job = await client.clip_embedding.embed_image(
        image=image, on_complete=make_on_complete("clip")
    )
    hash_job = await client.hash.compute(image=image, on_complete=make_on_complete("hash"))
    all_jobs = [exif_job, thumb_job, clip_job, hash_job]
    # The submissions return the jobs as submitted, at once: nothing has waited yet.
    assert all(job.status in ("queued", "processing", "completed") for job in all_jobs)
    assert [job.task_type for job in all_jobs] == [
        "exif",
        "media_thumbnail",
        "clip_embedding",
        "hash",
    ]

    with anyio.fail_after(TIMEOUT):
        for event in completion_events.values():
            await event.wait()

    assert all(job.status == "completed" for job in completed_jobs.values()), {
        name: job.error_message for name, job in completed_jobs.items()
    }
    assert {name: job.job_id for name, job in completed_jobs.items()} == {
        "exif": exif_job.job_id,
        "thumbnail": thumb_job.job_id,
        "clip": clip_job.job_id,
        "hash": hash_job.job_id,
    }
    # Every on_complete job is the final record, with its output.
    assert completed_jobs["exif"].task_output
    assert completed_jobs["thumbnail"].task_output == {"media_type": "image"}
    assert (await client.clip_embedding.result(completed_jobs["clip"])).dim == 512
    assert (await client.hash.result(completed_jobs["hash"])).algorithm == "sha512_image"

    for job in all_jobs:
        await client.delete_job(job.job_id)
    for job in all_jobs:
        with pytest.raises(JobNotFoundError):
            await client.get_job(job.job_id)


async def test_plan_convert_and_embed_wait_for_the_final_job(
    target: PluginTarget, tmp_path: Path
) -> None:
    await target.require("image_conversion", "clip_embedding")
    client = target.client
    converted = await client.image_conversion.convert(
        image=target.png(), output_format="jpg", quality=90, wait=True
    )
    assert converted.status == "completed" and converted.task_type == "image_conversion"
    assert converted.params.get("format") == "jpg" and converted.params.get("quality") == 90
    saved = await client.image_conversion.result(converted, tmp_path / "out.jpg")
    assert saved.path.read_bytes()[:2] == b"\xff\xd8"

    embedded = await client.clip_embedding.embed_image(
        image=target.image(), wait=True, timeout=TIMEOUT
    )
    assert embedded.status == "completed" and embedded.task_type == "clip_embedding"
    embedding = await client.clip_embedding.result(embedded, numpy=False)
    assert embedding.dim == 512 and len(embedding.tolist()) == 512


async def test_plan_subscription_ids(target: PluginTarget) -> None:
    """``subscribe_job_updates`` returns a unique id per subscription; ``unsubscribe(id)``
    stops only that one; several callbacks per job."""
    await target.require("hash")
    client = target.client
    job = await client.hash.compute(image=target.text(), algorithm="md5")
    first: list[JobUpdate] = []
    second: list[JobUpdate] = []
    dropped: list[JobUpdate] = []
    first_done, done = anyio.Event(), anyio.Event()

    def on_first(update: JobUpdate) -> None:
        first.append(update)
        if update.is_terminal:
            first_done.set()

    def on_complete(final: JobResponse) -> None:
        done.set()

    first_id = client.subscribe_job_updates(job.job_id, on_progress=on_first)
    second_id = client.subscribe_job_updates(
        job.job_id, on_progress=second.append, on_complete=on_complete
    )
    third_id = client.subscribe_job_updates(job.job_id, on_progress=dropped.append)
    assert len({first_id, second_id, third_id}) == 3
    assert client.unsubscribe(third_id) is True
    assert client.unsubscribe(third_id) is False  # already gone
    assert client.unsubscribe("no-such-subscription") is False
    with anyio.fail_after(TIMEOUT):
        await done.wait()
        await first_done.wait()
    assert [u.status for u in first][-1] == "completed"
    assert [u.status for u in second] == [u.status for u in first]
    assert not any(u.is_terminal for u in dropped)


async def test_plan_job_not_found_for_an_unknown_id(target: PluginTarget) -> None:
    client = target.client
    unknown = "00000000-0000-0000-0000-000000000000"
    with pytest.raises(JobNotFoundError) as info:
        await client.get_job(unknown)
    assert info.value.job_id == unknown and info.value.status_code == 404
    assert isinstance(info.value, NotFoundError)
    assert isinstance(info.value, ComputeClientError)
    with pytest.raises(JobNotFoundError):
        await client.delete_job(unknown)
    with anyio.fail_after(TIMEOUT), pytest.raises(JobNotFoundError):
        await client.wait(unknown)
    with pytest.raises(JobNotFoundError):
        await client.hash.result(unknown)
    assert ComputeClientError is ClClientError


async def test_run_takes_three_requests_and_a_submission_one(
    local_compute: LocalComputeService, tmp_path: Path
) -> None:
    """POST, the final GET, the result file: no GET right after the POST."""
    requests: list[str] = []

    async def record(request: httpx.Request) -> None:
        requests.append(f"{request.method} {request.url.path}")

    image = make_jpeg(tmp_path / "photo.jpg", (64, 48))
    settings = local_compute.settings(reconcile_interval=60)
    async with (
        httpx.AsyncClient(event_hooks={"request": [record]}) as http,
        ComputeClient(settings, http_client=http, check_server=False) as client,
    ):
        digest = await client.hash.run(image, algorithm="md5")
        job_id = digest.job.job_id
        assert requests == [
            "POST /jobs/hash",
            f"GET /jobs/{job_id}",
            f"GET /jobs/{job_id}/files/output/hash.json",
        ]
        requests.clear()
        job = await client.exif.extract(image=image)
        assert requests == ["POST /jobs/exif"] and job.status == "queued"
        requests.clear()
        final = await client.exif.extract(image=image, wait=True, timeout=TIMEOUT)
        assert requests == ["POST /jobs/exif", f"GET /jobs/{final.job_id}"]
        assert final.status == "completed" and final.task_output
