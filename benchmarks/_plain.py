"""A plain consumer process for the fan-out benchmark's paced phase: latency of the same stream.

Usage: python benchmarks/_plain.py URL TOPIC PREFIX JOBS COUNT {paho,aiomqtt}

Subscribes (QoS 1) like the benchmark's plain consumers (a paho-mqtt thread, or an aiomqtt loop
on asyncio), prints ``ready`` once the broker has acknowledged the subscription, then does what
they do per message (``json.loads`` and a dict lookup) and keeps the latency of each
``processing`` event of jobs ``PREFIX-0 .. PREFIX-(JOBS-1)`` (the paced ones). After COUNT of
them (or 30 s) it prints their latencies in microseconds as one JSON list and exits. Run beside
a client while one publisher paces events, it sees the very stream the client sees.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from typing import cast
from urllib.parse import urlsplit


class Consumer:
    def __init__(self, prefix: str, jobs: int, count: int) -> None:
        self.jobs: dict[str, int] = dict.fromkeys((f"{prefix}-{i}" for i in range(jobs)), 0)
        self.count = count
        self.latencies_us: list[int] = []
        self.done = threading.Event()

    def handle(self, payload: bytes | bytearray) -> None:
        data = cast(dict[str, object], json.loads(payload))
        job_id = data.get("job_id")
        if isinstance(job_id, str) and job_id in self.jobs:
            self.jobs[job_id] += 1
            stamp = data.get("timestamp")
            if isinstance(stamp, int) and data.get("event_type") == "processing":
                self.latencies_us.append(time.time_ns() // 1000 - stamp)
            if len(self.latencies_us) >= self.count:
                self.done.set()


def ready() -> None:
    print("ready", flush=True)


def run_paho(host: str, port: int, topic: str, consumer: Consumer) -> None:
    from paho.mqtt.client import Client, MQTTMessage
    from paho.mqtt.enums import CallbackAPIVersion

    def on_message(client: Client, userdata: object, message: MQTTMessage) -> None:
        consumer.handle(message.payload)

    subscribed = threading.Event()
    client = Client(callback_api_version=CallbackAPIVersion.VERSION2)
    client.on_message = on_message
    client.on_subscribe = lambda *args: subscribed.set()  # pyright: ignore[reportUnknownLambdaType]
    client.connect(host, port)
    # paho's own loop_start()/loop_stop() race when the connection ends first (its thread
    # clears itself between loop_stop's check and its join): a thread of our own instead.
    thread = threading.Thread(target=client.loop_forever, daemon=True)
    thread.start()
    client.subscribe(topic, qos=1)
    subscribed.wait(10)
    ready()
    consumer.done.wait(30)
    client.disconnect()  # loop_forever returns
    thread.join(10)


async def run_aiomqtt(host: str, port: int, topic: str, consumer: Consumer) -> None:
    import aiomqtt

    async with aiomqtt.Client(host, port, max_queued_incoming_messages=0) as client:
        await client.subscribe(topic, qos=1)
        ready()

        async def consume() -> None:
            async for message in client.messages:
                consumer.handle(message.payload)
                if consumer.done.is_set():
                    return

        await asyncio.wait_for(consume(), 30)


def main(argv: list[str]) -> None:
    url, topic, prefix, jobs, count, kind = argv
    consumer = Consumer(prefix, int(jobs), int(count))
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 1883
    try:
        if kind == "paho":
            run_paho(host, port, topic, consumer)
        else:
            asyncio.run(run_aiomqtt(host, port, topic, consumer))
    except TimeoutError:
        pass
    print(json.dumps(consumer.latencies_us), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
