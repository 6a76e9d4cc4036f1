"""A batch of images through ``cl-client`` against the same work through the Python API.

::

    uv run python benchmarks/cli_batch.py                  # 200 images, thumbnails and hashes
    uv run python benchmarks/cli_batch.py --images 500 --concurrency 16 --backend trio

A local compute service (embedded broker, ``--workers`` workers) runs in this process; the CLI
(``python -m cl_client ... -o DIR``) and an API script (``run_parallel`` over
``client.media_thumbnail.run(..., delete_job=True)`` and ``client.hash.run``) each run as their
own process against it, so both pay their imports and share the same service. Printed: wall
time per process (start to exit) and images per second, for each plugin.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import cast

import anyio

ROOT = Path(__file__).resolve().parent.parent

API_SCRIPT = """
import sys, time, anyio
from pathlib import Path
from cl_client import ComputeClient
from cl_client.plugins import run_parallel

compute_url, mqtt_url, plugin, src, out, limit, backend = sys.argv[1:8]
paths = sorted(Path(src).iterdir())

async def main():
    async with ComputeClient(compute_url=compute_url, mqtt_url=mqtt_url) as client:
        if plugin == "media_thumbnail":
            async def one(path):
                return await client.media_thumbnail.run(
                    path, Path(out) / f"{path.stem}.thumb.jpg", width=128, delete_job=True
                )
        else:
            async def one(path):
                return await client.hash.run(path, delete_job=True)
        failed = 0
        async with run_parallel(one, paths, limit=int(limit)) as results:
            async for outcome in results:
                failed += not outcome.ok
        if failed:
            raise SystemExit(f"{failed} failed")

anyio.run(main, backend=backend)
"""


def make_images(directory: Path, count: int) -> None:
    from PIL import Image, ImageDraw

    directory.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        img = Image.new("RGB", (320, 240), (i % 256, 80, 160))
        ImageDraw.Draw(img).ellipse((40 + i % 50, 30, 260, 210), fill=(240, 200, 40))
        img.save(directory / f"img_{i:04d}.jpg", quality=85)


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:6])}... failed ({done.returncode}):\n{done.stderr}")
    return seconds


async def run(count: int, limit: int, backend: str, workers: int) -> None:
    from cl_client.testing import LocalComputeService

    with tempfile.TemporaryDirectory(prefix="cl-batch-bench-") as tmp:
        src = Path(tmp) / "images"
        make_images(src, count)
        async with LocalComputeService(workers=workers) as svc:
            print(
                f"{count} images (320x240 JPEG), concurrency {limit}, {workers} local workers, "
                f"backend {backend}, {os.cpu_count()} CPUs"
            )
            for plugin, verb, extra in (
                ("media_thumbnail", "generate", ["--width", "128"]),
                ("hash", "compute", []),
            ):
                out_cli, out_api = Path(tmp) / "cli", Path(tmp) / "api"
                for out in (out_cli, out_api):
                    shutil.rmtree(out, ignore_errors=True)
                    out.mkdir()
                cli = [sys.executable, "-m", "cl_client", "--compute-url", svc.compute_url]
                cli += ["--mqtt-url", svc.mqtt_url, "--backend", backend, "-q", "--json"]
                cli += [plugin, verb, str(src), "-j", str(limit), *extra]
                if plugin == "media_thumbnail":
                    cli += ["-o", str(out_cli)]
                api = [sys.executable, "-c", API_SCRIPT, svc.compute_url, svc.mqtt_url, plugin]
                api += [str(src), str(out_api), str(limit), backend]
                t_cli = await anyio.to_thread.run_sync(timed, cli)
                t_api = await anyio.to_thread.run_sync(timed, api)
                if plugin == "media_thumbnail":
                    made = (len(list(out_cli.iterdir())), len(list(out_api.iterdir())))
                    assert made == (count, count), made
                print(
                    f"  {plugin:<16} cl-client {t_cli:6.2f} s ({count / t_cli:6.1f} images/s)   "
                    f"Python API {t_api:6.2f} s ({count / t_api:6.1f} images/s)   "
                    f"CLI/API {t_cli / t_api:.2f}"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    args = parser.parse_args()
    count = cast(int, args.images)
    limit = cast(int, args.concurrency)
    backend = cast(str, args.backend)
    workers = cast(int, args.workers)
    anyio.run(run, count, limit, backend, workers)


if __name__ == "__main__":
    main()
