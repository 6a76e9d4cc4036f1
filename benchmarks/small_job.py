"""One small job end to end: the client's CPU time and HTTP requests per job.

The local compute service runs in a separate process (so its CPU is not counted) behind
mosquitto, with the in-process worker hashing a small PNG. For each way of running a job, after
a few warm-up jobs, the client process's CPU time (``time.process_time``) and the HTTP requests
it sent (counted by an httpx event hook) are measured per job:

* ``submit + wait + result``: ``client.submit()``, ``client.wait()``, ``client.read_job_file()``;
* ``plugin.run()``: ``client.hash.run(path)``, the one-call form.

Run: ``uv run python benchmarks/small_job.py [--jobs 50] [--backend asyncio|trio]``
(needs mosquitto). Targets (issue 13): ``run()`` at most 8 ms of client CPU and 3 requests.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import cast

import anyio
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.mosquitto import Mosquitto  # noqa: E402

from cl_client import ComputeClient  # noqa: E402

WARM_UP = 5


def small_png(directory: Path) -> Path:
    from PIL import Image

    path = directory / "small.png"
    Image.new("RGB", (16, 16), (200, 30, 90)).save(path)
    return path


class Counter:
    def __init__(self) -> None:
        self.requests = 0

    async def __call__(self, request: httpx.Request) -> None:
        self.requests += 1


async def measure(
    compute_url: str, mqtt_url: str, image: Path, jobs: int
) -> dict[str, tuple[list[float], list[int]]]:
    counter = Counter()
    results: dict[str, tuple[list[float], list[int]]] = {}
    async with (
        httpx.AsyncClient(event_hooks={"request": [counter]}) as http,
        ComputeClient(compute_url=compute_url, mqtt_url=mqtt_url, http_client=http) as client,
    ):
        await client.wait_for_workers(["hash"])

        async def submit_wait_result() -> None:
            created = await client.submit("hash", image, {"algorithm": "md5"})
            await client.wait(created.job_id)
            await client.read_job_file(created.job_id, "output/hash.json")

        async def plugin_run() -> None:
            await client.hash.run(image, algorithm="md5")

        ways: dict[str, Callable[[], Awaitable[None]]] = {
            "submit + wait + result": submit_wait_result,
            "plugin.run()": plugin_run,
        }
        for name, job in ways.items():
            cpu: list[float] = []
            requests: list[int] = []
            for i in range(WARM_UP + jobs):
                before_cpu, before_requests = time.process_time(), counter.requests
                await job()
                if i >= WARM_UP:
                    cpu.append((time.process_time() - before_cpu) * 1000)
                    requests.append(counter.requests - before_requests)
            results[name] = (cpu, requests)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description="Client CPU and requests for one small job.")
    parser.add_argument("--jobs", type=int, default=50, help="measured jobs per way (default 50)")
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    args = parser.parse_args()
    jobs = cast(int, args.jobs)
    backend = cast(str, args.backend)
    with tempfile.TemporaryDirectory() as tmp, Mosquitto() as broker:
        image = small_png(Path(tmp))
        service: subprocess.Popen[str] = subprocess.Popen(
            [sys.executable, str(ROOT / "benchmarks" / "_local_service.py"), broker.url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert service.stdout is not None
            compute_url = cast(str, service.stdout.readline()).strip()
            results = anyio.run(measure, compute_url, broker.url, image, jobs, backend=backend)
        finally:
            assert service.stdin is not None
            service.stdin.close()
            service.wait(30)
    print(f"one small job (md5 of a 16x16 PNG), {backend}, {jobs} jobs after {WARM_UP} warm-up")
    print(f"{'way':<24} {'CPU ms p50':>10} {'CPU ms mean':>11} {'requests/job':>12}")
    for name, (cpu, requests) in results.items():
        print(
            f"{name:<24} {statistics.median(cpu):>10.2f} {statistics.fmean(cpu):>11.2f} "
            f"{statistics.fmean(requests):>12.2f}"
        )


if __name__ == "__main__":
    main()
