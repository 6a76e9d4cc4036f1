"""Callbacks instead of iterators: ``on_progress`` and ``on_complete``, sync or async.

::

    uv run python examples/callbacks.py                     # no server needed
    uv run python examples/callbacks.py photos/*.jpg
    COMPUTE_URL=http://host:8002 MQTT_URL=mqtt://host:1883 \
        uv run python examples/callbacks.py photos/*.jpg

Two ways to register callbacks, both before anything can be missed:

* with the submission: ``client.<plugin>.<method>(..., on_progress=, on_complete=)``;
* for a job you already have: ``client.subscribe_job_updates(job_id, on_progress=, on_complete=)``.

``on_progress`` gets every update (the terminal one included); ``on_complete`` gets the final
JobResponse once, with its output or its error. Callbacks run in their own short-lived tasks in
the client's task group, so a slow one only delays itself. Here a plain function prints the
progress and an async function fetches each typed result; the script waits for all of them with
an ``anyio.Event``.

With ``COMPUTE_URL`` set it uses that CL Server (``MQTT_URL`` for its broker). Without it, it
starts the local compute service on 127.0.0.1 and makes a few images.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path

import anyio

from cl_client import ClientSettings, ComputeClient, JobResponse, JobUpdate


def make_images(directory: Path, count: int) -> list[Path]:
    """A few small generated images (Pillow comes with cl-client[local])."""
    from PIL import Image

    paths: list[Path] = []
    for i in range(count):
        path = directory / f"generated_{i + 1}.jpg"
        Image.new("RGB", (640, 480), (200, 60 * i, 90)).save(path, format="JPEG")
        paths.append(path)
    return paths


class Tracker:
    """Counts the jobs still running; ``finished`` is set when the last one completes."""

    def __init__(self, client: ComputeClient, expected: int) -> None:
        self.client = client
        self.remaining = expected
        self.finished = anyio.Event()
        self.lines: list[str] = []

    def on_progress(self, update: JobUpdate) -> None:  # a plain function is fine
        print(f"  {update.job_id[:8]} {update.status} ({update.progress}%)")

    async def on_complete(self, job: JobResponse) -> None:  # so is an async one
        try:
            if job.is_failed:
                self.lines.append(f"{job.task_type} {job.job_id[:8]}: failed: {job.error_message}")
            elif job.task_type == "hash":
                digest = await self.client.hash.result(job)
                self.lines.append(f"hash {job.job_id[:8]}: {digest.algorithm} {digest.hash_value}")
            else:
                exif = await self.client.exif.result(job)
                size = f"{exif.metadata.image_width}x{exif.metadata.image_height}"
                self.lines.append(f"exif {job.job_id[:8]}: {size}")
            await self.client.delete_job(job.job_id)
        finally:  # an exception in a callback is logged by the client, and counted here
            self.remaining -= 1
            if self.remaining == 0:
                self.finished.set()


async def amain(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("images", nargs="*", type=Path, help="images (default: generated)")
    args = parser.parse_args(argv)
    images: list[Path] = args.images  # pyright: ignore[reportAny]

    async with AsyncExitStack() as stack:
        work_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cl-callbacks-")))
        if os.environ.get("COMPUTE_URL"):
            settings = ClientSettings.from_env()
            where = f"the CL Server at {settings.compute_url}"
        else:
            from cl_client.testing import LocalComputeService

            service = await stack.enter_async_context(LocalComputeService())
            settings = service.settings()
            where = f"a local compute service at {service.compute_url}"
        if not images:
            images = make_images(work_dir, 2)

        client = await stack.enter_async_context(ComputeClient(settings))
        await client.wait_for_workers(["hash", "exif"], timeout=30)
        print(f"Hashing and reading EXIF of {len(images)} image(s) on {where}")
        tracker = Tracker(client, expected=2 * len(images))

        for image in images:
            # 1. callbacks registered with the submission
            await client.hash.compute(
                image,
                algorithm="md5",
                on_progress=tracker.on_progress,
                on_complete=tracker.on_complete,
            )
            # 2. a subscription for a job submitted without callbacks
            job = await client.exif.extract(image, tags=["ImageWidth", "ImageHeight"])
            client.subscribe_job_updates(
                job.job_id, on_progress=tracker.on_progress, on_complete=tracker.on_complete
            )

        with anyio.fail_after(120):
            await tracker.finished.wait()
        for line in sorted(tracker.lines):
            print(line)
        failed = sum("failed" in line for line in tracker.lines)
        print(f"Done: {len(tracker.lines) - failed} succeeded, {failed} failed")
        return 1 if failed else 0


def main() -> None:
    backend = os.environ.get("CL_CLIENT_BACKEND", "asyncio")
    sys.exit(anyio.run(amain, backend=backend))


if __name__ == "__main__":
    main()
