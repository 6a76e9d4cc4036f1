"""A parallel image workflow: EXIF, a thumbnail, a CLIP embedding and a hash for every image.

::

    uv run python examples/image_workflow.py                   # no server needed
    uv run python examples/image_workflow.py photos/*.jpg --limit 4 --out thumbs/
    COMPUTE_URL=http://host:8002 MQTT_URL=mqtt://host:1883 \
        uv run python examples/image_workflow.py photos/*.jpg

With ``COMPUTE_URL`` set it uses that CL Server (``MQTT_URL`` for its broker). Without it, it starts
the local compute service from ``cl_client.testing`` on 127.0.0.1 and, if no images were given,
generates a few. For every image the four jobs are submitted at once with their ``on_complete``
callbacks registered, all completions are awaited, the typed results are fetched and the jobs are
deleted; several images are processed in parallel, and a failure is reported for its image only.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import anyio

from cl_client import ClientSettings, ComputeClient
from cl_client.plugins import JobCompletions, gather_parallel

CAPABILITIES = ("exif", "media_thumbnail", "clip_embedding", "hash")


@dataclass(frozen=True)
class ImageReport:
    image: Path
    camera: str
    thumbnail: Path
    embedding_dim: int
    embedding_norm: float
    md5: str


async def process(client: ComputeClient, image: Path, out_dir: Path) -> ImageReport:
    """Submit the four jobs for one image, wait for all of them, fetch the results, clean up."""
    done = JobCompletions()
    exif = await client.exif.extract(
        image=image, tags=["Make", "Model"], on_complete=done.on_complete
    )
    thumb = await client.media_thumbnail.generate(
        media=image, width=256, height=256, on_complete=done.on_complete
    )
    clip = await client.clip_embedding.embed_image(image=image, on_complete=done.on_complete)
    digest = await client.hash.compute(image=image, algorithm="md5", on_complete=done.on_complete)
    jobs = [exif, thumb, clip, digest]
    try:
        for job in jobs:
            done.expect(job)
        with anyio.fail_after(120):
            await done.wait_all(raise_on_error=True)
        metadata = (await client.exif.result(exif)).metadata
        thumbnail = await client.media_thumbnail.result(
            thumb, out_dir / f"{image.stem}_thumb.jpg", overwrite=True
        )
        embedding = await client.clip_embedding.result(clip, numpy=False)
        hashed = await client.hash.result(digest)
    finally:
        with anyio.CancelScope(shield=True):
            for job in jobs:
                await client.delete_job(job.job_id)
    camera = " ".join(part for part in (metadata.make, metadata.model) if part) or "-"
    norm = math.sqrt(math.fsum(v * v for v in embedding.tolist()))
    return ImageReport(image, camera, thumbnail.path, embedding.dim, norm, hashed.hash_value)


def make_images(directory: Path, count: int) -> list[Path]:
    """A few small generated images (Pillow comes with cl-client[local])."""
    from PIL import Image, ImageDraw

    paths: list[Path] = []
    for i in range(count):
        img = Image.new("RGB", (640, 360), (30 + 50 * i, 90, 160))
        ImageDraw.Draw(img).ellipse((100 + 40 * i, 60, 400 + 40 * i, 300), fill=(240, 200, 40))
        exif = Image.Exif()
        exif[0x010F] = "cl-client"  # Make
        exif[0x0110] = f"Example {i + 1}"  # Model
        path = directory / f"generated_{i + 1}.jpg"
        img.save(path, format="JPEG", quality=90, exif=exif)
        paths.append(path)
    return paths


async def amain(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("images", nargs="*", type=Path, help="images (default: generated)")
    parser.add_argument("--out", type=Path, default=None, help="where thumbnails go")
    parser.add_argument("--limit", type=int, default=3, help="images processed at once")
    args = parser.parse_args(argv)
    images: list[Path] = args.images  # pyright: ignore[reportAny]
    limit: int = args.limit  # pyright: ignore[reportAny]
    out_arg: Path | None = args.out  # pyright: ignore[reportAny]

    async with AsyncExitStack() as stack:
        work_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cl-workflow-")))
        if os.environ.get("COMPUTE_URL"):
            settings = ClientSettings.from_env()
            where = f"the CL Server at {settings.compute_url}"
        else:
            from cl_client.testing import LocalComputeService

            service = await stack.enter_async_context(LocalComputeService())
            settings = service.settings()
            where = f"a local compute service at {service.compute_url}"
        if not images:
            images = make_images(work_dir, 4)
        out_dir = out_arg if out_arg is not None else work_dir / "thumbnails"
        out_dir.mkdir(parents=True, exist_ok=True)

        client = await stack.enter_async_context(ComputeClient(settings))
        await client.wait_for_workers(CAPABILITIES, timeout=30)
        print(f"Processing {len(images)} image(s) on {where}, {limit} at a time")

        async def one(image: Path) -> ImageReport:
            return await process(client, image, out_dir)

        outcomes = await gather_parallel(one, images, limit=limit)

        failures = 0
        for outcome in outcomes:
            if outcome.value is not None:
                report = outcome.value
                print(
                    f"  {report.image.name}: camera {report.camera}; thumbnail "
                    f"{report.thumbnail.name}; clip {report.embedding_dim}-d "
                    f"(norm {report.embedding_norm:.3f}); md5 {report.md5}"
                )
            else:
                failures += 1
                print(f"  {outcome.item.name}: FAILED: {outcome.error}")
        kept = f"thumbnails in {out_dir}" if out_arg is not None else "use --out to keep thumbnails"
        print(f"Done: {len(outcomes) - failures} succeeded, {failures} failed ({kept})")
        return 1 if failures else 0


def main() -> None:
    backend = os.environ.get("CL_CLIENT_BACKEND", "asyncio")
    sys.exit(anyio.run(amain, backend=backend))


if __name__ == "__main__":
    main()
