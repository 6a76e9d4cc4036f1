"""Fan-out benchmark: MQTT job events from mosquitto to many watched jobs.

For each consumer it publishes ``queued`` for N jobs (the client caches them), opens one watch per
job, lets the client settle for ``--settle`` seconds, then publishes ``processing`` and
``completed`` for every job from a separate process, and reports events/s through the consumer
and the broker-to-watcher latency (p50/p99) of the updates the watchers saw. Consumers, side by
side in one run:

* ``cl-client asyncio``: ComputeClient on asyncio (aiomqtt transport), N ``client.watch()``;
* ``aiomqtt plain``: a bare aiomqtt subscriber parsing the same stream (no fan-out);
* ``cl-client trio``: ComputeClient on trio (paho-mqtt driven by anyio), N ``client.watch()``;
* ``paho plain``: a bare paho-mqtt consumer thread doing the same as the aiomqtt one.

The clients run with the default reconcile settings against a stand-in compute server (a
separate process, ``_jobs_server.py``) that knows every job as queued, as a server does while a
batch waits behind busy workers: the client's reconciler does its normal work meanwhile, and the
``GET/s`` column shows what it asked of the server. The ``vs plain`` column compares each client
with the plain consumer of its backend.

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
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import anyio
import anyio.to_thread
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.mosquitto import Mosquitto, free_port  # noqa: E402

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
    reads_per_second: float = float("nan")

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("nan")

    def row(self, plain: Result | None = None) -> str:
        lat = sorted(self.latencies_us)
        p50 = statistics.median(lat) / 1000 if lat else float("nan")
        p99 = lat[int(len(lat) * 0.99) - 1] / 1000 if lat else float("nan")
        ratio = f"{self.rate / plain.rate:>8.0%}" if plain is not None else f"{'':>8}"
        known = self.reads_per_second == self.reads_per_second  # not NaN
        reads = f"{self.reads_per_second:>7.1f}" if known else f"{'-':>7}"
        return (
            f"{self.name:<20} {self.jobs:>7} {self.events:>8}/{self.expected:<8} "
            f"{self.rate:>11,.0f} {ratio} {p50:>9.2f} {p99:>9.2f} {reads}"
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


def job_reads(compute_url: str) -> int:
    body = cast(dict[str, int], json.loads(httpx.get(f"{compute_url}/stats").content))
    return body["job_reads"]


async def run_client(
    url: str, jobs: int, load: Load, backend: str, compute_url: str, settle: float
) -> Result:
    prefix = f"bench-{backend}-{time.time_ns()}"
    latencies: list[int] = []
    first = last = 0.0
    received = 0
    reads_before = job_reads(compute_url)
    started = time.perf_counter()
    async with ComputeClient(
        compute_url=compute_url,  # knows every job as queued; default reconcile settings
        mqtt_url=url,
        check_server=False,
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
        await anyio.sleep(settle)  # the reconciler reaches its steady state

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
    result = Result(f"cl-client {backend}", jobs, received, 2 * jobs, last - first, latencies)
    result.reads_per_second = (job_reads(compute_url) - reads_before) / (
        time.perf_counter() - started
    )
    return result


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


def run_paho(url: str, jobs: int, load: Load) -> Result:
    """A plain paho-mqtt consumer thread: json.loads and a dict lookup per message."""
    from paho.mqtt.client import Client, MQTTMessage
    from paho.mqtt.enums import CallbackAPIVersion

    prefix = f"bench-paho-{time.time_ns()}"
    seen: dict[str, int] = {f"{prefix}-{i}": 0 for i in range(jobs)}
    latencies: list[int] = []
    received = 0
    first = last = 0.0
    done = threading.Event()
    subscribed = threading.Event()

    def on_message(_client: Client, _userdata: object, message: MQTTMessage) -> None:
        nonlocal first, last, received
        data = cast(dict[str, object], json.loads(message.payload))
        job_id = data.get("job_id")
        if isinstance(job_id, str) and job_id in seen:
            seen[job_id] += 1
        t = time.perf_counter()
        first = first or t
        last = t
        received += 1
        stamp = data.get("timestamp")
        if isinstance(stamp, int):
            latencies.append(now_us() - stamp)
        if received >= 2 * jobs:
            done.set()

    port = int(url.rsplit(":", 1)[1])
    client = Client(callback_api_version=CallbackAPIVersion.VERSION2)
    client.on_message = on_message
    client.on_subscribe = lambda *_args: subscribed.set()  # pyright: ignore[reportUnknownLambdaType]
    client.connect("127.0.0.1", port)
    client.subscribe(TOPIC, qos=1)
    client.loop_start()
    subscribed.wait(10)
    procs = publish(url, prefix, jobs, load, "processing", "completed")
    done.wait(120)
    for process in procs:
        process.wait()
    client.disconnect()
    client.loop_stop()
    return Result("paho plain", jobs, received, 2 * jobs, last - first, latencies)


def start_jobs_server() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "benchmarks" / "_jobs_server.py"), str(port)]
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            job_reads(url)
            return process, url
        except httpx.TransportError:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description="Fan-out benchmark over mosquitto.")
    parser.add_argument("--jobs", type=int, default=10_000, help="watched jobs (default 10000)")
    parser.add_argument(
        "--rate", type=float, default=2000, help="paced run: messages/s (default 2000)"
    )
    parser.add_argument(
        "--no-gc", action="store_true", help="turn off the cyclic GC while measuring"
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=10,
        help="seconds between opening the watches and publishing (default 10)",
    )
    args = parser.parse_args()
    jobs = cast(int, args.jobs)
    rate = cast(float, args.rate)
    settle = cast(float, args.settle)
    if cast(bool, args.no_gc):
        gc.disable()
    broker = Mosquitto(extra_config=BROKER_CONFIG)
    broker.start()
    server, compute_url = start_jobs_server()
    try:
        for title, load in (
            ("burst: 2 publisher processes as fast as they go (throughput)", Load(2, 0)),
            (f"paced: {rate:g} messages/s (latency below saturation)", Load(1, rate)),
        ):
            client_args = (broker.url, jobs, load)
            asyncio_client = anyio.run(
                run_client, *client_args, "asyncio", compute_url, settle, backend="asyncio"
            )
            aiomqtt_plain = anyio.run(run_aiomqtt, *client_args, backend="asyncio")
            trio_client = anyio.run(
                run_client, *client_args, "trio", compute_url, settle, backend="trio"
            )
            paho_plain = run_paho(*client_args)
            print(f"\n{title}{'' if gc.isenabled() else ', cyclic GC off'}")
            print(
                f"{'consumer':<20} {'jobs':>7} {'events/expected':>17} {'events/s':>11} "
                f"{'vs plain':>8} {'p50 ms':>9} {'p99 ms':>9} {'GET/s':>7}"
            )
            print(asyncio_client.row(aiomqtt_plain))
            print(aiomqtt_plain.row())
            print(trio_client.row(paho_plain))
            print(paho_plain.row())
    finally:
        server.kill()
        server.wait()
        broker.close()


if __name__ == "__main__":
    main()
