"""Publisher process for the fan-out benchmark: job events over QoS 1.

Usage: python benchmarks/_publisher.py URL TOPIC PREFIX FIRST N RATE LIMIT PLAN [PLAN ...]

Jobs are ``PREFIX-FIRST .. PREFIX-(FIRST+N-1)``. Each PLAN is ``EVENT_TYPE:PROGRESS:ROUNDS``:
ROUNDS rounds over all the jobs, each round one event per job, the progress starting at PROGRESS
and growing by one per round (so every event moves its job forward). Messages go out at RATE
per second (0: as fast as paho can), at most LIMIT of them (0: no limit). The ``timestamp`` field
carries the send time in microseconds since the epoch (the real server sends milliseconds; the
client passes the value through untouched), so receivers can measure latency. The process exits
once the broker has acknowledged every message.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

from paho.mqtt.client import Client, MQTTMessageInfo
from paho.mqtt.enums import CallbackAPIVersion


def events(first: int, count: int, plans: list[str]) -> Iterator[tuple[str, str, int]]:
    for plan in plans:
        event_type, start, rounds = plan.split(":")
        for r in range(int(rounds)):
            for i in range(first, first + count):
                yield f"{i}", event_type, int(start) + r


def main(argv: list[str]) -> None:
    url, topic, prefix, first, count, rate_text, limit_text, *plans = argv
    rate = float(rate_text)
    limit = int(limit_text)
    parts = urlsplit(url)
    client = Client(callback_api_version=CallbackAPIVersion.VERSION2)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
    client.loop_start()
    infos: list[MQTTMessageInfo] = []
    start = time.perf_counter()
    for sent, (job, event_type, progress) in enumerate(events(int(first), int(count), plans)):
        if limit and sent >= limit:
            break
        if rate > 0:
            delay = start + sent / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        payload = json.dumps(
            {
                "job_id": f"{prefix}-{job}",
                "event_type": event_type,
                "timestamp": time.time_ns() // 1000,
                "progress": progress,
            }
        )
        infos.append(client.publish(topic, payload, qos=1))
    done = threading.Event()
    deadline = time.monotonic() + 120
    while not all(info.is_published() for info in infos) and time.monotonic() < deadline:
        done.wait(0.01)
    client.disconnect()
    client.loop_stop()


if __name__ == "__main__":
    main(sys.argv[1:])
