"""Fan-out benchmark: job events from mosquitto to 1, 1,000 and 10,000 watched jobs.

Every consumer sees the same stream of job events and is measured the same way, one after the
other, against one mosquitto:

* ``watch``: a ComputeClient and one ``client.watch()`` per job, each iterated by its own task;
* ``callbacks``: a ComputeClient and one ``client.subscribe_job_updates(on_progress=)`` per job;
* ``aiomqtt plain`` (asyncio): a bare aiomqtt loop, ``json.loads`` and a dict lookup per message;
* ``paho plain`` (trio's row): a bare paho-mqtt consumer thread doing the same;
* ``transport``: the client's own MQTT connection, as its feed reads it, doing the plain work and
  handing every message to one other task. No hub, no lifecycle rules, no watches: the floor
  under ``watch`` on that backend (a watch is iterated by a task of its own, so one task switch
  per message is part of any watch). The gap between ``transport`` and ``watch`` is the client's.

The two client consumers run on asyncio (aiomqtt transport) and on trio (paho-mqtt driven by
anyio). By default reconciliation is not binding: every job is primed over MQTT (``queued``),
the reconcile interval is an hour and there is no compute server. With ``--reconcile`` the
clients run with the default reconcile settings against a stand-in compute server (a separate
process, ``_jobs_server.py``) that knows every job as queued, as a server does while a batch
waits behind busy workers; the reconciler does its normal work meanwhile (``--settle`` seconds
first) and the ``GET/s`` column shows what it asked of the server. For each consumer and size:

1. **paced**: 2,000 ``processing`` events at 1,000 events/s from one publisher process; the
   broker-to-consumer latency (p50, p99, max) of what the consumer saw. The timestamps are taken
   on one machine with ``time.time_ns`` in both processes; the latency includes the broker.
   Two plain consumers of the backend (``_plain.py``: a paho thread for trio, an aiomqtt loop
   for asyncio), each in a process of its own, see the same stream beside every consumer. The
   broker sends a message to its subscribers one after the other, in the order they subscribed,
   and on two cores the later ones wait for a core (the last about 0.1 ms after the first here),
   so the position matters. One run puts the consumer in the middle (one plain consumer
   subscribed before it, one after); repeated runs rotate it to last and first, so three runs
   give the consumer and the plain consumers every position equally often. ``x plain`` for
   latency is the p50 of everything the consumer saw over the p50 of everything its plain
   neighbours saw, in the same runs: like for like. ``1st/mid/last`` is that ratio by the
   consumer's position. The plain rows' own ``x plain`` is the control (about 1.00);
2. **burst** (throughput): the consumer's event loop (or thread) is held while the publishers
   send the whole burst (about ``--events`` messages: progress events, then ``completed`` for every
   job), so the broker queues it; then the consumer drains it as fast as it can. events/s is the
   burst over the time from release to the last update seen, CPU is the process's CPU time per
   event over the same span. On a shared machine events/s also measures the other processes
   (a process that is not scheduled delivers nothing); CPU per event does not, and on an idle
   machine the consumer-bound rate is its inverse. A watch coalesces in-flight updates (status
   is state, not a log), so it may see fewer updates than were published; the rate counts the
   published events.

Memory, measured in the same process after a full collection: the GC-tracked objects (and bytes,
by tracemalloc) the client keeps per cached update (the ``queued`` priming) and per idle watch or
subscription (registered, its primed state consumed, no task waiting on it).

Run: ``uv run python benchmarks/fanout.py [--sizes 1,1000,10000] [--no-gc] [--repeat 3]
[--median] [--reconcile]``
(needs mosquitto). ``--no-gc`` switches the cyclic collector off while measuring, which separates
collection pauses from the client's own latency. With ``--repeat`` (3 or a multiple, for the
rotation) the throughput columns show the best run (the least disturbed one on a shared
machine), or with ``--median`` the run with the median events/s; the latency columns pool all
runs.
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
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

import anyio
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.mosquitto import Mosquitto, free_port  # noqa: E402

from cl_client import ClClientError, ComputeClient, JobUpdate, JobWatch  # noqa: E402
from cl_client._core.mailbox import Wakeup  # noqa: E402
from cl_client._core.settings import MqttEndpoint  # noqa: E402
from cl_client._transports.mqtt.connection import MqttMessage, connect_mqtt  # noqa: E402

TOPIC = "inference/events"
# Stock mosquitto drops QoS 1 messages for a client beyond 1000 queued; the benchmark measures the
# client, so the broker may queue everything.
BROKER_CONFIG = "max_queued_messages 0\nmax_inflight_messages 0"
PACED_RATE = 1000.0
PACED_EVENTS = 2000
NEIGHBOURS = 2  # plain consumers beside each consumer in the paced phase
PACED_PROGRESS = 1  # progress of the paced events: 1, 2, ... per round over the jobs
BURST_PROGRESS = 100_000  # burst progress events start above any paced one


def now_us() -> int:
    return time.time_ns() // 1000


# ------------------------------------------------------------------------------ publishing


def publish(
    url: str, prefix: str, jobs: int, *plans: str, rate: float = 0, limit: int = 0
) -> list[subprocess.Popen[bytes]]:
    """Start publisher processes (two for a burst over many jobs, else one)."""
    script = str(ROOT / "benchmarks" / "_publisher.py")
    publishers = 2 if jobs > 1 and rate == 0 and not limit else 1
    share = -(-jobs // publishers)
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
                str(rate),
                str(limit),
                *plans,
            ]
        )
        for first in range(0, jobs, share)
    ]


def wait_blocking(processes: list[subprocess.Popen[bytes]]) -> None:
    """Wait for the publishers without letting the caller's event loop run (deliberately)."""
    for process in processes:
        process.wait()


async def poll_until(done: Callable[[], bool], timeout: float, interval: float = 0.01) -> None:
    """Poll ``done`` (the benchmark adds no hooks to what it measures)."""
    with anyio.move_on_after(timeout):
        while True:
            if done():
                return
            await anyio.sleep(interval)


async def wait_processes(processes: list[subprocess.Popen[bytes]]) -> None:
    await poll_until(lambda: all(process.poll() is not None for process in processes), 120)


def burst_plans(jobs: int, events: int) -> tuple[list[str], int]:
    """Progress rounds then ``completed`` for every job; returns the plans and the event count."""
    rounds = max(1, -(-events // jobs) - 1)
    plans = [f"processing:{BURST_PROGRESS}:{rounds}", "completed:100:1"]
    return plans, jobs * (rounds + 1)


def paced_plans(jobs: int) -> list[str]:
    return [f"processing:{PACED_PROGRESS}:{-(-PACED_EVENTS // jobs)}"]


class PlainNeighbours:
    """Two plain consumer processes (``_plain.py``) that see the paced stream beside a consumer.

    The broker sends each message to its subscribers in the order they subscribed, so the order
    matters: ``before`` of them subscribe when this is made (before the consumer), the others in
    ``after()``. Repeated runs rotate ``before`` through 1, 2, 0 (see ``positions``)."""

    def __init__(self, url: str, prefix: str, jobs: int, backend: str, before: int) -> None:
        kind = "paho" if backend == "trio" else "aiomqtt"
        script = str(ROOT / "benchmarks" / "_plain.py")
        self.command = [sys.executable, script, url, TOPIC, prefix, str(jobs), str(PACED_EVENTS)]
        self.command.append(kind)
        self.processes: list[subprocess.Popen[str]] = []
        self.before = before
        for _ in range(before):
            self.start()

    def start(self) -> None:
        process = subprocess.Popen(self.command, stdout=subprocess.PIPE, text=True)
        self.processes.append(process)
        assert process.stdout is not None
        line = cast(str, process.stdout.readline())
        if line.strip() != "ready":  # subscribed (blocks, briefly)
            raise RuntimeError("a plain consumer did not start")

    def after(self) -> None:
        """Start the neighbours that subscribe after the consumer."""
        for _ in range(NEIGHBOURS - self.before):
            self.start()

    def latencies_us(self) -> list[list[int]]:
        outs = [process.communicate(timeout=60)[0] for process in self.processes]
        return [cast(list[int], json.loads(out)) for out in outs]


def positions(repeat: int) -> list[int]:
    """How many plain neighbours subscribe before the consumer in each of ``repeat`` runs: the
    middle first (one run alone is compared from there), then last and first in turn, so three
    runs put the consumer and the plain consumers in every position equally often."""
    return [(1 + run) % (NEIGHBOURS + 1) for run in range(repeat)]


# ------------------------------------------------------------------------------ results


@dataclass
class Phase:
    """What a consumer saw during one phase."""

    latencies_us: list[int] = field(default_factory=list)
    received: int = 0
    ended: int = 0
    last: float = 0.0

    def see(self, timestamp: int | None, terminal: bool) -> None:
        self.last = time.perf_counter()
        self.received += 1
        if terminal:
            self.ended += 1
        if timestamp is not None:
            self.latencies_us.append(now_us() - timestamp)


@dataclass
class Result:
    backend: str
    consumer: str
    jobs: int
    events: int = 0
    delivered: int = 0
    seconds: float = float("nan")
    cpu: float = float("nan")
    latencies_us: list[int] = field(default_factory=list)
    paced_received: int = 0
    neighbours_us: list[list[int]] = field(default_factory=list)
    """The plain neighbours' latencies, same paced stream (one list per neighbour and run)."""
    before: int = 1
    """Plain neighbours subscribed before the consumer (its position among the subscribers)."""
    by_position: dict[int, float] = field(default_factory=dict)
    """``before`` -> ``p50_ratio`` of the runs in that position."""
    objects_per_update: float = float("nan")
    bytes_per_update: float = float("nan")
    objects_per_sub: float = float("nan")
    bytes_per_sub: float = float("nan")
    heap_objects: int = 0
    reads_per_second: float = float("nan")

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("nan")

    @property
    def cpu_us(self) -> float:
        return self.cpu / self.events * 1e6 if self.events else float("nan")

    def percentile(self, q: float, latencies: list[int] | None = None) -> float:
        lat = sorted(self.latencies_us if latencies is None else latencies)
        if not lat:
            return float("nan")
        if q == 0.5:
            return statistics.median(lat) / 1000
        return lat[min(len(lat) - 1, int(len(lat) * q))] / 1000

    @property
    def neighbour_p50(self) -> float:
        """p50 of every latency the plain neighbours saw."""
        return self.percentile(0.5, [lat for each in self.neighbours_us for lat in each])

    @property
    def p50_ratio(self) -> float:
        """p50 over the plain neighbours' p50 (same stream, same runs)."""
        return self.percentile(0.5) / self.neighbour_p50 if self.neighbours_us else float("nan")


def pool(results: list[Result]) -> Result:
    """The first of ``results`` with the paced phase of all of them: every latency the consumer
    saw against every latency its neighbours saw, in the same runs."""
    return replace(
        results[0],
        latencies_us=[latency for r in results for latency in r.latencies_us],
        neighbours_us=[each for r in results for each in r.neighbours_us],
        paced_received=min(r.paced_received for r in results),
    )


def summarise(results: list[Result], median: bool) -> Result:
    """One row for repeated runs: throughput from the best run (highest events/s) or the median
    one; latency pooled over all of them (each run puts the consumer in another position among
    the broker's subscribers), and pooled per position."""
    by_rate = sorted(results, key=lambda r: r.rate if r.rate == r.rate else -1.0)
    chosen = by_rate[len(results) // 2] if median else by_rate[-1]
    pooled = pool(results)
    by_position = {
        before: pool([r for r in results if r.before == before]).p50_ratio
        for before in {r.before for r in results}
    }
    return replace(
        chosen,
        latencies_us=pooled.latencies_us,
        neighbours_us=pooled.neighbours_us,
        paced_received=pooled.paced_received,
        by_position=by_position,
    )


# ------------------------------------------------------------------------------ cl-client


def heap() -> int:
    gc.collect()
    return len(gc.get_objects())


class Memory:
    """GC-tracked objects and traced bytes kept across a span, per item."""

    def __init__(self) -> None:
        self.objects = heap()
        tracemalloc.start()
        self.snapshot = tracemalloc.take_snapshot()

    def per(self, count: int) -> tuple[float, float]:
        gc.collect()
        snapshot = tracemalloc.take_snapshot()
        tracemalloc.stop()
        traced = sum(stat.size_diff for stat in snapshot.compare_to(self.snapshot, "filename"))
        return (len(gc.get_objects()) - self.objects) / count, traced / count


def job_reads(compute_url: str) -> int:
    body = cast(dict[str, int], json.loads(httpx.get(f"{compute_url}/stats").content))
    return body["job_reads"]


@dataclass(frozen=True)
class Reconcile:
    """Where the clients' reconciler goes: nowhere (not binding), or the stand-in server."""

    compute_url: str | None = None
    settle: float = 0.0


async def run_client(
    url: str,
    jobs: int,
    events: int,
    consumer: str,
    backend: str,
    reconcile: Reconcile,
    before: int,
) -> Result:
    result = Result(backend, consumer, jobs)
    prefix = f"bench-{backend}-{consumer}-{time.time_ns()}"
    ids = [f"{prefix}-{i}" for i in range(jobs)]
    phase = Phase()
    compute_url = reconcile.compute_url
    reads_before = job_reads(compute_url) if compute_url else 0
    neighbours = PlainNeighbours(url, prefix, jobs, backend, before)
    started = time.perf_counter()
    if compute_url:  # knows every job as queued; default reconcile settings
        client = ComputeClient(
            compute_url=compute_url, mqtt_url=url, check_server=False, job_cache_size=jobs * 2
        )
    else:  # never contacted: every job is primed over MQTT
        client = ComputeClient(
            compute_url="http://127.0.0.1:9",
            mqtt_url=url,
            check_server=False,
            job_cache_size=jobs * 2,
            reconcile_interval=3600,
        )
    async with client:
        memory = Memory()
        await wait_processes(publish(url, prefix, jobs, "queued:0:1"))
        await poll_until(lambda: client.statistics().updates_accepted >= jobs, 120)
        result.objects_per_update, result.bytes_per_update = memory.per(jobs)

        async with anyio.create_task_group() as tg:
            memory = Memory()
            if consumer == "watch":
                watches = [client.watch(job_id) for job_id in ids]
                for watch in watches:  # the primed "queued" state
                    await watch.__anext__()
                result.objects_per_sub, result.bytes_per_sub = memory.per(jobs)

                async def consume(watch: JobWatch) -> None:
                    try:
                        async for update in watch:
                            phase.see(update.timestamp, update.is_terminal)
                    except ClClientError:
                        pass

                for watch in watches:
                    tg.start_soon(consume, watch)
                del watches
            else:

                def on_progress(update: JobUpdate) -> None:
                    if update.status != "queued":
                        phase.see(update.timestamp, update.is_terminal)

                for job_id in ids:
                    client.subscribe_job_updates(job_id, on_progress=on_progress)
                await anyio.sleep(0.2)  # the drainers deliver the primed state and go idle
                result.objects_per_sub, result.bytes_per_sub = memory.per(jobs)
            await anyio.sleep(max(0.1, reconcile.settle))  # (the reconciler's steady state)
            result.heap_objects = len(gc.get_objects())

            # paced: latency below saturation, beside plain consumers of the same stream
            neighbours.after()
            await wait_processes(
                publish(url, prefix, jobs, *paced_plans(jobs), rate=PACED_RATE, limit=PACED_EVENTS)
            )
            await poll_until(lambda: phase.received >= PACED_EVENTS, 10)
            result.latencies_us, result.paced_received = phase.latencies_us, phase.received
            result.neighbours_us = neighbours.latencies_us()

            # burst: throughput, consumer-bound
            plans, result.events = burst_plans(jobs, events)
            phase = Phase()
            messages = client.statistics().mqtt_messages
            wait_blocking(publish(url, prefix, jobs, *plans))
            start, cpu = time.perf_counter(), time.process_time()
            await poll_until(lambda: phase.ended >= jobs, 120, 0.002)
            result.cpu = time.process_time() - cpu
            result.seconds = phase.last - start
            result.delivered = phase.received
            if client.statistics().mqtt_messages - messages < result.events:
                result.seconds = float("nan")  # something was lost: no rate
            tg.cancel_scope.cancel()
    if compute_url:
        result.reads_per_second = (job_reads(compute_url) - reads_before) / (
            time.perf_counter() - started
        )
    return result


# ------------------------------------------------------------------------------ plain consumers


class PlainState:
    """The plain consumers' work per message: json.loads and a dict lookup."""

    def __init__(self, ids: list[str]) -> None:
        self.jobs: dict[str, int] = dict.fromkeys(ids, 0)
        self.phase = Phase()

    def handle(self, payload: bytes | bytearray) -> None:
        data = cast(dict[str, object], json.loads(payload))
        job_id = data.get("job_id")
        if isinstance(job_id, str) and job_id in self.jobs:
            self.jobs[job_id] += 1
            stamp = data.get("timestamp")
            terminal = data.get("event_type") == "completed"
            self.see(stamp if isinstance(stamp, int) else None, terminal)

    def see(self, timestamp: int | None, terminal: bool) -> None:
        self.phase.see(timestamp, terminal)


class HandedOverState(PlainState):
    """The plain consumers' work, each message then handed to another task (the ``transport``
    row): what one task switch per message costs on top of the transport."""

    def __init__(self, ids: list[str]) -> None:
        super().__init__(ids)
        self.pending: list[tuple[int | None, bool]] = []
        self.wakeup = Wakeup()

    def see(self, timestamp: int | None, terminal: bool) -> None:
        self.pending.append((timestamp, terminal))
        self.wakeup.wake()

    async def consume(self) -> None:
        while True:
            await self.wakeup.wait()
            pending, self.pending = self.pending, []
            for timestamp, terminal in pending:
                self.phase.see(timestamp, terminal)


async def measure_plain_phases(
    result: Result,
    state: PlainState,
    neighbours: PlainNeighbours,
    url: str,
    prefix: str,
    jobs: int,
    events: int,
) -> None:
    """The paced phase beside the plain neighbours (those that subscribe after the consumer
    start here), then the burst, for a consumer whose work is ``state`` (already subscribed and
    running in the caller's event loop)."""
    neighbours.after()
    await wait_processes(
        publish(url, prefix, jobs, *paced_plans(jobs), rate=PACED_RATE, limit=PACED_EVENTS)
    )
    await poll_until(lambda: state.phase.received >= PACED_EVENTS, 10)
    result.latencies_us, result.paced_received = state.phase.latencies_us, state.phase.received
    result.neighbours_us = neighbours.latencies_us()
    plans, result.events = burst_plans(jobs, events)
    state.phase = Phase()
    wait_blocking(publish(url, prefix, jobs, *plans))
    start, cpu = time.perf_counter(), time.process_time()
    await poll_until(lambda: state.phase.received >= result.events, 120, 0.002)
    result.cpu = time.process_time() - cpu
    result.seconds = state.phase.last - start
    result.delivered = state.phase.received


async def run_aiomqtt(url: str, jobs: int, events: int, before: int) -> Result:
    import aiomqtt

    result = Result("asyncio", "aiomqtt plain", jobs)
    prefix = f"bench-aiomqtt-{time.time_ns()}"
    state = PlainState([f"{prefix}-{i}" for i in range(jobs)])
    port = urlsplit(url).port or 1883
    neighbours = PlainNeighbours(url, prefix, jobs, "asyncio", before)
    async with (
        aiomqtt.Client("127.0.0.1", port, max_queued_incoming_messages=0) as client,
        anyio.create_task_group() as tg,
    ):
        await client.subscribe(TOPIC, qos=1)

        async def consume() -> None:
            async for message in client.messages:
                state.handle(message.payload)

        tg.start_soon(consume)
        await anyio.sleep(0.1)
        result.heap_objects = len(gc.get_objects())
        await measure_plain_phases(result, state, neighbours, url, prefix, jobs, events)
        tg.cancel_scope.cancel()
    return result


async def run_transport(url: str, jobs: int, events: int, backend: str, before: int) -> Result:
    """The client's MQTT connection (``deliver``, as the client's feed uses it) and the plain
    consumers' work, handed to one consumer task per message: the floor under a watch."""
    result = Result(backend, "transport", jobs)
    prefix = f"bench-transport-{time.time_ns()}"
    state = HandedOverState([f"{prefix}-{i}" for i in range(jobs)])
    endpoint = MqttEndpoint("127.0.0.1", urlsplit(url).port or 1883)
    neighbours = PlainNeighbours(url, prefix, jobs, backend, before)
    async with connect_mqtt(endpoint) as conn, anyio.create_task_group() as tg:
        await conn.subscribe(TOPIC, qos=1)

        def handle(message: MqttMessage) -> None:
            state.handle(message.payload)

        tg.start_soon(conn.deliver, handle)
        tg.start_soon(state.consume)
        await anyio.sleep(0.1)
        result.heap_objects = len(gc.get_objects())
        await measure_plain_phases(result, state, neighbours, url, prefix, jobs, events)
        tg.cancel_scope.cancel()
    return result


def run_paho(url: str, jobs: int, events: int, before: int) -> Result:
    from paho.mqtt.client import Client, MQTTMessage
    from paho.mqtt.enums import CallbackAPIVersion

    result = Result("trio", "paho plain", jobs)
    prefix = f"bench-paho-{time.time_ns()}"
    state = PlainState([f"{prefix}-{i}" for i in range(jobs)])
    subscribed = threading.Event()

    def on_message(client: Client, userdata: object, message: MQTTMessage) -> None:
        state.handle(message.payload)

    client = Client(callback_api_version=CallbackAPIVersion.VERSION2)
    client.on_message = on_message
    client.on_subscribe = lambda *args: subscribed.set()  # pyright: ignore[reportUnknownLambdaType]
    parts = urlsplit(url)
    neighbours = PlainNeighbours(url, prefix, jobs, "trio", before)
    client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
    client.loop_start()
    client.subscribe(TOPIC, qos=1)
    subscribed.wait(10)
    time.sleep(0.1)
    result.heap_objects = len(gc.get_objects())

    def wait_for(done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 120
        while not done() and time.monotonic() < deadline:
            time.sleep(0.002)

    neighbours.after()
    wait_blocking(
        publish(url, prefix, jobs, *paced_plans(jobs), rate=PACED_RATE, limit=PACED_EVENTS)
    )
    wait_for(lambda: state.phase.received >= PACED_EVENTS)
    result.latencies_us, result.paced_received = state.phase.latencies_us, state.phase.received
    result.neighbours_us = neighbours.latencies_us()
    plans, result.events = burst_plans(jobs, events)
    state.phase = Phase()
    client.loop_stop()  # the consumer thread is held while the burst is published
    wait_blocking(publish(url, prefix, jobs, *plans))
    start, cpu = time.perf_counter(), time.process_time()
    client.loop_start()
    wait_for(lambda: state.phase.received >= result.events)
    result.cpu = time.process_time() - cpu
    result.seconds = state.phase.last - start
    result.delivered = state.phase.received
    client.loop_stop()  # (before disconnect(): after it, paho's thread may end mid-loop_stop)
    client.disconnect()
    return result


# ------------------------------------------------------------------------------ main


def measure(
    url: str,
    jobs: int,
    events: int,
    backend: str,
    consumer: str,
    reconcile: Reconcile,
    before: int,
) -> Result:
    if consumer == "aiomqtt plain":
        result = anyio.run(run_aiomqtt, url, jobs, events, before, backend="asyncio")
    elif consumer == "paho plain":
        result = run_paho(url, jobs, events, before)
    elif consumer == "transport":
        result = anyio.run(run_transport, url, jobs, events, backend, before, backend=backend)
    else:
        result = anyio.run(
            run_client, url, jobs, events, consumer, backend, reconcile, before, backend=backend
        )
    result.before = before
    return result


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


CONSUMERS = [
    ("asyncio", "watch"),
    ("asyncio", "callbacks"),
    ("asyncio", "transport"),
    ("asyncio", "aiomqtt plain"),
    ("trio", "watch"),
    ("trio", "callbacks"),
    ("trio", "transport"),
    ("trio", "paho plain"),
]


def print_table(results: list[Result], gc_note: str) -> None:
    plain = {r.backend: r for r in results if r.consumer.endswith("plain")}
    print(
        f"\n{results[0].jobs:,} watched jobs{gc_note}: burst of {results[0].events:,} events; "
        f"paced {PACED_EVENTS:,} events at {PACED_RATE:,.0f}/s"
    )
    print(
        f"{'backend':<8} {'consumer':<14} {'events/s':>9} {'x plain':>7} {'CPU us/ev':>9} "
        f"{'x plain':>7} {'p50 ms':>7} {'plain':>6} {'x plain':>7} {'1st/mid/last':>14} "
        f"{'p99 ms':>7} {'max ms':>7} "
        f"{'seen':>11} "
        f"{'obj/upd':>7} {'B/upd':>6} {'obj/sub':>7} {'B/sub':>6} {'heap obj':>9} {'GET/s':>6}"
    )
    for r in results:
        base = plain[r.backend]
        by_position = "/".join(
            f"{r.by_position[before]:.2f}" if before in r.by_position else "-"
            for before in range(NEIGHBOURS + 1)
        )
        print(
            f"{r.backend:<8} {r.consumer:<14} {r.rate:>9,.0f} {r.rate / base.rate:>7.2f} "
            f"{r.cpu_us:>9.1f} {r.cpu_us / base.cpu_us:>7.2f} {r.percentile(0.5):>7.2f} "
            f"{r.neighbour_p50:>6.2f} {r.p50_ratio:>7.2f} {by_position:>14} "
            f"{r.percentile(0.99):>7.2f} "
            f"{r.percentile(1.0):>7.2f} {r.paced_received:>5}/{PACED_EVENTS:<5} "
            f"{r.objects_per_update:>7.2f} {r.bytes_per_update:>6.0f} "
            f"{r.objects_per_sub:>7.2f} {r.bytes_per_sub:>6.0f} {r.heap_objects:>9,} "
            f"{r.reads_per_second:>6.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description="Fan-out benchmark over mosquitto.")
    parser.add_argument("--sizes", default="1,1000,10000", help="watched jobs (comma-separated)")
    parser.add_argument("--events", type=int, default=40_000, help="burst size (about)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per row (3: every position)")
    parser.add_argument(
        "--median", action="store_true", help="with --repeat: show the median run, not the best"
    )
    parser.add_argument("--only", default="", help="consumers to run, e.g. 'trio watch,trio paho'")
    parser.add_argument(
        "--no-gc", action="store_true", help="turn off the cyclic GC while measuring"
    )
    parser.add_argument(
        "--reconcile",
        action="store_true",
        help="default reconcile settings against a server that knows every job as queued",
    )
    parser.add_argument(
        "--settle", type=float, default=10, help="with --reconcile: seconds before measuring"
    )
    args = parser.parse_args()
    sizes = [int(size) for size in cast(str, args.sizes).split(",")]
    events = cast(int, args.events)
    repeat = cast(int, args.repeat)
    median = cast(bool, args.median)
    only = [name.strip() for name in cast(str, args.only).split(",") if name.strip()]
    if cast(bool, args.no_gc):
        gc.disable()
    gc_note = "" if gc.isenabled() else " (cyclic GC off)"
    broker = Mosquitto(extra_config=BROKER_CONFIG)
    broker.start()
    server: subprocess.Popen[bytes] | None = None
    reconcile = Reconcile()
    if cast(bool, args.reconcile):
        server, compute_url = start_jobs_server()
        reconcile = Reconcile(compute_url, cast(float, args.settle))
        gc_note += ", default reconcile settings"
    try:
        for jobs in sizes:
            results: list[Result] = []
            for backend, consumer in CONSUMERS:
                name = f"{backend} {consumer}"
                if (
                    only
                    and not consumer.endswith("plain")
                    and not any(name.startswith(o) for o in only)
                ):
                    continue
                runs = [
                    measure(broker.url, jobs, events, backend, consumer, reconcile, before)
                    for before in positions(repeat)
                ]
                results.append(summarise(runs, median))
            print_table(results, gc_note)
    finally:
        if server is not None:
            server.kill()
            server.wait()
        broker.close()


if __name__ == "__main__":
    main()
