"""Reconciliation benchmark: what one client costs the server, and how fast silent failures end.

For each size N (default 100, 1,000 and 10,000) it starts the local compute service on
mosquitto with two busy workers (their jobs never finish) and N more watched jobs queued behind
them, then measures with one ComputeClient on default settings:

* **GET /jobs/{id} per second**, counted by the service, over ``--window`` seconds once the
  first ``--warmup`` seconds have passed (the steady state), and the process CPU meanwhile;
* **silent failure to end of watch**: ``--failures`` jobs of another task type run on their own
  workers for a random 0.2-2 s and fail without an MQTT event (as the real server does); the
  time from the server storing ``error`` to the end of the client's watch, p50 and p99, once with
  workers that announce ``idle_count`` 1 after each job (as the real worker does) and once with
  workers that do not.

Targets (issue 10): the request rate at most ``reconcile_rate`` (20/s) at every size, and about
busy workers + N/60 s when that budget is not binding; failures surfaced within 1 s (p99) of the
idle announcement, and within ``reconcile_interval`` + 0.5 s without one.

Run: ``uv run python benchmarks/reconcile.py [--sizes 100,1000,10000] [--warmup 60]
[--window 60] [--failures 60]`` (needs mosquitto). The service and the client share one process
(and its CPU) and one clock; the jobs are put in the service's store directly, with their
``queued`` events, instead of uploading N files.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.mosquitto import Mosquitto  # noqa: E402
from tests.util import wait_until  # noqa: E402

from cl_client import ComputeClient, JobWatch  # noqa: E402
from cl_client.testing import JobRecord, LocalComputeService, generic_task  # noqa: E402

BUSY_WORKERS = 2
FAILING_WORKERS = 3
BROKER_CONFIG = "max_queued_messages 0\nmax_inflight_messages 0"


@dataclass
class Outcome:
    size: int
    rate: float = float("nan")
    cpu: float = float("nan")
    latencies: dict[str, list[float]] = field(default_factory=dict[str, list[float]])

    def row(self) -> str:
        cells = [f"{self.size:>8,}", f"{self.rate:>8.1f}", f"{self.cpu:>7.0%}"]
        for mode in ("idle announced", "no announcement"):
            lat = sorted(self.latencies.get(mode, []))
            if lat:
                p50 = statistics.median(lat)
                p99 = lat[max(0, -(-len(lat) * 99 // 100) - 1)]
                cells.append(f"{p50:>7.2f} {p99:>7.2f} ({len(lat)})")
            else:
                cells.append(f"{'-':>7} {'-':>7}     ")
        return "  ".join(cells)


def add_queued_job(svc: LocalComputeService, task_type: str) -> str:
    """Store a queued job as ``POST /jobs/{task_type}`` would (without the upload)."""
    job_id = str(uuid.uuid4())
    now = time.time_ns() // 1_000_000
    svc.state.jobs[job_id] = JobRecord(
        job_id=job_id,
        task_type=task_type,
        params={"input_path": "input/none"},
        priority=5,
        created_at=now,
    )
    return job_id


async def measure_failures(
    svc: LocalComputeService,
    client: ComputeClient,
    count: int,
    *,
    announce: bool,
    upload: Path,
) -> list[float]:
    """Seconds from each silent failure (server side) to the end of its watch."""
    workers = [
        await svc.add_worker(f"failing-{uuid.uuid4().hex[:6]}", ["failing"])
        for _ in range(FAILING_WORKERS)
    ]
    for worker in workers:
        worker.announce_idle_after_job = announce
    ended: dict[str, float] = {}

    async def follow(watch: JobWatch) -> None:
        async for _ in watch:
            pass
        ended[watch.job_id] = time.time()

    rng = random.Random(count)
    async with anyio.create_task_group() as tg:
        for _ in range(count):
            params = {"sleep": f"{rng.uniform(0.2, 2.0):.3f}", "fail": "silent failure"}
            created = await client.submit("failing", upload, params)
            tg.start_soon(follow, client.watch(created.job_id))
    for worker in workers:
        await svc.stop_worker(worker.worker_id)
    latencies: list[float] = []
    for job_id, end in ended.items():
        job = svc.job(job_id)
        assert job.status == "error" and job.completed_at is not None
        latencies.append(end - job.completed_at / 1000)
    return latencies


async def run_size(
    broker_url: str, size: int, warmup: float, window: float, failures: int, upload: Path
) -> Outcome:
    outcome = Outcome(size)
    tasks = {"generic": generic_task, "failing": generic_task}
    workers = {f"busy-{i + 1}": ["generic"] for i in range(BUSY_WORKERS)}
    async with LocalComputeService(broker_url, tasks=tasks, workers=workers) as svc:
        svc.faults.block_jobs(task_type="generic")  # the busy workers never finish
        async with ComputeClient(svc.settings(job_cache_size=2 * size + 10_000)) as client:
            ids = [add_queued_job(svc, "generic") for _ in range(size + BUSY_WORKERS)]
            for job_id in ids:
                await svc.state.publish_job_event(job_id, "queued", 0)
            svc.state.notify_workers()
            await wait_until(
                lambda: all(client.latest(job_id) is not None for job_id in ids[-100:]),
                timeout=300,
                step=0.05,
            )
            watches = [client.watch(job_id) for job_id in ids]
            started = anyio.current_time()
            print(f"  {size:,} jobs watched; warming up {warmup:g} s", flush=True)
            await anyio.sleep(warmup)
            reads_before = len(svc.state.job_reads)
            cpu_before = time.process_time()
            await anyio.sleep(window)
            reads = len(svc.state.job_reads) - reads_before
            outcome.rate = reads / window
            outcome.cpu = (time.process_time() - cpu_before) / window
            print(
                f"  {outcome.rate:.1f} GET /jobs/{{id}} per second over {window:g} s "
                f"(from {anyio.current_time() - started - window:.0f} s on)",
                flush=True,
            )
            if failures:
                for mode, announce in (("idle announced", True), ("no announcement", False)):
                    lat = await measure_failures(
                        svc, client, failures, announce=announce, upload=upload
                    )
                    outcome.latencies[mode] = lat
                    print(
                        f"  {mode}: p50 {statistics.median(lat):.2f} s, max {max(lat):.2f} s",
                        flush=True,
                    )
            for watch in watches:
                await watch.aclose()
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(description="Reconciliation cost and failure latency.")
    parser.add_argument("--sizes", default="100,1000,10000", help="watched jobs, comma-separated")
    parser.add_argument("--warmup", type=float, default=60, help="seconds before measuring")
    parser.add_argument("--window", type=float, default=60, help="seconds of request counting")
    parser.add_argument("--failures", type=int, default=60, help="silent failures per mode")
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    args = parser.parse_args()
    sizes = [int(s) for s in cast(str, args.sizes).split(",") if s]
    warmup = cast(float, args.warmup)
    window = cast(float, args.window)
    failures = cast(int, args.failures)
    backend = cast(str, args.backend)
    broker = Mosquitto(extra_config=BROKER_CONFIG)
    broker.start()
    tmp = Path(tempfile.mkdtemp(prefix="cl-bench-reconcile-"))
    upload = tmp / "upload.bin"
    upload.write_bytes(b"x" * 64)
    outcomes: list[Outcome] = []
    try:
        for size in sizes:
            print(f"{size:,} watched jobs queued behind {BUSY_WORKERS} busy workers", flush=True)
            outcomes.append(
                anyio.run(
                    run_size, broker.url, size, warmup, window, failures, upload, backend=backend
                )
            )
    finally:
        broker.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"\n{backend}; GET/s counted over {window:g} s after {warmup:g} s; failure to end of "
        "watch in seconds, p50 p99 (failures)"
    )
    print(f"{'watched':>8}  {'GET/s':>8}  {'CPU':>7}  {'idle announced':<22}  no announcement")
    for outcome in outcomes:
        print(outcome.row())


if __name__ == "__main__":
    main()
