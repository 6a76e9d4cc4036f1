"""A trio application: submit a batch of jobs and watch each one with ``async for``.

::

    uv run python examples/trio_watch.py                    # no server needed
    uv run python examples/trio_watch.py photos/*.jpg
    COMPUTE_URL=http://host:8002 MQTT_URL=mqtt://host:1883 \
        uv run python examples/trio_watch.py photos/*.jpg

Plain trio: ``trio.run``, a nursery with one task per job, ``trio.fail_after`` for the deadline.
cl-client is written on anyio, so it runs inside trio as it is. Every job is submitted, then each
task iterates ``client.watch(job_id)``, which yields the job's states in order and ends after
the terminal one, and fetches the final job over HTTP.

With ``COMPUTE_URL`` set it uses that CL Server (``MQTT_URL`` for its broker). Without it, it
starts the local compute service on 127.0.0.1, makes a few images, and makes the last job fail
the way the real server fails jobs: status ``error`` and no MQTT event at all. Its watch ends
anyway, because the client checks unfinished jobs over HTTP (every second here,
``reconcile_interval``; 5 s by default).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path

import trio

from cl_client import ClientSettings, ComputeClient, JobResponse


def make_images(directory: Path, count: int) -> list[Path]:
    """A few small generated images (Pillow comes with cl-client[local])."""
    from PIL import Image

    paths: list[Path] = []
    for i in range(count):
        path = directory / f"generated_{i + 1}.png"
        Image.new("RGB", (320, 200), (40 * i, 120, 200 - 30 * i)).save(path)
        paths.append(path)
    return paths


async def follow(client: ComputeClient, name: str, job_id: str, finals: list[JobResponse]) -> None:
    """Print every state of one job, then fetch the final job."""
    async for update in client.watch(job_id):
        print(f"  {name}: {update.status} ({update.progress}%, via {update.source})")
    finals.append(await client.get_job(job_id))


async def amain(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("images", nargs="*", type=Path, help="images (default: generated)")
    args = parser.parse_args(argv)
    images: list[Path] = args.images  # pyright: ignore[reportAny]

    async with AsyncExitStack() as stack:
        work_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cl-trio-")))
        if os.environ.get("COMPUTE_URL"):
            settings = ClientSettings.from_env()
            where = f"the CL Server at {settings.compute_url}"
        else:
            from cl_client.testing import LocalComputeService

            service = await stack.enter_async_context(LocalComputeService())
            settings = service.settings(reconcile_interval=1.0)
            where = f"a local compute service at {service.compute_url}"
            if not images:
                images = make_images(work_dir, 3)
            # The job of the last file fails silently, as jobs fail on the real server.
            last_input = f"input/{images[-1].name}"
            service.faults.fail_jobs(
                "simulated failure", where=lambda job: job.params["input_path"] == last_input
            )

        client = await stack.enter_async_context(ComputeClient(settings))
        await client.wait_for_workers(["hash"], timeout=30)
        print(f"Hashing {len(images)} file(s) on {where} under trio {trio.__version__}")

        finals: list[JobResponse] = []
        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                for image in images:
                    created = await client.hash.compute(image, algorithm="md5")
                    nursery.start_soon(follow, client, image.name, created.job_id, finals)

        for job in finals:
            if job.is_failed:
                print(f"{job.job_id[:8]}: failed: {job.error_message}")
            else:
                digest = await client.hash.result(job)
                print(f"{job.job_id[:8]}: md5 {digest.hash_value}")
            await client.delete_job(job.job_id)
        failed = sum(job.is_failed for job in finals)
        print(f"Done: {len(finals) - failed} completed, {failed} failed, every watch ended")
        return 0 if len(finals) == len(images) else 1


def main() -> None:
    sys.exit(trio.run(amain))


if __name__ == "__main__":
    main()
