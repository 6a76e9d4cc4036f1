"""Fan-out benchmark: MQTT job events from mosquitto to many watched jobs.

For each consumer it publishes ``queued`` for N jobs (the client caches them), opens one watch per
job, then publishes ``processing`` and ``completed`` for every job from a separate process, and
reports events/s through the consumer and the broker-to-watcher latency (p50/p99) of the
updates the watchers saw. Consumers:

* ``cl-client asyncio``: ComputeClient on asyncio (aiomqtt transport), N ``client.watch()``;
* ``cl-client trio``: ComputeClient on trio (paho-mqtt driven by anyio), N ``client.watch()``;
* ``aiomqtt plain``: a bare aiomqtt subscriber parsing the same stream (no fan-out): the floor.

Run: ``uv run python benchmarks/fanout.py [--jobs 10000] [--no-gc]`` (needs mosquitto installed).
Latency is measured on one machine (time.time_ns in both processes); it includes the broker.

The p99 of the cl-client rows is set by Python's cyclic garbage collector: the benchmark's own
10,000 consumer tasks (about 20 GC-tracked objects each) make up most of the heap, and each full
collection pauses the loop for tens of milliseconds. ``--no-gc`` turns the collector off while
measuring, which shows the client's latency without those pauses.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import anyio
import anyio.to_thread

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.mosquitto import Mosquitto  # noqa: E402

from cl_client import ComputeClient  # noqa: E402

TOPIC = "inference/events"
# Stock mosquitto drops QoS 1 messages for a client beyond 1000 queued; the benchmark measures the
# client, so the broker may queue everything.
BROKER_CONFIG = "max_queued_messages 0\nmax_inflight_messages 0"


@dataclass
class Result:
    name: str
    jobs: int
    events: int
    expected: int
    seconds: float
    latencies_us: list[int]

    def row(self) -> str:
        lat = sorted(self.latencies_us)
        p50 = statistics.median(lat) / 1000 if lat else float("nan")
        p99 = lat[int(len(lat) * 0.99) - 1] / 1000 if lat else float("nan")
        rate = self.events / self.seconds if self.seconds > 0 else float("nan")
        return (
            f"{self.name:<20} {self.jobs:>7} {self.events:>8}/{self.expected:<8} "
            f"{rate:>11,.0f} {p50:>9.2f} {p99:>9.2f}"
        )


@dataclass(frozen=True)
class Load:
    publishers: int
    rate: float  # total messages/s; 0: as fast as the publishers go


def publish(
    url: str, prefix: str, jobs: int, load: Load, *event_types: str
) -> list[subprocess.Popen[bytes]]:
    script = str(ROOT / "benchmarks" / "_publisher.py")
    share = -(-jobs // load.publishers)
    return [
        subprocess.Popen(
            [
                sys.executable,
                script,
                url,
                TOPIC,
                prefix,
                str(first),
                str(min(share, jobs - first)),
                str(load.rate / load.publishers),
                *event_types,
            ]
        )
        for first in range(0, jobs, share)
    ]


async def wait_processes(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        await anyio.to_thread.run_sync(process.wait)


def now_us() -> int:
    return time.time_ns() // 1000


async def run_client(url: str, jobs: int, load: Load, backend: str) -> Result:
    prefix = f"bench-{backend}-{time.time_ns()}"
    latencies: list[int] = []
    first = last = 0.0
    received = 0
    async with ComputeClient(
        compute_url="http://127.0.0.1:9",  # never contacted: every job is primed over MQTT
        mqtt_url=url,
        check_server=False,
        reconcile_interval=3600,
        job_cache_size=jobs * 2,
    ) as client:
        await wait_processes(publish(url, prefix, jobs, Load(2, 0), "queued"))
        with anyio.fail_after(120):
            while True:
                if client.stats.hub.accepted >= jobs:
                    break
                await anyio.sleep(0.01)
        watches = [client.watch(f"{prefix}-{i}") for i in range(jobs)]
        for watch in watches:  # the primed "queued" state
            await watch.__anext__()

        async def consume(index: int) -> None:
            nonlocal first, last, received
            async for update in watches[index]:
                t = time.perf_counter()
                first = first or t
                last = t
                received += 1
                if update.timestamp is not None:
                    latencies.append(now_us() - update.timestamp)

        async with anyio.create_task_group() as tg:
            for i in range(jobs):
                tg.start_soon(consume, i)
            await wait_processes(publish(url, prefix, jobs, load, "processing", "completed"))
    return Result(f"cl-client {backend}", jobs, received, 2 * jobs, last - first, latencies)


async def run_aiomqtt(url: str, jobs: int, load: Load) -> Result:
    import aiomqtt

    prefix = f"bench-plain-{time.time_ns()}"
    latencies: list[int] = []
    received = 0
    first = last = 0.0
    port = int(url.rsplit(":", 1)[1])
    async with aiomqtt.Client("127.0.0.1", port, max_queued_incoming_messages=0) as client:
        await client.subscribe(TOPIC, qos=1)
        procs = publish(url, prefix, jobs, load, "processing", "completed")
        with anyio.move_on_after(120):
            async for message in client.messages:
                data = cast(dict[str, object], json.loads(message.payload))
                t = time.perf_counter()
                first = first or t
                last = t
                received += 1
                stamp = data.get("timestamp")
                if isinstance(stamp, int):
                    latencies.append(now_us() - stamp)
                if received >= 2 * jobs:
                    break
        await wait_processes(procs)
    return Result("aiomqtt plain", jobs, received, 2 * jobs, last - first, latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description="Fan-out benchmark over mosquitto.")
    parser.add_argument("--jobs", type=int, default=10_000, help="watched jobs (default 10000)")
    parser.add_argument(
        "--rate", type=float, default=2000, help="paced run: messages/s (default 2000)"
    )
    parser.add_argument(
        "--no-gc", action="store_true", help="turn off the cyclic GC while measuring"
    )
    args = parser.parse_args()
    jobs = cast(int, args.jobs)
    rate = cast(float, args.rate)
    if cast(bool, args.no_gc):
        gc.disable()
    broker = Mosquitto(extra_config=BROKER_CONFIG)
    broker.start()
    try:
        for title, load in (
            ("burst: 2 publisher processes as fast as they go (throughput)", Load(2, 0)),
            (f"paced: {rate:g} messages/s (latency below saturation)", Load(1, rate)),
        ):
            results = [
                anyio.run(run_client, broker.url, jobs, load, "asyncio", backend="asyncio"),
                anyio.run(run_client, broker.url, jobs, load, "trio", backend="trio"),
                anyio.run(run_aiomqtt, broker.url, jobs, load, backend="asyncio"),
            ]
            print(f"\n{title}{'' if gc.isenabled() else ', cyclic GC off'}")
            print(
                f"{'consumer':<20} {'jobs':>7} {'events/expected':>17} {'events/s':>11} "
                f"{'p50 ms':>9} {'p99 ms':>9}"
            )
            for result in results:
                print(result.row())
    finally:
        broker.close()


if __name__ == "__main__":
    main()
